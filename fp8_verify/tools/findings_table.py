"""FINDINGS.md's summary table, generated from the findings table (``fp8_verify/suite/findings.py``) so that
the two cannot disagree: ``python -m fp8_verify.tools.findings_table`` prints it, and
``tests/test_tools.py`` checks that FINDINGS.md holds the current one between the markers."""

from __future__ import annotations

from ..report.tables import markdown_table
from ..suite.findings import FINDINGS

BEGIN = "<!-- findings table: python -m fp8_verify.tools.findings_table -->"
END = "<!-- end of findings table -->"


def table() -> str:
    rows = []
    for f in FINDINGS.values():
        where = ", ".join(f.cases) if f.cases else ", ".join(f"`{p}`" for p in f.properties)
        rows.append(
            [
                f.id,
                f.title,
                f.first_bad or "before 0.22",
                f.first_fixed or "not yet (0.33.0)",
                f"`{f.signature.describe()}`",
                where,
                ", ".join(f.seen_real) or "-",
            ]
        )
    header = ["id", "defect", "first bad", "first fixed", "fails as", "cells", "seen on the real kernel"]
    return "\n".join([BEGIN, *markdown_table(header, rows), END])


if __name__ == "__main__":
    print(table())
