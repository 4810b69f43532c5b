"""The one exception type for bad input to the suite: the CLI and the plugin report it in one line with
exit status 2, never a traceback and never a test failure."""

from __future__ import annotations


class UsageError(Exception):
    """Bad input (an argument, an environment variable, a ``--path`` spec): said in one line."""
