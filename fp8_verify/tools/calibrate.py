"""Calibration on the real kernel: many problems across the strategy space, each path's output compared
with the emulation of the SM90 kernel *bit for bit* and with the derived FP8 bound (``|err| / bound``
per element), summarised per path, per value/scale regime and per K range.

``python -m fp8_verify.tools.calibrate --n 100000 --procs 8 --out DIR`` writes ``DIR/calibration.json``
(summary and histograms; with ``--procs`` one run per seed, merged), ``DIR/examples.jsonl`` and
``DIR/calibration.png``. Specs come from ``random.Random(seed)`` over the strategies' spaces, real
checkpoints' shapes included (Hypothesis' engine would spend most of 10^5 examples on bookkeeping);
numbers are drawn on the GPU. ``--merge A.json B.json`` pools runs made with different seeds.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import torch

from fp8_verify.strategies.shapes import SHAPES

from ..judge.bound import oracle
from ..judge.exact import emulate, judge_exact
from ..judge.verdict import judge
from ..problem import QUANTIZED_SCALES, SCALE_REGIMES, VALUE_REGIMES, ProblemSpec, build, max_m_for
from ..subject import compiled, registry
from ..subject.registry import CUTLASS_SM90
from ..subject.vllm import load
from ..suite import findings

EDGES = (1, 2, 3, 4, 5, 6, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 255, 256, 257)
BINS = torch.logspace(-6, 3, 91, dtype=torch.float64)  # ratio histogram edges, 10 bins per decade
K_RANGES = ((1, 128), (129, 1024), (1025, 4096), (4097, 1 << 20))


def draw_spec(r: random.Random) -> ProblemSpec:
    """One spec: small and medium problems, one in ten a real checkpoint's layer (M up to 4096)."""
    if r.random() < 0.1:
        shape = r.choice(SHAPES)
        n, k = shape.n, shape.k
        m = r.choice(EDGES) if r.random() < 0.3 else r.randint(1, 4096)
    else:
        m = r.choice(EDGES) if r.random() < 0.4 else r.randint(1, 512)
        n, k = 16 * r.randint(1, 64), 16 * r.randint(1, 128)
    values = r.choice(VALUE_REGIMES)
    scales = (
        r.choice(QUANTIZED_SCALES)
        if values == "quantized"
        else r.choice([s for s in SCALE_REGIMES if s not in QUANTIZED_SCALES])
    )
    return ProblemSpec(
        m=min(m, max_m_for(n, k)),
        n=n,
        k=k,
        out_dtype=r.choice(("bfloat16", "float16")),
        values=values,
        scales=scales,
        row_spread=r.choice((0, 0, 3)) if values == "quantized" else 0,
        seed=r.getrandbits(32),
    )


def _regime(spec: ProblemSpec) -> str:
    return f"{spec.values}/{spec.scales}"


def _k_range(k: int) -> str:
    lo, hi = next(r for r in K_RANGES if r[0] <= k <= r[1])
    return f"K {lo}-{hi}" if hi < 1 << 20 else f"K > {lo - 1}"


def _paths():
    """Available paths with no known defect on the within-bound property (FV-001's cannot run)."""
    s = load()
    backend = compiled.default_backend(s.kernel == "real")
    known = [f for f in findings.FINDINGS.values() if f.applies(s.vllm_version, backend)]
    # A graph per M (dynamic_m False) would hit Dynamo's recompile limit long before 10^5 problems.
    return {
        g.name: g
        for g in registry.default()
        if g.available
        and g.spec.dynamic_m
        and not any(f.where(g.spec) and "test_within_bound" in f.properties for f in known)
    }


def _bump(table: dict, key: str, ratio: float, exact_ok: bool | None) -> None:
    row = table.setdefault(key, {"examples": 0, "max_ratio": 0.0, "not_bit_exact": 0})
    row["examples"] += 1
    if ratio == ratio:
        row["max_ratio"] = max(row["max_ratio"], ratio)
    row["not_bit_exact"] += exact_ok is False


def run(n: int, out: Path, seed: int = 0, every: int = 10, seconds: float = float("inf")) -> dict:
    s = load()
    paths = _paths()
    primary = [name for name, g in paths.items() if not g.compiled]
    r = random.Random(seed)
    hist = {p: torch.zeros(len(BINS) + 1, dtype=torch.int64) for p in paths}
    worst: dict[str, dict] = {}
    counts = dict.fromkeys(paths, 0)
    exact = {
        p: {"compared": 0, "mismatched_problems": 0, "mismatched_elements": 0, "max_ulps": 0} for p in paths
    }
    by_regime: dict[str, dict] = {}
    by_k: dict[str, dict] = {}
    fails: list[dict] = []
    errors: list[dict] = []
    out.mkdir(parents=True, exist_ok=True)
    t0, done = time.time(), 0
    with open(out / "examples.jsonl", "w") as log:
        for i in range(n):
            if time.time() - t0 > seconds:
                print(f"[calibrate] time budget reached after {i} examples", file=sys.stderr)
                break
            done = i + 1
            spec = draw_spec(r)
            try:
                p = build(spec, s.device, draw_on_device=True)
                o = oracle(p)
            except torch.OutOfMemoryError:  # processes sharing one GPU: skip, and give memory back
                torch.cuda.empty_cache()
                errors.append({"i": i, "path": None, **spec.to_dict(), "error": "out of memory (skipped)"})
                continue
            expected = None
            first = next((n_ for n_ in primary if paths[n_].m_rule.admits(p.m)), None)
            for name, path in paths.items():
                if (name != first and i % every) or not path.m_rule.admits(p.m):
                    continue
                try:
                    res = path.run(p)
                    if path.kernel == CUTLASS_SM90 and expected is None:
                        expected = emulate(p)
                except Exception as e:  # one problem's error must not end a 10^5-problem run
                    errors.append(
                        {"i": i, "path": name, **spec.to_dict(), "error": f"{type(e).__name__}: {e}"[:500]}
                    )
                    continue
                v = judge(res, o, p, name)
                ve = None
                if path.kernel == CUTLASS_SM90:
                    ve = judge_exact(res, expected, p, name)
                    e = exact[name]
                    e["compared"] += 1
                    e["mismatched_problems"] += not ve.ok
                    e["mismatched_elements"] += ve.mismatched
                    e["max_ulps"] = max(e["max_ulps"], ve.max_ulps)
                err = (res.double() - o.ref).abs() / o.bound
                finite = err[torch.isfinite(err)]
                hist[name] += (
                    torch.bucketize(finite, BINS.to(finite.device))
                    .bincount(minlength=len(BINS) + 1)
                    .cpu()[: len(BINS) + 1]
                )
                counts[name] += 1
                ok_exact = None if ve is None else ve.ok
                if name == first:
                    _bump(by_regime, _regime(spec), v.max_ratio, ok_exact)
                    _bump(by_k, _k_range(spec.k), v.max_ratio, ok_exact)
                rec = {
                    "i": i,
                    "path": name,
                    **spec.to_dict(),
                    "ratio": v.max_ratio,
                    "ok": v.ok,
                    "exact": ok_exact,
                }
                log.write(json.dumps(rec) + "\n")
                if not v.ok or ok_exact is False:
                    i_, j_ = v.worst or (0, 0)
                    fails.append(
                        {
                            **rec,
                            "verdict": v.to_dict(),
                            "exact_verdict": ve.to_dict() if ve else None,
                            "S": float(o.abs_sum[i_, j_]),
                            "T": float(o.align_sum[i_, j_]),
                        }
                    )
                if v.max_ratio == v.max_ratio and (name not in worst or v.max_ratio > worst[name]["ratio"]):
                    worst[name] = rec
            if i % 2000 == 0:
                bad = sum(e["mismatched_problems"] for e in exact.values())
                print(
                    f"[calibrate] {i}/{n} examples, {time.time() - t0:.0f}s, {len(fails)} failures "
                    f"({bad} not bit-exact)",
                    file=sys.stderr,
                    flush=True,
                )
    summary = {
        "vllm_version": s.vllm_version,
        "torch_version": s.torch_version,
        "device": s.device_name(),
        "examples": done,
        "seconds": round(time.time() - t0, 1),
        "seed": seed,
        "per_path": {
            p: {
                "examples": counts[p],
                "max_ratio": worst.get(p, {}).get("ratio"),
                "worst": worst.get(p),
                "histogram": hist[p].tolist(),
                "exact": exact[p],
            }
            for p in paths
        },
        "by_regime": by_regime,
        "by_k": by_k,
        "bins": BINS.tolist(),
        "failures": fails[:200],
        "failure_count": len(fails),
        "errors": errors[:50],
        "error_count": len(errors),
    }
    (out / "calibration.json").write_text(json.dumps(summary, indent=1, default=str))
    return summary


def _merge_rows(dst: dict, src: dict) -> None:
    for key, row in src.items():
        acc = dst.setdefault(key, {"examples": 0, "max_ratio": 0.0, "not_bit_exact": 0})
        acc["examples"] += row["examples"]
        acc["max_ratio"] = max(acc["max_ratio"], row["max_ratio"])
        acc["not_bit_exact"] += row.get("not_bit_exact", 0)


def merge(summaries: list[dict]) -> dict:
    """One summary from runs with different seeds (e.g. concurrent processes on one GPU): counts and
    histograms add up, the worst example per path is the worst of the runs, failures are pooled."""
    if not summaries:
        raise ValueError("merge: no summaries given")
    keys = ("vllm_version", "torch_version", "device", "bins")
    for k in keys:
        if len({json.dumps(s[k]) for s in summaries}) != 1:
            raise ValueError(f"merge: the runs differ in {k}; only runs of one setup can be merged")
    seeds = [x for s in summaries for x in (s["seed"] if isinstance(s["seed"], list) else [s["seed"]])]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"merge: seeds {seeds} repeat, so examples would be counted twice")
    per_path: dict[str, dict] = {}
    by_regime: dict[str, dict] = {}
    by_k: dict[str, dict] = {}
    for s in summaries:
        _merge_rows(by_regime, s.get("by_regime", {}))
        _merge_rows(by_k, s.get("by_k", {}))
        for name, d in s["per_path"].items():
            acc = per_path.setdefault(
                name, {"examples": 0, "max_ratio": None, "worst": None, "histogram": None}
            )
            acc["examples"] += d["examples"]
            h = d["histogram"]
            acc["histogram"] = (
                h if acc["histogram"] is None else [a + b for a, b in zip(acc["histogram"], h, strict=True)]
            )
            if d["max_ratio"] is not None and (acc["max_ratio"] is None or d["max_ratio"] > acc["max_ratio"]):
                acc["max_ratio"], acc["worst"] = d["max_ratio"], d["worst"]
            if "exact" in d:
                e = acc.setdefault("exact", dict.fromkeys(d["exact"], 0))
                for k, v in d["exact"].items():
                    e[k] = max(e[k], v) if k == "max_ulps" else e[k] + v
    return {
        **{k: summaries[0][k] for k in keys},
        "examples": sum(s["examples"] for s in summaries),
        "seconds": max(s["seconds"] for s in summaries),
        "seed": seeds,
        "per_path": per_path,
        "by_regime": by_regime,
        "by_k": by_k,
        "failures": [f for s in summaries for f in s.get("failures", [])][:200],
        "failure_count": sum(s["failure_count"] for s in summaries),
        "errors": [e for s in summaries for e in s.get("errors", [])][:50],
        "error_count": sum(s.get("error_count", 0) for s in summaries),
    }


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bins = summary["bins"]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, d in summary["per_path"].items():
        h = d["histogram"][1 : len(bins)]
        total = max(1, sum(d["histogram"]))
        ax.step(bins[1:], [x / total for x in h], where="pre", label=f"{name} ({d['examples']} ex.)")
    ax.axvline(1.0, color="k", ls="--", lw=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("|out - ref| / bound, per element")
    ax.set_ylabel("fraction of elements")
    ax.set_title(f"{summary['device']}, vLLM {summary['vllm_version']}: {summary['examples']} problems")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _parallel(args) -> dict:
    """``--procs`` runs of this tool with seeds ``seed .. seed + procs - 1``, merged. Each gets its share
    of the memory budget (they share one GPU); a run that died is named, not silently dropped."""
    from ..problem.budget import BUDGET_ENV, memory_budget

    per = -(-args.n // args.procs)
    out = Path(args.out)
    env = dict(os.environ, **{BUDGET_ENV: str(memory_budget() // args.procs)})
    env.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")

    def command(seed: int) -> list[str]:
        return [
            *(sys.executable, "-m", "fp8_verify.tools.calibrate", "--n", str(per), "--seed", str(seed)),
            *("--seconds", str(args.seconds), "--out", str(out / f"seed{seed}"), "--no-plot"),
            *(["--on-double"] if args.on_double else []),
        ]

    procs = [subprocess.Popen(command(args.seed + i), env=env) for i in range(args.procs)]
    for p in procs:
        p.wait()
    found = [out / f"seed{args.seed + i}" / "calibration.json" for i in range(args.procs)]
    missing = [str(f.parent.name) for f in found if not f.is_file()]
    if missing:
        print(f"calibrate: runs {', '.join(missing)} died (see their output above)", file=sys.stderr)
    runs = [json.loads(f.read_text()) for f in found if f.is_file()]
    if not runs:
        raise SystemExit("calibrate: every run died")
    return merge(runs)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fp8_verify.tools.calibrate")
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--out", default="calibration-out")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--procs", type=int, default=1, help="concurrent processes (seeds seed .. seed+procs-1)")
    ap.add_argument("--seconds", type=float, default=float("inf"), help="stop early after this long")
    ap.add_argument("--no-plot", action="store_true")
    ap.add_argument("--on-double", action="store_true", help="run on the CPU double (to try the tool out)")
    ap.add_argument(
        "--merge", nargs="+", metavar="JSON", help="merge calibration.json files of runs with other seeds"
    )
    args = ap.parse_args(argv)
    out = Path(args.out)
    if args.merge:
        try:
            summary = merge([json.loads(Path(f).read_text()) for f in args.merge])
        except (OSError, ValueError, KeyError) as e:
            print(f"calibrate --merge: {e}", file=sys.stderr)
            return 2
    elif load().kernel != "real" and not args.on_double:
        print(
            "calibrate: needs the real SM90 kernel (" + (load().error or load().kernel_reason) + ")",
            file=sys.stderr,
        )
        return 2
    elif args.procs > 1:
        summary = _parallel(args)
    else:
        summary = run(args.n, out, args.seed, seconds=args.seconds)
    out.mkdir(parents=True, exist_ok=True)
    (out / "calibration.json").write_text(json.dumps(summary, indent=1, default=str))
    if not args.no_plot:
        try:
            plot(summary, out / "calibration.png")
        except ImportError:
            print("calibrate: matplotlib not installed, no plot", file=sys.stderr)
    for name, d in summary["per_path"].items():
        e = d.get("exact") or {}
        bits = f"  not bit-exact {e.get('mismatched_problems')}/{e.get('compared')}" if e else ""
        ratio = d["max_ratio"] or float("nan")
        print(f"{name:<24} examples {d['examples']:>7}  max err/bound {ratio:.4g}{bits}")
    errors = summary.get("error_count", 0)
    print(f"failures: {summary['failure_count']}, errors: {errors}  ({summary['seconds']} s)")
    for e in summary.get("errors", [])[:3]:
        print(f"  error: {e['path']} on M={e['m']} N={e['n']} K={e['k']}: {e['error'][:200]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
