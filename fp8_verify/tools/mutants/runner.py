"""``fp8-verify mutants``: the property suite once per planted bug, each in a fresh process, recording which
property failed first and how fast, beside upstream's own metrics (:mod:`fp8_verify.tools.baselines`).

Usage: ``fp8-verify mutants --list``;
``fp8-verify mutants --profile ci [--only ID ...] [--jobs N] [--report F.json] [pytest selection ...]``
(a pytest selection, e.g. ``-k``/``-m``, replaces :data:`DEFAULT_SELECTION`; ``--jobs N`` runs up to N
mutant processes at once, after the control); ``fp8-verify check --mutant ID`` runs the suite on one
mutant. See ``docs/mutation.md``.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from ...errors import UsageError
from ...report.tables import markdown_table
from ...suite.options import PROFILES
from ..baselines import run_baselines
from .catalogue import CATALOGUE, Mutant
from .plant import MUTANT_ENV, RUNNER_ENV

ROOT = Path(__file__).resolve().parents[3]
# Properties run on each mutant. Finding-covered items are strict xfails: they cannot kill a mutant
# unless its failure looks like the finding's (then the signature check fails the run anyway).
# The suite's self-tests (oracle, strategies, tooling, plugin) never call vLLM's GEMM paths in-process:
# no mutant can change their outcome. (On an H100 the plugin's alone took 200 of the control's 253 s.)
DEFAULT_SELECTION = (
    "--ignore=tests/test_oracle.py",
    "--ignore=tests/test_strategies.py",
    "--ignore=tests/test_tools.py",
    "--ignore=tests/test_plugin.py",
    "--ignore=tests/test_numerics.py",
    "--ignore=tests/test_bench.py",
    "--ignore=tests/test_structure.py",
    "--ignore=tests/test_cli.py",
    "--ignore=tests/test_packaging.py",
)
RUN_TIMEOUT_S = 3600  # a run that hangs; the CPU control takes 15-30 min


# -- the runner ----------------------------------------------------------------------------------


@dataclass
class Run:
    """One pytest run in a fresh process: exit code, wall time and the fp8-verify JSON results."""

    exit_code: int
    seconds: float
    results: list[dict]
    tail: str

    def failed(self) -> list[dict]:
        return [r for r in self.results if r["outcome"] in ("failed", "error")]


def _pytest_run(
    mutant_id: str | None,
    profile: str,
    selection: list[str],
    exitfirst: bool,
    deselect: list[str],
    log_dir: Path,
    threads: int | None = None,
) -> Run:
    report = log_dir / f"{mutant_id or 'control'}.json"
    cmd = [sys.executable, "-m", "fp8_verify", "check", "--profile", profile, "--report", str(report)]
    cmd += ["-q", "-p", "no:xdist", "-p", "fp8_verify.tools.mutants.plant", *(["-x"] if exitfirst else [])]
    cmd += selection
    for nodeid in deselect:
        cmd += ["--deselect", nodeid]
    env = dict(os.environ)
    env.pop(MUTANT_ENV, None)
    if mutant_id:
        env[MUTANT_ENV] = mutant_id
    env[RUNNER_ENV] = "1"
    if threads and "OMP_NUM_THREADS" not in env:  # concurrent runs: share the cores, don't oversubscribe
        env["OMP_NUM_THREADS"] = str(threads)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(ROOT), env.get("PYTHONPATH"))))
    t0 = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
        code, out = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as e:
        partial = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else e.stdout
        code, out = -1, f"{partial or ''}\ntimed out after {RUN_TIMEOUT_S} s"
    seconds = time.monotonic() - t0
    (log_dir / f"{mutant_id or 'control'}.log").write_text(out)
    results = json.loads(report.read_text())["results"] if report.is_file() else []
    return Run(code, seconds, results, out[-3000:])


def _test_name(r: dict) -> str:
    return r["test"].split("::")[-1]


def _mutant_row(m: Mutant, run: Run) -> dict:
    failed = run.failed()
    killed = run.exit_code == 1 and bool(failed)
    status = (
        "killed"
        if killed
        else ("survived" if run.exit_code == 0 else "timeout" if run.exit_code == -1 else "error")
    )
    row = {
        **m.to_dict(),
        "status": status,
        "killed": killed,
        "exit_code": run.exit_code,
        "examples_to_kill": failed[0]["examples"] if killed else None,
        "seconds_to_kill": round(run.seconds, 1) if killed else None,
        "seconds": round(run.seconds, 1),
        "killed_by": sorted({_test_name(r) for r in failed}),
        "reason": (failed[0].get("reason") or "")[:600] if failed else None,
    }
    if status == "error":
        row["reason"] = run.tail[-1500:]
    return row


def _caught(b: dict, name: str) -> str:
    r = b.get(name)
    if r is None:
        return "?"
    return "yes" if r.get("caught") else "no"


def table(rows: list[dict]) -> list[str]:
    """The mutant table as Markdown lines (what ``docs/mutation.md`` holds)."""
    header = ["mutant", "category", "equivalent?", "killed?", "examples", "seconds", "killed by"]
    header += ["vLLM metric caught?", "calc_diff caught?"]
    body = []
    for r in rows:
        b = r.get("baselines", {})
        body.append(
            [
                r["id"],
                r["category"],
                "yes" if r["equivalent"] else "no",
                {"killed": "yes", "survived": "no"}.get(r["status"], r["status"]),
                "-" if r["examples_to_kill"] is None else r["examples_to_kill"],
                "-" if r["seconds_to_kill"] is None else r["seconds_to_kill"],
                ", ".join(r["killed_by"]) or "-",
                _caught(b, "vllm_metric"),
                _caught(b, "calc_diff"),
            ]
        )
    return markdown_table(header, body)


def _list() -> int:
    w = max(len(i) for i in CATALOGUE)
    for m in CATALOGUE.values():
        eq = "  [equivalent]" if m.equivalent else ""
        print(f"{m.id:<{w}}  {m.category:<8} {m.description}{eq}")
    return 0


def main(args, extra: list[str]) -> int:
    """``fp8-verify mutants``: control run, then every mutant in a fresh process, then baselines."""
    if getattr(args, "list", False):
        return _list()
    profile = args.profile or "ci"
    if profile not in PROFILES:
        raise UsageError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    ids = list(dict.fromkeys(args.only or CATALOGUE))  # each once: a run's log and report are per id
    unknown = [i for i in ids if i not in CATALOGUE]
    if unknown:
        raise UsageError(f"unknown mutant(s) {', '.join(unknown)}; `fp8-verify mutants --list`")
    jobs = getattr(args, "jobs", 1)
    jobs = 1 if jobs is None else jobs
    if not isinstance(jobs, int) or jobs < 1:
        raise UsageError(f"--jobs must be an integer >= 1, got {jobs!r}")
    selection = list(extra) if extra else list(DEFAULT_SELECTION)
    log_dir = Path(tempfile.mkdtemp(prefix="fp8-verify-mutants-"))
    say = functools.partial(print, file=sys.stderr, flush=True)
    say(
        f"fp8-verify mutants: profile {profile}, selection {' '.join(selection)}, jobs {jobs}, "
        f"logs in {log_dir}"
    )

    t0 = time.monotonic()
    control = _pytest_run(None, profile, selection, False, [], log_dir)
    control_failed = sorted({r["test"] for r in control.failed()})
    say(
        f"control: exit {control.exit_code} in {control.seconds:.0f} s"
        + (f"; FAILING (excluded from mutant runs): {', '.join(control_failed)}" if control_failed else "")
    )
    if control.exit_code not in (0, 1):
        say(control.tail)
        return 1
    from ...subject.vllm import load

    s = load()
    control_baselines = run_baselines(None)
    # The bug runs are independent processes, so up to `jobs` of them run at once; the baselines plant
    # the bug in this process, so they run here, one at a time, in catalogue order, once the runs are
    # done (at --jobs 1 as before: no run shares the machine with another run or with a baseline).
    threads = max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else None
    by_id: dict[str, dict] = {}

    def write_report(rows: list[dict], complete: bool) -> dict:
        """The JSON report; also written after each bug run (``complete: false``), so that a run
        stopped by a CI time limit keeps what it has done."""
        report = {
            "profile": profile,
            "selection": selection,
            "jobs": jobs,
            "complete": complete,
            "vllm_version": s.vllm_version,
            "kernel": s.kernel,
            "device": s.device_name() if s.available else None,
            "seconds": round(time.monotonic() - t0, 1),
            "control": {
                "passed": control.exit_code == 0,
                "exit_code": control.exit_code,
                "seconds": round(control.seconds, 1),
                "failed": control_failed,
                "baselines": control_baselines,
            },
            "mutants": rows,
        }
        if args.report:
            Path(args.report).parent.mkdir(parents=True, exist_ok=True)
            Path(args.report).write_text(json.dumps(report, indent=2, default=str) + "\n")
        return report

    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="fp8-verify-mutant") as pool:
        futures = {
            pool.submit(_pytest_run, i, profile, selection, True, control_failed, log_dir, threads): i
            for i in ids
        }
        try:
            for future in as_completed(futures):
                i = futures[future]
                run = future.result()
                row = by_id[i] = _mutant_row(CATALOGUE[i], run)
                say(
                    f"{i}: {row['status']} in {run.seconds:.0f} s"
                    + (f" by {', '.join(row['killed_by'])}" if row["killed"] else "")
                    + (f"\n  {row['reason'][:400]}" if row["status"] == "error" else "")
                )
                write_report([by_id[k] for k in ids if k in by_id], complete=False)
        except BaseException:  # Ctrl-C or a broken run: start no more runs
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    rows = [by_id[i] for i in ids]
    say(f"baselines: {len(ids)} mutant(s), one at a time in this process")
    for row in rows:
        row["baselines"] = run_baselines(row["id"])
    write_report(rows, complete=True)
    print(
        f"vLLM {s.vllm_version}, kernel {s.kernel}, profile {profile}, "
        f"selection {' '.join(selection)}; control "
        f"{'passed' if control.exit_code == 0 else 'FAILED: ' + ', '.join(control_failed)}"
    )
    for line in table(rows):
        print(line)
    false_alarm = [k for k, b in control_baselines.items() if isinstance(b, dict) and b.get("caught")]
    survivors = [r["id"] for r in rows if not r["equivalent"] and not r["killed"]]
    killed_equivalent = [r["id"] for r in rows if r["equivalent"] and r["killed"]]
    if survivors:
        print(f"surviving non-equivalent mutants: {', '.join(survivors)}")
    if killed_equivalent:
        print(
            f"equivalent mutants killed (a false alarm or a wrong equivalence claim): "
            f"{', '.join(killed_equivalent)}"
        )
    if false_alarm:
        print(f"baselines that flag the unmutated subject: {', '.join(false_alarm)}")
    if args.report:
        print(f"report: {args.report}")
    return int(
        bool(
            control_failed
            or survivors
            or killed_equivalent
            or any(r["status"] in ("error", "timeout") for r in rows)
        )
    )
