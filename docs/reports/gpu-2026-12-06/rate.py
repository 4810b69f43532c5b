"""Problems judged in a report, per row and per GPU-hour of its wall time (start-up included), and the
largest dims each row reached: ``python3 rate.py REPORT.json``."""

from __future__ import annotations

import json
import sys

doc = json.load(open(sys.argv[1]))
total = 0
for r in doc["results"]:
    n = r.get("problems") or r.get("examples") or 0
    total += n
    if r["outcome"] != "skipped" and n:
        print(
            f"{r['outcome']:8} {r['test'].split('::')[-1]:55} examples {r['examples']:6}  problems {n:7}"
            f"  largest {r.get('largest')}  max M,N,K {r.get('max_dims')}"
        )
bad = [r["test"] for r in doc["results"] if r["outcome"] in ("failed", "error")]
secs = doc["seconds"]
print(f"{doc['device']} vLLM {doc['vllm_version']} profile {doc['profile']} complete {doc['complete']}")
print(f"{total} problems in {secs} s: {total / secs * 3600:.3g} problems per GPU-hour; failed: {bad or 0}")
