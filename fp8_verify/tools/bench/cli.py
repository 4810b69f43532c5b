"""``fp8-verify bench``: :func:`add_arguments` for the CLI's parser and :func:`main`, which sends the
options to ``--list-shapes``, ``--compare`` or the timed run (:mod:`.sweep`). Standard library only at
module level: the CLI imports this for ``--help`` without paying for torch."""

from __future__ import annotations

import argparse

from .config import add_arguments, resolve

__all__ = ["add_arguments", "main"]


def main(args: argparse.Namespace, extra: list[str]) -> int:
    """``fp8-verify bench``: exit 0 (130 when interrupted); bad options, or no real kernel without
    ``--dry-run``, raise :class:`fp8_verify.errors.UsageError` (one line, exit status 2)."""
    cfg, ns = resolve(args, extra)
    if ns.list_shapes:
        from .shapes import list_shapes

        return list_shapes()
    if ns.compare:
        from .compare import compare

        return compare(ns.compare, cfg)
    from .sweep import bench

    return bench(cfg)
