"""The run summary: a grid of properties by paths (worst outcome of the cell, examples run), for the
terminal and as Markdown (``--fp8-summary-md``, ``$GITHUB_STEP_SUMMARY``)."""

from __future__ import annotations

from collections.abc import Sequence

from ..subject.vllm import Subject
from .tables import markdown_table, text_table

SHORT = {"passed": "ok", "failed": "FAIL", "xfailed": "xfail", "skipped": "skip", "error": "ERR"}
ORDER = ("failed", "error", "xfailed", "passed", "skipped")


def grid(results: list[dict], path_order: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    """Header and rows: one row per property, one column per path that appears (``-``: no path)."""
    cells: dict[tuple[str, str], dict] = {}
    for r in results:
        c = cells.setdefault((r["property"], r["path"] or "-"), {"outcomes": set(), "examples": 0})
        c["outcomes"].add(r["outcome"])
        c["examples"] += r["examples"] or 0
    present = {p for _, p in cells}
    cols = [p for p in (*path_order, "-") if p in present] + sorted(present - {*path_order, "-"})
    rows = []
    for prop in sorted({p for p, _ in cells}):
        rows.append([prop] + [_cell_text(cells.get((prop, c))) for c in cols])
    return ["property", *cols], rows


def _cell_text(c: dict | None) -> str:
    if c is None:
        return ""
    worst = next(o for o in ORDER if o in c["outcomes"])
    return SHORT[worst] + (f" {c['examples']}" if c["examples"] else "")


def totals(results: list[dict]) -> str:
    counts = {o: sum(r["outcome"] == o for r in results) for o in ORDER}
    return ", ".join(f"{n} {o}" for o, n in counts.items() if n)


def text_summary(results: list[dict], path_order: Sequence[str]) -> list[str]:
    header, rows = grid(results, path_order)
    return [*text_table(header, rows), totals(results)]


def markdown_summary(results: list[dict], subject: Subject, path_order: Sequence[str]) -> str:
    header, rows = grid(results, path_order)
    title = f"### fp8-verify: vLLM {subject.vllm_version}, kernel {subject.kernel}\n"
    return "\n".join([title, *markdown_table(header, rows), "", totals(results)]) + "\n"


def coverage(results: list[dict]) -> dict[str, dict[str, int]]:
    """Examples per path and kernel schedule class (fp8_verify.subject.schedule), over every property."""
    out: dict[str, dict[str, int]] = {}
    for r in results:
        for c, n in (r.get("coverage") or {}).items():
            per = out.setdefault(r["path"] or "-", {})
            per[c] = per.get(c, 0) + n
    return out


def coverage_summary(results: list[dict], path_order: Sequence[str]) -> list[str]:
    """The schedule classes each path's examples reached (a table for the terminal)."""
    cov = coverage(results)
    if not cov:
        return []
    cols = sorted({c for per in cov.values() for c in per})
    rows = [[p, *(str(cov[p].get(c, "")) for c in cols)] for p in (*path_order, "-") if p in cov]
    return [
        "",
        "examples per kernel schedule class (fp8_verify/subject/schedule.py):",
        *text_table(["path", *cols], rows),
    ]
