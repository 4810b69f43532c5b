"""The one exception type for bad input to the suite: the CLI and the plugin report it in one line with
exit status 2, never a traceback and never a test failure."""

from __future__ import annotations

import argparse


class UsageError(Exception):
    """Bad input (an argument, an environment variable, a ``--path`` spec): said in one line."""


def whole_number(value: str) -> int:
    """An option's value as a whole number >= 1 (argparse's ``type=``, for the CLI and the plugin alike):
    anything else is argparse's one-line usage error."""
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {value!r}")
    return n
