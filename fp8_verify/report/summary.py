"""Turn per-test records into the run summary (terminal and Markdown) and the JSON report."""

from __future__ import annotations

import json
import os
from pathlib import Path

from .findings import FINDINGS
from .paths import PATH_NAMES

SHORT = {"passed": "ok", "failed": "FAIL", "xfailed": "xfail", "skipped": "skip", "error": "ERR"}
ORDER = ("failed", "error", "xfailed", "passed", "skipped")


def _cells(results: list[dict]) -> tuple[list[str], list[str], dict]:
    cells: dict[tuple[str, str], dict] = {}
    for r in results:
        key = (r["property"], r["path"] or "-")
        c = cells.setdefault(key, {"outcomes": set(), "examples": 0})
        c["outcomes"].add(r["outcome"])
        c["examples"] += r["examples"] or 0
    props = sorted({p for p, _ in cells})
    cols = [p for p in (*PATH_NAMES, "-") if any(k[1] == p for k in cells)]
    return props, cols, cells


def _cell_text(c: dict | None) -> str:
    if c is None:
        return ""
    worst = next(o for o in ORDER if o in c["outcomes"])
    return SHORT[worst] + (f" {c['examples']}" if c["examples"] else "")


def text_summary(results: list[dict]) -> list[str]:
    """Properties by paths: outcome (worst of the cell) and examples run."""
    props, cols, cells = _cells(results)
    w = max([len(p) for p in props] + [8])
    head = "property".ljust(w) + "  " + "  ".join(c.ljust(16) for c in cols)
    lines = [head, "-" * len(head)]
    for p in props:
        lines.append(p.ljust(w) + "  " + "  ".join(_cell_text(cells.get((p, c))).ljust(16) for c in cols))
    totals = {o: sum(r["outcome"] == o for r in results) for o in ORDER}
    lines.append(", ".join(f"{n} {o}" for o, n in totals.items() if n))
    return lines


def markdown_summary(results: list[dict], subject) -> str:
    props, cols, cells = _cells(results)
    out = [
        f"### fp8-verify: vLLM {subject.vllm_version}, kernel {subject.backend}\n",
        "| property | " + " | ".join(cols) + " |",
        "|---" * (len(cols) + 1) + "|",
    ]
    for p in props:
        out.append(f"| {p} | " + " | ".join(_cell_text(cells.get((p, c))) for c in cols) + " |")
    return "\n".join(out) + "\n"


def write_json(path: str, subject, profile: str, results: list[dict], seconds: float) -> None:
    seen = {r["finding"] for r in results if r.get("finding")}
    report = {
        "vllm_version": subject.vllm_version,
        "torch_version": subject.torch_version,
        "device": subject.device_name() if subject.available else "unknown",
        "backend": subject.backend,
        "profile": profile,
        "seconds": round(seconds, 1),
        "results": results,
        "findings": [FINDINGS[f].to_dict() for f in sorted(seen)],
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(report, indent=2, default=str) + os.linesep)
