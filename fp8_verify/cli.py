"""``fp8-verify`` (also ``python -m fp8_verify``): env | check | mutants | bench | repro.

Bad input gets a one-line message and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"


class UsageError(Exception):
    """Bad input to the suite: reported in one line, exit status 2."""


def _env(args, extra: list[str]) -> int:
    from . import paths, subject

    s = subject.load()
    import torch

    info = {
        "fp8_verify": __import__("fp8_verify").__version__,
        "torch": torch.__version__,
        "vllm": s.vllm_version or f"not available ({s.error})",
        "device": s.device_name()
        if s.available
        else ("CPU" if not torch.cuda.is_available() else torch.cuda.get_device_name()),
        "kernel": f"{s.backend}: {s.backend_reason}" if s.available else "none",
        "compile_backend": paths.compile_backend() if s.available else None,
        "paths": {},
    }
    for name, p in paths.discover().items():
        info["paths"][name] = (
            f"available, on the {'real SM90 kernel' if s.backend == 'real' else 'CPU double'}"
            if p.available
            else f"absent: {p.reason}"
        )
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    for k, v in info.items():
        if k == "paths":
            print("paths:")
            for n, d in v.items():
                print(f"  {n:<17} {d}")
        else:
            print(f"{k + ':':<17} {v}")
    return 0


def _pytest_args(args, extra: list[str]) -> list[str]:
    if not TESTS.is_dir():
        raise UsageError(
            f"the property suite is not at {TESTS}; install fp8-verify from a checkout "
            "(pip install -e .) or run it from one"
        )
    out = [str(TESTS), "-p", "no:cacheprovider", "--rootdir", str(ROOT)]
    if args.report:
        out += ["--fp8-report", args.report]
    if getattr(args, "summary_md", None):
        out += ["--fp8-summary-md", args.summary_md]
    return out + extra


def _check(args, extra: list[str]) -> int:
    import pytest

    from .plugin import PROFILES

    if args.profile and args.profile not in PROFILES:
        raise UsageError(f"unknown profile {args.profile!r}; choose one of {', '.join(PROFILES)}")
    if args.profile:
        os.environ["FP8_VERIFY_PROFILE"] = args.profile
        extra = ["--hypothesis-profile", args.profile, *extra]
    if args.mutant:
        from .mutants import CATALOGUE

        if args.mutant not in CATALOGUE:
            raise UsageError(f"unknown mutant {args.mutant!r}; `fp8-verify mutants --list` lists them")
        os.environ["FP8_VERIFY_MUTANT"] = args.mutant
    return int(pytest.main(_pytest_args(args, extra)))


def _mutants(args, extra: list[str]) -> int:
    from . import mutants

    return mutants.main(args, extra)


def _bench(args, extra: list[str]) -> int:
    from . import bench

    return bench.main(args, extra)


def _repro(args, extra: list[str]) -> int:
    path = Path(args.file)
    if not path.is_file():
        raise UsageError(f"no repro script at {path}")
    import runpy

    from . import subject

    s = subject.load()  # without a Hopper GPU this puts the CPU double under vLLM, as in `check`
    if not s.available:
        raise UsageError(s.error)
    if args.mutant:
        from .mutants import CATALOGUE, apply

        if args.mutant not in CATALOGUE:
            raise UsageError(f"unknown mutant {args.mutant!r}; `fp8-verify mutants --list` lists them")
        apply(args.mutant)
    sys.path.insert(0, str(path.parent))

    sys.argv = [str(path), *extra]
    try:
        runpy.run_path(str(path), run_name="__main__")
    except SystemExit as e:
        return int(e.code or 0)
    return 0


def _jobs(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {value!r}")
    return n


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fp8-verify", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("env", help="versions, device, and which paths run where")
    e.add_argument("--json", action="store_true")
    e.set_defaults(fn=_env)
    c = sub.add_parser("check", help="run the property suite (pytest options pass through)")
    c.add_argument("--profile", help="Hypothesis profile: dev, ci or nightly")
    c.add_argument("--report", metavar="FILE.json", help="write the JSON report")
    c.add_argument("--summary-md", metavar="FILE.md", help="write the Markdown summary")
    c.add_argument("--mutant", metavar="ID", help="plant this bug in the subject first")
    c.set_defaults(fn=_check)
    m = sub.add_parser("mutants", help="planted-bug check: which properties kill which bugs")
    m.add_argument("--list", action="store_true", help="list the catalogue")
    m.add_argument("--profile", default="ci")
    m.add_argument("--report", metavar="FILE.json")
    m.add_argument("--only", metavar="ID", action="append", help="run only these mutants")
    m.add_argument(
        "--jobs",
        metavar="N",
        type=_jobs,
        default=1,
        help="run up to N mutant processes at once, after the control (default 1; seconds are "
        "comparable only at 1)",
    )
    m.set_defaults(fn=_mutants)
    b = sub.add_parser("bench", help="time the paths (needs the real SM90 kernel)")
    b.add_argument("--out", default="bench-out", help="folder for CSV, JSON and PNG")
    b.add_argument("--quick", action="store_true", help="a few shapes and M values")
    b.set_defaults(fn=_bench)
    r = sub.add_parser("repro", help="replay a repro script written by a failing run")
    r.add_argument("file")
    r.add_argument("--mutant", metavar="ID", help="plant this bug first (to replay a mutant's failure)")
    r.set_defaults(fn=_repro)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = parser()
    args, extra = p.parse_known_args(argv)
    if extra and args.cmd not in ("check", "repro", "mutants", "bench"):
        p.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return args.fn(args, extra)
    except UsageError as err:
        print(f"fp8-verify: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
