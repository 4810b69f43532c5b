"""Assemble docs/reports/mutants-h100-split.json from this session's H100 runs of `fp8-verify mutants`.

Why a script: device calls are limited to 10 minutes. The first call (`--jobs 6`, the default
selection, calibration running beside it) killed 10 mutants before its limit and never wrote its
report; the second (`--jobs 8 --only` the other 7, selection without tests/test_plugin.py, which
runs pytest in subprocesses that never see a mutant) finished with its report; the baselines ran in
a third call (`python -m fp8_verify.baselines --all`). This script joins them into the runner's
report format without changing a number: per-mutant pytest reports and the progress lines of run 1,
the report of run 2, the baselines JSON.

Usage: python scripts/assemble_mutants_h100.py RUN1_LOG_DIR RUN1_LOG RUN2_REPORT BASELINES OUT
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from fp8_verify.mutants import CATALOGUE, table

run1_dir, run1_log, run2_report, baselines_json, out = (Path(a) for a in sys.argv[1:6])
progress = {
    m.group(1): (m.group(2), float(m.group(3)))
    for m in re.finditer(r"^([\w-]+): (killed|survived) in (\d+) s", run1_log.read_text(), re.M)
}
run2 = json.loads(run2_report.read_text())
base = json.loads(baselines_json.read_text())["runs"]
rows = {r["id"]: {**r, "run": 2} for r in run2["mutants"]}
for mid, (status, seconds) in progress.items():
    report = json.loads((run1_dir / f"{mid}.json").read_text())
    failed = [r for r in report["results"] if r["outcome"] in ("failed", "error")]
    rows[mid] = {
        **CATALOGUE[mid].to_dict(),
        "status": status,
        "killed": status == "killed",
        "exit_code": 1 if failed else 0,
        "examples_to_kill": failed[0]["examples"] if failed else None,
        "seconds_to_kill": seconds if failed else None,
        "seconds": seconds,
        "killed_by": sorted({r["test"].split("::")[-1] for r in failed}),
        "reason": (failed[0].get("reason") or "")[:600] if failed else None,
        "run": 1,
    }
for mid, row in rows.items():
    row["baselines"] = base[mid]  # all baselines from the one --all run, for like-for-like columns
missing = [m for m in CATALOGUE if m not in rows]
if missing:
    sys.exit(f"no H100 result for {', '.join(missing)}")
ordered = [rows[m] for m in CATALOGUE]
report = {
    "profile": run2["profile"],
    "device": run2["device"],
    "vllm_version": run2["vllm_version"],
    "backend": run2["backend"],
    "runs": {
        "1": "fp8-verify mutants --profile ci --jobs 6 (default selection); 10 mutants done in the "
        "call's 10 minutes, with 5 calibration processes sharing the GPU; control 253 s",
        "2": "fp8-verify mutants --profile ci --jobs 8 --only <the other 7> -m 'not finding' "
        "--ignore=tests/test_oracle.py --ignore=tests/test_strategies.py --ignore=tests/test_plugin.py; "
        f"control {run2['control']['seconds']} s",
        "baselines": "python -m fp8_verify.baselines --all (one process, after the torch-oracle fix)",
    },
    "control": {"run2": run2["control"], "baselines": base["control"]},
    "mutants": ordered,
}
out.write_text(json.dumps(report, indent=2) + "\n")
print("\n".join(table(ordered)))
