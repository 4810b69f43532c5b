"""``fp8-verify`` (also ``python -m fp8_verify``): env | check | repro, and the tools' commands
(mutants, bench, matrix).

The composition root: it imports the product and, for the tools' commands, the tooling (lazily, when
such a command runs); nothing in the product imports this module. Bad input gets a one-line message and
exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .errors import UsageError, whole_number

ROOT = Path(__file__).resolve().parent.parent
# pytest's settings for the installed suite (in a checkout pyproject.toml and conftest.py give them)
INSTALLED_SETTINGS = [
    "-p",
    "fp8_verify.plugin",
    "-W",
    "ignore::DeprecationWarning",
    "-W",
    "ignore::FutureWarning",
]


def suite_location() -> tuple[Path, list[str]]:
    """Where the properties are -- a checkout's ``tests/`` (beside this package), else the installed
    ``fp8_verify.properties`` -- and the pytest options that place needs."""
    checkout = ROOT / "tests"
    if checkout.is_dir() and (ROOT / "conftest.py").is_file():
        return checkout, ["--rootdir", str(ROOT)]
    from importlib.util import find_spec

    spec = find_spec("fp8_verify.properties")
    if spec is None or not spec.submodule_search_locations:
        raise UsageError("the property suite is not installed (fp8_verify.properties is missing)")
    where = Path(next(iter(spec.submodule_search_locations)))
    return where, ["--rootdir", str(where), "-c", os.devnull, *INSTALLED_SETTINGS]


def _env(args, extra: list[str]) -> int:
    import torch

    from .subject.registry import default
    from .subject.vllm import load

    s = load()
    info = {
        "fp8_verify": __import__("fp8_verify").__version__,
        "torch": torch.__version__,
        "vllm": s.vllm_version or f"not available ({s.error})",
        "device": s.device_name()
        if s.available
        else ("CPU" if not torch.cuda.is_available() else torch.cuda.get_device_name()),
        "kernel": f"{s.kernel}: {s.kernel_reason}" if s.available else "none",
        "paths": {},
    }
    where = "real SM90 kernel" if s.kernel == "real" else "CPU double"
    for p in default():
        rule = "" if p.m_rule.value == "any M" else f", {p.m_rule.value}"
        info["paths"][p.name] = f"available, on the {where}{rule}" if p.available else f"absent: {p.reason}"
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    for k, v in info.items():
        if k == "paths":
            print("paths:")
            for n, d in v.items():
                print(f"  {n:<24} {d}")
        else:
            print(f"{k + ':':<17} {v}")
    return 0


# options whose value is never a test file of the suite (a path elsewhere, or an expression)
_TAKES_A_PATH = (
    "--deselect",
    "--ignore",
    "--ignore-glob",
    "--rootdir",
    "-c",
    "--confcutdir",
    "--basetemp",
    "-k",
    "-m",
)


def _selection(tests: Path, extra: list[str]) -> tuple[list[str], list[str]]:
    """Split the test files named in ``extra`` (``tests/test_paths.py``, ``test_exact.py::test_bit_exact``)
    from the other pytest arguments, each resolved where it exists: as given, in the suite, or by its
    file name in the suite (an installed wheel's ``fp8_verify/properties``). Without any, the whole suite
    runs."""
    chosen: list[str] = []
    rest: list[str] = []
    for i, arg in enumerate(extra):
        file, sep, node = arg.partition("::")
        after_option = i > 0 and extra[i - 1] in _TAKES_A_PATH
        if arg.startswith("-") or after_option or not (file.endswith(".py") or Path(file).is_dir()):
            rest.append(arg)
            continue
        for where in (Path(file), tests / file, tests / Path(file).name):
            if where.exists():
                chosen.append(f"{where}{sep}{node}")
                break
        else:
            raise UsageError(f"{file} is not a test file of the suite at {tests}")
    return chosen, rest


def _pytest_args(args, extra: list[str]) -> list[str]:
    tests, options = suite_location()
    chosen, extra = _selection(tests, extra)
    out = [*(chosen or [str(tests)]), "-p", "no:cacheprovider", *options]
    if args.report:
        out += ["--fp8-report", args.report]
    if getattr(args, "summary_md", None):
        out += ["--fp8-summary-md", args.summary_md]
    return out + _work_stealing(extra)


def _gives_n(extra: list[str]) -> bool:
    return any(
        a in ("-n", "--numprocesses")
        or a.startswith("--numprocesses=")
        or (a.startswith("-n") and len(a) > 2)
        for a in extra
    )


def _work_stealing(extra: list[str]) -> list[str]:
    """With ``-n`` and no ``--dist`` of the user's, xdist's ``worksteal`` schedule: an idle worker takes
    half of a busy one's queue, so a run does not wait on the worker that drew the slow tests (the
    properties' costs differ tenfold: a compiled path that compiles per M against an eager one)."""
    gives_dist = any(a == "--dist" or a.startswith("--dist=") or a == "-d" for a in extra)
    return [*extra, "--dist", "worksteal"] if _gives_n(extra) and not gives_dist else extra


MAX_DEFAULT_WORKERS = 4  # each worker imports vLLM and holds about 2 GB
_ONE_PROCESS = ("--pdb", "--trace", "--collect-only", "--co", "no:xdist", "-pno:xdist")


def _default_workers(extra: list[str]) -> list[str]:
    """A whole-suite run on the CPU double without ``-n`` gets one xdist worker per core (at most
    :data:`MAX_DEFAULT_WORKERS`): there each property runs on one core, so on a 2-core CI machine the
    ci profile takes about half the time (~300 s instead of ~600). ``-n 0`` keeps one process, as do
    ``-p no:xdist``, ``--pdb``, ``--trace`` and ``--collect-only``."""
    if _gives_n(extra) or any(a in _ONE_PROCESS for a in extra):
        return extra
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    n = min(cores, MAX_DEFAULT_WORKERS)
    if n < 2:
        return extra
    print(f"fp8-verify: {n} xdist workers, one per core (-n 0: one process)", file=sys.stderr)
    return [*extra, "-n", str(n)]


def _check(args, extra: list[str]) -> int:
    """Every input is checked before vLLM is imported (seconds): a bad one is one line, at once."""
    import pytest

    from .subject.registry import external
    from .suite.options import PROFILES, check_environment

    if args.profile and args.profile not in PROFILES:
        raise UsageError(f"unknown profile {args.profile!r}; choose one of {', '.join(PROFILES)}")
    if args.profile:
        os.environ["FP8_VERIFY_PROFILE"] = args.profile
        extra = ["--hypothesis-profile", args.profile, *extra]
    check_environment()
    for text in args.path or []:
        external(text)  # a bad --path is a one-line usage error here, before pytest starts
        extra = ["--fp8-path", text, *extra]
    if args.require:
        extra = ["--fp8-require", args.require, *extra]
    if args.dry_run:
        extra = ["--fp8-dry-run", *extra]
    if args.self_tests:
        extra = ["--fp8-self-tests", *extra]
    if args.examples:
        extra = ["--fp8-examples", str(args.examples), *extra]
    if args.shards:
        extra = ["--fp8-shards", str(args.shards), *extra]
    if args.batch:
        extra = ["--fp8-batch", str(args.batch), *extra]
    if args.mutant:
        from .tools.mutants.catalogue import CATALOGUE
        from .tools.mutants.plant import MUTANT_ENV

        if args.mutant not in CATALOGUE:
            raise UsageError(f"unknown mutant {args.mutant!r}; `fp8-verify mutants --list` lists them")
        os.environ[MUTANT_ENV] = args.mutant
        extra = ["-p", "fp8_verify.tools.mutants.plant", *extra]
    named, _ = _selection(suite_location()[0], extra)  # a test file that is not the suite's: one line
    if args.require == "double":
        from .subject.vllm import FORCE_CPU_ENV

        os.environ[FORCE_CPU_ENV] = "1"
    from .subject.vllm import load

    s = load()
    if not s.available and not args.dry_run:
        raise UsageError(f"no subject to test: {s.error} (--dry-run runs the suite anyway)")
    if args.require == "real" and s.kernel != "real":
        raise UsageError(f"--require real: the real SM90 kernel did not load ({s.kernel_reason or s.error})")
    if s.kernel != "real" and not named:
        extra = _default_workers(extra)
    return int(pytest.main(_pytest_args(args, extra)))


def _mutants(args, extra: list[str]) -> int:
    from .tools.mutants import runner

    return runner.main(args, extra)


def _bench(args, extra: list[str]) -> int:
    from .tools.bench import cli

    return cli.main(args, extra)


def _matrix(args, extra: list[str]) -> int:
    from .tools import matrix

    return matrix.main(args, extra)


def _repro(args, extra: list[str]) -> int:
    path = Path(args.file)
    if not path.is_file():
        raise UsageError(f"no repro script at {path}")
    import runpy

    from .subject.vllm import load

    s = load()  # without a Hopper GPU this puts the CPU double under vLLM, as in `check`
    if not s.available:
        raise UsageError(s.error)
    if args.mutant:
        from .tools.mutants.catalogue import CATALOGUE, apply

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
    c.add_argument(
        "--path",
        action="append",
        metavar="NAME=module:function[@m4]",
        help="add your GEMM (vLLM's signature) as a path; every property that applies runs on it",
    )
    c.add_argument(
        "--require",
        choices=("auto", "real", "double", "any"),
        help="which kernel must run (default auto: the real one where an SM90 GPU is visible)",
    )
    c.add_argument("--dry-run", action="store_true", help="run even without a usable vLLM (its tests skip)")
    c.add_argument(
        "--examples",
        type=whole_number,
        metavar="N",
        help="examples per property test (default: by profile, 25x more on the real kernel than on the "
        "CPU double)",
    )
    c.add_argument(
        "--shards",
        type=whole_number,
        metavar="N",
        help="split each core property into N items of 1/N of its examples, so that -n spreads one property "
        "over several workers and GPUs (use with -n; e.g. N = the number of GPUs)",
    )
    c.add_argument(
        "--batch",
        type=whole_number,
        metavar="N",
        help="problems per bit-exact example (fresh activations, one shape; default: 128 under nightly, "
        "else 1): many more problems per GPU-hour, a failure still reported as one problem",
    )
    c.add_argument(
        "--self-tests",
        action="store_true",
        help="on the real kernel, run fp8-verify's own tests too (by default only the CPU double runs them)",
    )
    c.set_defaults(fn=_check)
    m = sub.add_parser("mutants", help="planted-bug check: which properties kill which bugs")
    m.add_argument("--list", action="store_true", help="list the catalogue")
    m.add_argument("--profile", default="ci")
    m.add_argument("--report", metavar="FILE.json")
    m.add_argument("--only", metavar="ID", action="append", help="run only these mutants")
    m.add_argument(
        "--jobs",
        metavar="N",
        type=whole_number,
        default=1,
        help="run up to N mutant processes at once, after the control (default 1; seconds are "
        "comparable only at 1)",
    )
    m.set_defaults(fn=_mutants)
    b = sub.add_parser("bench", help="time the paths (needs the real SM90 kernel)")
    from .tools.bench.cli import add_arguments

    add_arguments(b)
    b.set_defaults(fn=_bench)
    x = sub.add_parser("matrix", help="the suite on several vLLM releases, one table (tools/matrix.py)")
    from .tools.matrix import add_arguments as matrix_arguments

    matrix_arguments(x)
    x.set_defaults(fn=_matrix)
    r = sub.add_parser("repro", help="replay a repro script written by a failing run")
    r.add_argument("file")
    r.add_argument("--mutant", metavar="ID", help="plant this bug first (to replay a mutant's failure)")
    r.set_defaults(fn=_repro)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = parser()
    args, extra = p.parse_known_args(argv)
    if extra and args.cmd not in ("check", "repro", "mutants", "bench", "matrix"):
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
