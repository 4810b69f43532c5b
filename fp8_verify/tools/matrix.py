"""``fp8-verify matrix``: the suite on several vLLM releases, each in its own environment, and one table --
release x property/path: outcome, examples, worst error/bound, finding ids -- as Markdown, JSON and a
picture, with each finding's first bad and first fixed release.

Environments are made without touching the user's: one virtual environment per torch pin under
``~/.cache/fp8-verify/matrix`` (``$FP8_VERIFY_MATRIX_CACHE``), into which each release is installed with
its own dependencies just before its run (so neighbours of one pin share torch's gigabytes, and each
release still gets, e.g., the Transformers major version it needs). The checkout's fp8_verify runs in each
(``PYTHONPATH``), so every release is tested by the same suite; a release that does not import there gets
a row that says so (the suite refuses to run without a subject). ``--reports R.json ...`` builds the table
from reports made elsewhere (the Hopper runner's), mixed with local runs.

    fp8-verify matrix --vllm 0.22.1 0.23.0 0.24.0 0.33.0 --out docs/matrix [--profile dev] [-- -x]
"""

from __future__ import annotations

import argparse
import json
import os
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
SHORT = {"passed": "ok", "failed": "FAIL", "xfailed": "xfail", "skipped": "skip", "error": "ERR"}


def _torch_pin(release: str) -> str:
    """The torch version a release pins, read from its wheel's metadata (pip's resolver, no install)."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--no-deps",
            "--ignore-installed",
            "--report",
            "-",
            "-q",
            f"vllm=={release}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    requires = json.loads(out)["install"][0]["metadata"].get("requires_dist", [])
    pin = next((r for r in requires if r.replace(" ", "").startswith("torch==")), None)
    if pin is None:
        raise UsageError(f"vLLM {release} pins no torch version; cannot choose its base environment")
    return pin.replace(" ", "").split("==")[1].split(";")[0]


def _run(cmd: list[str], log: Path, env: dict | None = None, timeout: float | None = None) -> int:
    with open(log, "a") as fh:
        fh.write(f"$ {' '.join(cmd)}\n")
        fh.flush()
        return subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, timeout=timeout).returncode


def environment(release: str, log: Path) -> Path:
    """The python of the torch pin's environment, with ``release`` (and its dependencies) installed."""
    pin = _torch_pin(release)
    base = CACHE / f"base-torch{pin}"
    py = base / "bin" / "python"
    if not py.exists():
        _run([sys.executable, "-m", "venv", str(base)], log)
        tools = ["hypothesis>=6.100", "pytest>=8", "pytest-xdist>=3", "matplotlib", "mmasim==2.1.1"]
        if _run([str(py), "-m", "pip", "install", "-q", *tools], log) != 0:
            raise UsageError(f"could not make the torch {pin} environment (see {log})")
    have = subprocess.run(
        [str(py), "-c", "import importlib.metadata as m; print(m.version('vllm'))"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    if have != release and _run([str(py), "-m", "pip", "install", "-q", f"vllm=={release}"], log) != 0:
        raise UsageError(f"could not install vLLM {release} into {base} (see {log})")
    return py


def run_release(release: str, out: Path, profile: str, extra: list[str]) -> Path:
    """The suite on ``release`` in its environment; returns the JSON report's path."""
    log = out / f"vllm-{release}.log"
    report = out / f"report-vllm-{release}.json"
    py = environment(release, log)
    env = dict(os.environ, PYTHONPATH=str(ROOT), CI="1")
    cmd = [str(py), "-m", "fp8_verify", "check", "--profile", profile, "--report", str(report), "-q", *extra]
    t0 = time.time()
    code = _run(cmd, log, env)
    print(
        f"[matrix] vLLM {release}: pytest exit {code} in {time.time() - t0:.0f} s",
        file=sys.stderr,
        flush=True,
    )
    if not report.is_file():  # no subject there (vLLM does not import): a row that says so, and why
        said = [line for line in log.read_text().splitlines() if line.startswith("fp8-verify:")]
        why = said[-1] if said else f"the suite wrote no report (exit {code})"
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


def _cells(doc: dict) -> tuple[list[str], dict]:
    rows: dict[str, dict[str, dict]] = {}
    for e in doc["releases"]:
        col = f"{e['vllm']} ({e['kernel']})"
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
    cols = [f"{e['vllm']} ({e['kernel']})" for e in doc["releases"]]
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
            e["kernel"],
            e["profile"],
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
    paths = [Path(r) for r in args.reports or []]
    for release in args.vllm or []:
        paths.append(run_release(release, out, args.profile, extra))
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
        print(f"matrix: unexpected failures on {', '.join(bad)}", file=sys.stderr)
    return 1 if bad else 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--vllm", nargs="+", metavar="X.Y.Z", help="releases to run the suite on, each in its own environment"
    )
    p.add_argument("--reports", nargs="+", metavar="R.json", help="reports made elsewhere to include")
    p.add_argument("--profile", default="dev", help="Hypothesis profile of each run (default dev)")
    p.add_argument("--out", default="matrix-out", help="folder for reports, logs, matrix.{json,md,png}")
    p.add_argument("--title", help="the table's heading")
