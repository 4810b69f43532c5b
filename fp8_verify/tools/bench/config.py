"""The bench's options and the :class:`Config` they resolve to. Standard library only at module level:
the CLI adds :func:`add_arguments` to its parser without importing torch."""

from __future__ import annotations

import argparse
import fnmatch
from dataclasses import dataclass, field

from ...errors import UsageError


class _Parser(argparse.ArgumentParser):
    """Options error out in one line through :class:`UsageError` (exit status 2, no usage dump)."""

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(f"bench: {message}")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Bench options beyond ``--out``/``--quick``; the CLI's parser may add them for ``--help``."""
    g = p.add_argument_group("bench")
    g.add_argument(
        "--dry-run",
        action="store_true",
        help="plumbing smoke test: tiny shapes and few rounds; runs on the CPU double "
        "(numbers mean nothing) or, on a GPU, on the real kernel",
    )
    g.add_argument(
        "--compare",
        nargs="+",
        metavar="RUN.json",
        help="merge bench JSON files (e.g. one per vLLM release) into one table and plot; needs no GPU",
    )
    g.add_argument("--label", help="key of this run in the JSON (default: the vLLM version)")
    g.add_argument("--shapes", help="comma-separated globs on shape ids (see --list-shapes)")
    g.add_argument("--ms", help="comma-separated M values (default: 27 values 1..8192)")
    g.add_argument("--paths", help="comma-separated paths to time (default: every available one)")
    g.add_argument(
        "--budget-s",
        type=float,
        help="start no new (shape, M) point after this many seconds; outputs are written either way",
    )
    g.add_argument(
        "--target-spread",
        type=float,
        default=0.02,
        help="stop when (p75-p25)/median of the per-round medians is below this",
    )
    g.add_argument("--min-rounds", type=int)
    g.add_argument("--max-rounds", type=int)
    g.add_argument("--no-eager", action="store_true", help="skip the eager (launch overhead) timing")
    g.add_argument("--no-plot", action="store_true")
    g.add_argument(
        "--include-dynamic-compiled",
        action="store_true",
        help="try the dynamic_compiled path (skipped by default: FV-001, it fails to "
        "compile with M dynamic in vLLM 0.23.0)",
    )
    g.add_argument("--list-shapes", action="store_true", help="print the shape table and exit")


@dataclass
class Config:
    """Resolved options; stored in the JSON so that a run says how it was measured."""

    out: str
    quick: bool = False
    dry_run: bool = False
    label: str | None = None
    shapes: list[str] = field(default_factory=list)
    ms: list[int] = field(default_factory=list)
    paths: list[str] | None = None
    budget_s: float | None = None
    target_spread: float = 0.02
    min_rounds: int = 5
    max_rounds: int = 25
    max_rounds_eager: int = 12  # host jitter rarely allows 2% on eager calls: cap it sooner
    samples_per_round: int = 3
    sample_s: float = 5e-4  # each timed sample spans at least this much GPU time
    max_point_s: float = 6.0  # per (shape, M) and timing mode
    warmup: int = 3
    rotate_l2_multiple: float = 3.0  # input sets per call span this many L2 sizes
    max_sets: int = 32
    eager: bool = True
    plot: bool = True
    include_dynamic_compiled: bool = False


def _ints(text: str) -> list[int]:
    try:
        vals = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"bench: --ms takes comma-separated integers, got {text!r}") from None
    if not vals or min(vals) < 1:
        raise UsageError(f"bench: --ms values must be >= 1, got {text!r}")
    return vals


def resolve(args: argparse.Namespace, extra: list[str]) -> tuple[Config, argparse.Namespace]:
    """The CLI's ``--out``/``--quick`` plus the bench options in ``extra``, as a :class:`Config`."""
    from . import shapes as sh  # imports the weight-shape table (and Hypothesis): only when running

    p = _Parser(prog="fp8-verify bench", add_help=False)
    add_arguments(p)
    ns = p.parse_args(extra, namespace=argparse.Namespace(**vars(args)))
    dry = bool(ns.dry_run)
    quick = bool(getattr(ns, "quick", False))
    c = Config(
        out=str(getattr(ns, "out", None) or "bench-out"),
        quick=quick,
        dry_run=dry,
        label=ns.label,
        target_spread=ns.target_spread,
        eager=not ns.no_eager,
        plot=not ns.no_plot,
        budget_s=ns.budget_s,
        include_dynamic_compiled=ns.include_dynamic_compiled,
    )
    pool = sh.pool(dry)
    default = ["*"] if dry or not quick else list(sh.QUICK_SHAPES)
    pats = ns.shapes.split(",") if ns.shapes else default
    c.shapes = [s.id for s in pool if any(fnmatch.fnmatch(s.id, x.strip()) for x in pats)]
    if not c.shapes:
        raise UsageError(f"bench: --shapes {ns.shapes!r} matches none of {', '.join(s.id for s in pool)}")
    c.ms = _ints(ns.ms) if ns.ms else list(sh.M_DRY if dry else sh.M_QUICK if quick else sh.M_FULL)
    c.paths = [x.strip() for x in ns.paths.split(",")] if ns.paths else None
    if dry:
        c.min_rounds, c.max_rounds, c.samples_per_round, c.warmup = 2, 3, 2, 1
        c.sample_s, c.max_point_s = 2e-4, 2.0
    elif quick:
        c.min_rounds, c.max_rounds, c.max_rounds_eager = 3, 10, 8
    c.min_rounds = ns.min_rounds or c.min_rounds
    c.max_rounds = max(ns.max_rounds or c.max_rounds, c.min_rounds)
    c.max_rounds_eager = max(min(c.max_rounds_eager, c.max_rounds), c.min_rounds)
    return c, ns
