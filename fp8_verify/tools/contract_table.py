"""The contract table (docs/contract.md): every case of :mod:`fp8_verify.suite.contract` on every path of
the registry, for an aligned and an unaligned M, classified as correct, rejected (naming the problem),
an unclear error, or a silent wrong answer. The property that asserts the same cells is
``tests/test_contract.py``; this prints them all at once, for the docs and for comparing machines.
"""

from __future__ import annotations

from ..problem import ProblemSpec, build
from ..report.tables import markdown_table
from ..subject.registry import default
from ..subject.vllm import load
from ..suite.contract import CASES, outcome

SHORT = {
    "correct": "correct",
    "rejected": "rejected",
    "unclear-error": "UNCLEAR ERROR",
    "silent-wrong": "SILENT WRONG",
}


def run_table(ms: tuple[int, int] = (8, 5), n: int = 256, k: int = 384) -> list[dict]:
    """Every case on every available path, for an aligned and an unaligned M: one row per cell."""
    dev = load().device
    rows = []
    for case in CASES.values():
        for path in default():
            for m in ms:
                row = {"case": case.name, "path": path.name, "m": m}
                if not path.available:
                    row.update(kind="n/a", detail=path.reason)
                elif not path.m_rule.admits(m):
                    row.update(kind="n/a", detail=f"{path.name} takes only {path.m_rule.value}")
                else:
                    o = outcome(case, path, build(ProblemSpec(m=m, n=n, k=k, seed=m), dev))
                    row.update(kind=o.kind, detail=o.detail)
                rows.append(row)
    return rows


def markdown(rows: list[dict], title: str) -> str:
    """The table: a row per case, a column per (path, M), cells 'correct' / 'rejected: message' /
    'SILENT WRONG' / 'UNCLEAR ERROR: message'."""
    cols = sorted(
        {(r["path"], r["m"]) for r in rows},
        key=lambda c: (list(dict.fromkeys(r["path"] for r in rows)).index(c[0]), -c[1]),
    )
    cells = {(r["case"], r["path"], r["m"]): r for r in rows}
    table = []
    for case in CASES.values():
        line = [f"`{case.name}`: {case.description}"]
        for p, m in cols:
            r = cells.get((case.name, p, m))
            if r is None or r["kind"] == "n/a":
                line.append("n/a")
            elif r["kind"] == "correct":
                line.append("correct")
            else:
                line.append(f"**{SHORT[r['kind']]}**" + (f": {r['detail']}" if r["detail"] else ""))
        table.append(line)
    header = ["case", *(f"{p} M={m}" for p, m in cols)]
    return "\n".join([f"### {title}", "", *markdown_table(header, table)]) + "\n"


def main(argv: list[str] | None = None) -> int:
    """``python -m fp8_verify.tools.contract_table [--json FILE] [--md FILE]``: the table here."""
    import argparse
    import json
    import sys

    ap = argparse.ArgumentParser(prog="python -m fp8_verify.tools.contract_table")
    ap.add_argument("--json", help="write the cells as JSON")
    ap.add_argument("--md", help="write the Markdown table")
    args = ap.parse_args(argv)
    s = load()
    if not s.available:
        print(f"contract: {s.error}", file=sys.stderr)
        return 2
    rows = run_table()
    where = s.device_name()
    title = f"vLLM {s.vllm_version} on {where}"
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {
                    "vllm_version": s.vllm_version,
                    "device": where,
                    "kernel": s.kernel,
                    "rows": rows,
                },
                fh,
                indent=1,
            )
    text = markdown(rows, title)
    if args.md:
        with open(args.md, "w") as fh:
            fh.write(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
