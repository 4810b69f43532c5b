"""``fp8-verify matrix``: the suite on several vLLM releases, each in its own environment, and one table --
release x property/path: outcome, examples, worst error/bound, finding ids -- as Markdown, JSON and a
picture, with each finding's first bad and first fixed release.

Environments are made without touching the user's: one virtual environment per torch pin under
``~/.cache/fp8-verify/matrix`` (``$FP8_VERIFY_MATRIX_CACHE``), into which each release is installed with
its own dependencies just before its run (so neighbours of one pin share torch's gigabytes, and each
release still gets, e.g., the Transformers major version it needs). ``--env X.Y.Z=DIR`` runs release
X.Y.Z in an environment made by hand instead (one whose pins had to be bent, say), installing nothing
there. The checkout's fp8_verify runs in each (``PYTHONPATH``), so every release is tested by the same
suite. A release that cannot be installed, or does not import, keeps its row: red, with the reason (pip's
last error lines, or the suite's one line), and the matrix goes on with the next. ``--reports R.json ...``
builds the table from reports made elsewhere (the Hopper runner's), mixed with local runs. Exit status: 0
when every release ran with no unexpected failure, 1 when one did not (a red row), 2 for bad input.

    fp8-verify matrix --vllm 0.22.1 0.23.0 0.24.0 0.33.0 --out docs/matrix [--profile dev] [-- -x]
    fp8-verify matrix --vllm 0.33.0 --env 0.34.0=/work/venvs/vllm-0.34.0
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from ..errors import UsageError
from ..report.tables import markdown_table
from ..subject.releases import version
from ..suite.findings import FINDINGS

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("FP8_VERIFY_MATRIX_CACHE", Path.home() / ".cache" / "fp8-verify" / "matrix"))
_NOT_RUN = "(the suite did not run)"
_READY = ".fp8-verify-tools"  # written in a base environment once its tools are in
SHORT = {"passed": "ok", "failed": "FAIL", "xfailed": "xfail", "skipped": "skip", "error": "ERR"}


class InstallError(Exception):
    """A release's environment could not be made; the message is pip's reason, in a line."""


def pip_reason(output: str, lines: int = 2, width: int = 240) -> str:
    """The last meaningful lines of pip's output (or pytest's), in one line: its last ``ERROR:`` lines
    (without the versions it ignored for another Python, or the list of versions it did find), else its
    last lines that are not warnings."""
    text = [line.strip() for line in output.splitlines() if line.strip()]
    keep = [
        line
        for line in text
        if line.startswith("ERROR:") and not line.startswith("ERROR: Ignored the following versions")
    ]
    if not keep:
        noise = ("WARNING:", "DEPRECATION:", "[notice]", "$ ")
        keep = [line for line in text if not line.startswith(noise)]
    said = [re.sub(r" \(from versions: [^)]*\)", "", line) for line in keep[-lines:]]
    said = [line if len(line) <= width else line[: width - 3] + "..." for line in said]
    return " / ".join(said) or "nothing said"


def _run(cmd: list[str], log: Path, env: dict | None = None, timeout: float | None = None) -> int:
    with open(log, "a") as fh:
        fh.write(f"$ {' '.join(cmd)}\n")
        fh.flush()
        return subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, timeout=timeout).returncode


def _end(log: Path) -> int:
    return log.stat().st_size if log.exists() else 0


def _since(log: Path, start: int) -> str:
    """What was written to ``log`` from byte ``start`` on (this command's output, not earlier runs')."""
    with open(log, errors="replace") as fh:
        fh.seek(start)
        return fh.read()


def _pip(cmd: list[str], log: Path, what: str) -> None:
    """Run a pip command into the log; on failure, an InstallError saying ``what`` and pip's reason."""
    start = _end(log)
    if _run(cmd, log) != 0:
        raise InstallError(f"{what}: {pip_reason(_since(log, start))}")


def _torch_pin(release: str, log: Path) -> str:
    """The torch version a release pins, read from its wheel's metadata (pip's resolver, no install)."""
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--ignore-installed"]
    done = subprocess.run(
        [*cmd, "--report", "-", "-q", f"vllm=={release}"], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        with open(log, "a") as fh:
            fh.write(f"$ {' '.join(cmd)} vllm=={release}\n{done.stderr}")
        raise InstallError(f"could not find vLLM {release}: {pip_reason(done.stderr)}")
    try:
        requires = json.loads(done.stdout)["install"][0]["metadata"].get("requires_dist") or []
    except (ValueError, KeyError, IndexError) as e:
        raise InstallError(f"pip's report on vLLM {release} is not readable: {e!r}") from None
    pin = next((r for r in requires if r.replace(" ", "").startswith("torch==")), None)
    if pin is None:
        raise InstallError(f"vLLM {release} pins no torch version; cannot choose its base environment")
    return pin.replace(" ", "").split("==")[1].split(";")[0]


def _installed(py: Path) -> str:
    """The vLLM version installed for ``py`` ('' when none)."""
    return subprocess.run(
        [str(py), "-c", "import importlib.metadata as m; print(m.version('vllm'))"],
        capture_output=True,
        text=True,
    ).stdout.strip()


def environment(release: str, log: Path, reuse: Path | None = None) -> Path:
    """The python of ``release``'s environment: ``reuse``'s, as it is (it must hold that release), or the
    torch pin's base environment, made if need be, with ``release`` and its dependencies installed.
    Raises InstallError with the reason when that cannot be done."""
    if reuse is not None:
        py = reuse / "bin" / "python"
        have = _installed(py)
        if have != release:
            raise InstallError(f"{reuse} holds vLLM {have or '(none)'}, not {release}")
        return py
    pin = _torch_pin(release, log)
    base = CACHE / f"base-torch{pin}"
    py = base / "bin" / "python"
    if not (base / _READY).exists():  # new, or an earlier try stopped half-way
        if not py.exists() and _run([sys.executable, "-m", "venv", str(base)], log) != 0:
            raise InstallError(f"could not make a virtual environment at {base}")
        # torch at the pin: MMA-Sim asks for torch>=2.9, which alone would take the newest torch, and
        # the first release installed would then replace it (gigabytes twice).
        tools = ["hypothesis>=6.100", "pytest>=8", "pytest-xdist>=3", "matplotlib", "mmasim==2.1.1"]
        tools.append(f"torch=={pin}")
        _pip(
            [str(py), "-m", "pip", "install", "-q", *tools],
            log,
            f"could not make the torch {pin} environment",
        )
        (base / _READY).touch()
    if _installed(py) != release:
        _pip(
            [str(py), "-m", "pip", "install", "-q", f"vllm=={release}"],
            log,
            f"could not install vLLM {release}",
        )
    return py


def run_release(release: str, out: Path, profile: str, extra: list[str], reuse: Path | None = None) -> Path:
    """The suite on ``release`` in its environment; returns the JSON report's path (a red row's, with
    the reason, when the environment could not be made or the suite did not run)."""
    log = out / f"vllm-{release}.log"
    report = out / f"report-vllm-{release}.json"
    report.unlink(missing_ok=True)  # never a stale report from an earlier run
    try:
        py = environment(release, log, reuse)
    except (InstallError, OSError) as e:
        print(f"[matrix] vLLM {release}: not installed: {e}", file=sys.stderr, flush=True)
        report.write_text(json.dumps(_not_run(release, f"{e} (see {log})"), indent=1) + "\n")
        return report
    env = dict(os.environ, PYTHONPATH=str(ROOT), CI="1")
    cmd = [str(py), "-m", "fp8_verify", "check", "--profile", profile, "--report", str(report), "-q", *extra]
    t0, start = time.time(), _end(log)
    code = _run(cmd, log, env)
    print(
        f"[matrix] vLLM {release}: pytest exit {code} in {time.time() - t0:.0f} s",
        file=sys.stderr,
        flush=True,
    )
    if not report.is_file():  # no subject there (vLLM does not import): a row that says so, and why
        output = _since(log, start)
        said = [line for line in output.splitlines() if line.startswith("fp8-verify:")]
        why = said[-1] if said else f"the suite wrote no report (exit {code}): {pip_reason(output)}"
        report.write_text(json.dumps(_not_run(release, f"{why} (see {log})"), indent=1) + "\n")
    return report


def _not_run(release: str, why: str) -> dict:
    """A report for a release whose suite could not run: no results, one error row with the reason."""
    row = {"property": _NOT_RUN, "test": _NOT_RUN, "path": None, "kernel": None, "outcome": "error"}
    return {
        "vllm_version": release,
        "torch_version": "?",
        "device": "-",
        "kernel": None,
        "kernel_reason": why,
        "profile": None,
        "complete": False,
        "results": [{**row, "examples": 0, "max_error_over_bound": None, "finding": None, "reason": why}],
    }


def release_entry(report: dict) -> dict:
    """A report as one release row of the matrix JSON."""
    results = report["results"]
    present = sorted({r["finding"] for r in results if r.get("finding") and r["outcome"] == "xfailed"})
    return {
        "vllm": report["vllm_version"],
        "torch": report["torch_version"],
        "device": report["device"],
        "kernel": report.get("kernel") or report.get("backend"),
        "profile": report.get("profile"),
        "kernel_reason": report.get("kernel_reason"),
        "complete": report.get("complete", True),
        "did_not_run": report.get("kernel_reason")
        if results and results[0].get("test") == _NOT_RUN
        else None,
        "unexpected_failures": sum(r["outcome"] in ("failed", "error") for r in results),
        "results": results,
        "findings_present": present,
    }


def document(reports: list[dict]) -> dict:
    releases = sorted((release_entry(r) for r in reports), key=lambda e: version(e["vllm"]) or version("0"))
    return {
        "releases": releases,
        "findings": [
            {
                "id": f.id,
                "title": f.title,
                "first_bad": f.first_bad,
                "first_fixed": f.first_fixed,
                "seen_on": [
                    e["vllm"] + f" ({e['kernel']})" for e in releases if f.id in e["findings_present"]
                ],
            }
            for f in FINDINGS.values()
        ],
    }


def _column(e: dict) -> str:
    return f"{e['vllm']} ({e['kernel'] or 'not run'})"


def _cells(doc: dict) -> tuple[list[str], dict]:
    rows: dict[str, dict[str, dict]] = {}
    for e in doc["releases"]:
        col = _column(e)
        for r in e["results"]:
            key = f"{r['property']}[{r['path']}]" if r.get("path") else r["property"]
            c = rows.setdefault(key, {}).setdefault(
                col, {"outcomes": set(), "examples": 0, "ratio": None, "ids": set()}
            )
            c["outcomes"].add(r["outcome"])
            c["examples"] += r.get("examples") or 0
            ratio = r.get("max_error_over_bound")
            if ratio is not None and (c["ratio"] is None or ratio > c["ratio"]):
                c["ratio"] = ratio
            if r.get("finding"):
                c["ids"].add(r["finding"])
    cols = [_column(e) for e in doc["releases"]]
    return cols, rows


def _text(c: dict | None) -> str:
    if not c:
        return ""
    worst = next(o for o in ("failed", "error", "xfailed", "passed", "skipped") if o in c["outcomes"])
    parts = [SHORT[worst]]
    if c["examples"]:
        parts.append(str(c["examples"]))
    if c["ratio"] is not None and worst == "passed":
        parts.append(f"{c['ratio']:.2g}")
    if c["ids"]:
        parts.append(",".join(sorted(c["ids"])))
    return " ".join(parts)


def markdown(doc: dict, title: str) -> str:
    cols, rows = _cells(doc)
    table = [[key, *(_text(rows[key].get(c)) for c in cols)] for key in sorted(rows)]
    head = [
        f"### {title}",
        "",
        "Cells: worst outcome, examples, worst error/bound where passed, finding ids.",
        "",
    ]
    summary = [
        [
            e["vllm"],
            e["torch"],
            e["device"],
            e["kernel"] or "not run",
            e["profile"] or "-",
            e["unexpected_failures"],
            ", ".join(e["findings_present"]) or "-",
        ]
        for e in doc["releases"]
    ]
    findings = [
        [f["id"], f["first_bad"] or "-", f["first_fixed"] or "not yet", "; ".join(f["seen_on"]) or "-"]
        for f in doc["findings"]
    ]
    return (
        "\n".join(
            [
                *head,
                *markdown_table(
                    ["vLLM", "torch", "device", "kernel", "profile", "unexpected failures", "findings"],
                    summary,
                ),
                "",
                *[
                    f"* vLLM {e['vllm']} did not run: {e['did_not_run']}"
                    for e in doc["releases"]
                    if e["did_not_run"]
                ],
                "",
                *markdown_table(["finding", "first bad", "first fixed", "xfailed (seen) on"], findings),
                "",
                *markdown_table(["property[path]", *cols], table),
            ]
        )
        + "\n"
    )


def picture(doc: dict, dest: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.colors import ListedColormap
    except ImportError:
        return None
    cols, rows = _cells(doc)
    keys = sorted(rows)
    code = {"passed": 0, "xfailed": 1, "skipped": 2, "failed": 3, "error": 3}
    grid = [
        [4 if not rows[k].get(c) else max(code[o] for o in rows[k][c]["outcomes"]) for c in cols]
        for k in keys
    ]
    fig, ax = plt.subplots(figsize=(2 + 1.1 * len(cols), 2 + 0.16 * len(keys)))
    cmap = ListedColormap(["#3a9a4a", "#e0b030", "#c8c8c8", "#d03030", "#ffffff"])
    ax.imshow(grid, cmap=cmap, vmin=0, vmax=4, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(len(keys)), keys, fontsize=5)
    ax.set_title(
        "fp8-verify: green passed, yellow xfailed (a finding), grey skipped/absent, red failed", fontsize=8
    )
    fig.tight_layout()
    fig.savefig(dest, dpi=110)
    plt.close(fig)
    return dest


def main(args, extra: list[str]) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if (
        "--" in extra
    ):  # ``matrix ... -- -x``: argparse keeps the "--", which pytest would take as "files follow"
        extra = [*extra[: extra.index("--")], *extra[extra.index("--") + 1 :]]
    envs = dict(args.env or [])
    releases = list(dict.fromkeys([*(args.vllm or []), *envs]))
    paths = [Path(r) for r in args.reports or []]
    for release in releases:  # each gets its row, whatever became of the one before
        paths.append(run_release(release, out, args.profile, extra, envs.get(release)))
    if not paths:
        raise UsageError("matrix: name releases (--vllm X Y) or reports (--reports A.json B.json)")
    reports = []
    for p in paths:
        try:
            reports.append(json.loads(p.read_text()))
        except (OSError, ValueError) as e:
            raise UsageError(f"matrix: cannot read report {p}: {e}") from None
    doc = document(reports)
    (out / "matrix.json").write_text(json.dumps(doc, indent=1, default=str) + "\n")
    title = args.title or f"fp8-verify matrix, {time.strftime('%Y-%m-%d')}"
    (out / "matrix.md").write_text(markdown(doc, title))
    png = picture(doc, out / "matrix.png")
    print(f"matrix: {len(doc['releases'])} releases -> {out / 'matrix.md'}" + (f", {png}" if png else ""))
    bad = [e["vllm"] for e in doc["releases"] if e["unexpected_failures"]]
    if bad:
        print(f"matrix: unexpected failures or no run on {', '.join(bad)}", file=sys.stderr)
    return 1 if bad else 0


def release_env(value: str) -> tuple[str, Path]:
    """``--env X.Y.Z=DIR``: a release and a virtual environment that already holds it (argparse's
    ``type=``: anything else is a one-line usage error)."""
    release, sep, folder = value.partition("=")
    where = Path(folder).expanduser().absolute()
    if not sep or version(release) is None:
        raise argparse.ArgumentTypeError(f"expected X.Y.Z=DIR (a release and its environment), got {value!r}")
    if not (where / "bin" / "python").exists():
        raise argparse.ArgumentTypeError(f"{where} is not a virtual environment (no bin/python)")
    return release, where


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--vllm", nargs="+", metavar="X.Y.Z", help="releases to run the suite on, each in its own environment"
    )
    p.add_argument(
        "--env",
        nargs="+",
        type=release_env,
        metavar="X.Y.Z=DIR",
        help="run release X.Y.Z in the existing environment DIR as it is (nothing is installed there)",
    )
    p.add_argument("--reports", nargs="+", metavar="R.json", help="reports made elsewhere to include")
    p.add_argument("--profile", default="dev", help="Hypothesis profile of each run (default dev)")
    p.add_argument("--out", default="matrix-out", help="folder for reports, logs, matrix.{json,md,png}")
    p.add_argument("--title", help="the table's heading")
