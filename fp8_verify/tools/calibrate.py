"""Tolerance calibration: run many problems across the strategy space on the real kernel and record
``max |err| / bound`` per example and path, plus a histogram of every element's ratio.

``python -m fp8_verify.calibrate --n 100000 --out DIR`` writes ``DIR/calibration.json`` (summary and
histograms), ``DIR/examples.jsonl`` (one line per example and path) and ``DIR/calibration.png``.
Specs are drawn with ``random.Random(seed)`` over the same spaces as :mod:`strategies` (Hypothesis'
engine would spend most of 10^5 examples on bookkeeping), numbers on the GPU.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import torch

from .bound import oracle
from .make import QUANTIZED_SCALES, SCALE_REGIMES, VALUE_REGIMES, ProblemSpec, make
from .paths import discover
from .subject import load
from .verdict import judge

EDGES = (
    1,
    2,
    3,
    4,
    5,
    6,
    7,
    8,
    9,
    15,
    16,
    17,
    31,
    32,
    33,
    63,
    64,
    65,
    127,
    128,
    129,
    255,
    256,
    257,
)
BINS = torch.logspace(-6, 3, 91, dtype=torch.float64)  # ratio histogram edges, 10 bins per decade


def draw_spec(r: random.Random) -> ProblemSpec:
    """One spec: mostly small and medium problems, one in fifty large (DeepSeek-V3-sized K)."""
    big = r.random() < 0.02
    m = r.choice(EDGES) if r.random() < 0.4 else r.randint(1, 4096 if big else 512)
    n = 16 * r.randint(1, 448 if big else 64)
    k = 16 * r.randint(1, 448 if big else 128)
    values = r.choice(VALUE_REGIMES)
    scales = (
        r.choice(QUANTIZED_SCALES)
        if values == "quantized"
        else r.choice([s for s in SCALE_REGIMES if s not in QUANTIZED_SCALES])
    )
    return ProblemSpec(
        m=m,
        n=n,
        k=k,
        out_dtype=r.choice(("bfloat16", "float16")),
        values=values,
        scales=scales,
        row_spread=r.choice((0, 0, 3)) if values == "quantized" else 0,
        seed=r.getrandbits(32),
    )


def run(n: int, out: Path, seed: int = 0, every: int = 10, seconds: float = float("inf")) -> dict:
    s = load()
    paths = {k: v for k, v in discover().items() if v.available and k != "dynamic_compiled"}
    r = random.Random(seed)
    hist = {p: torch.zeros(len(BINS) + 1, dtype=torch.int64) for p in paths}
    worst: dict[str, dict] = {}
    counts = {p: 0 for p in paths}
    fails: list[dict] = []
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    done = 0
    with open(out / "examples.jsonl", "w") as log:
        for i in range(n):
            if time.time() - t0 > seconds:
                print(f"[calibrate] time budget reached after {i} examples", file=sys.stderr)
                break
            done = i + 1
            spec = draw_spec(r)
            p = make(spec, s.device, draw_on_device=True)
            o = oracle(p)
            for name, path in paths.items():
                if name != "dynamic_eager" and i % every:
                    continue
                if path.needs_aligned_m() and p.m % 4:
                    continue
                res = path.run(p)
                v = judge(res, o, p, name)
                err = (res.double() - o.ref).abs() / o.bound
                finite = err[torch.isfinite(err)]
                hist[name] += (
                    torch.bucketize(finite, BINS.to(finite.device))
                    .bincount(minlength=len(BINS) + 1)
                    .cpu()[: len(BINS) + 1]
                )
                counts[name] += 1
                rec = {"i": i, "path": name, **spec.to_dict(), "ratio": v.max_ratio, "ok": v.ok}
                log.write(json.dumps(rec) + "\n")
                if not v.ok:
                    i_, j_ = v.worst
                    fails.append(
                        {
                            **rec,
                            "verdict": v.to_dict(),
                            "S": float(o.abs_sum[i_, j_]),
                            "T": float(o.align_sum[i_, j_]),
                        }
                    )
                if v.max_ratio == v.max_ratio and (name not in worst or v.max_ratio > worst[name]["ratio"]):
                    worst[name] = rec
            if i % 2000 == 0:
                print(
                    f"[calibrate] {i}/{n} examples, {time.time() - t0:.0f}s, {len(fails)} out of bound",
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
            }
            for p in paths
        },
        "bins": BINS.tolist(),
        "failures": fails[:200],
        "failure_count": len(fails),
    }
    (out / "calibration.json").write_text(json.dumps(summary, indent=1, default=str))
    return summary


def merge(summaries: list[dict]) -> dict:
    """One summary from runs with different seeds (e.g. concurrent processes on one GPU): counts and
    histograms add up, the worst example per path is the worst of the runs, failures are pooled."""
    if not summaries:
        raise ValueError("merge: no summaries given")
    keys = ("vllm_version", "torch_version", "device", "bins")
    for k in keys:
        if len({json.dumps(s[k]) for s in summaries}) != 1:
            raise ValueError(f"merge: the runs differ in {k}; only runs of one setup can be merged")
    seeds = [s["seed"] for s in summaries]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"merge: seeds {seeds} repeat, so examples would be counted twice")
    per_path: dict[str, dict] = {}
    for s in summaries:
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
    return {
        **{k: summaries[0][k] for k in keys},
        "examples": sum(s["examples"] for s in summaries),
        "seconds": max(s["seconds"] for s in summaries),
        "seed": seeds,
        "per_path": per_path,
        "failures": [f for s in summaries for f in s.get("failures", [])][:200],
        "failure_count": sum(s["failure_count"] for s in summaries),
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fp8_verify.calibrate")
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--out", default="calibration-out")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seconds", type=float, default=float("inf"), help="stop early after this long")
    ap.add_argument(
        "--merge", nargs="+", metavar="JSON", help="merge calibration.json files of runs with other seeds"
    )
    args = ap.parse_args(argv)
    if args.merge:
        try:
            summary = merge([json.loads(Path(f).read_text()) for f in args.merge])
        except (OSError, ValueError, KeyError) as e:
            print(f"calibrate --merge: {e}", file=sys.stderr)
            return 2
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "calibration.json").write_text(json.dumps(summary, indent=1, default=str))
        return _finish(summary, Path(args.out))
    if load().backend != "real":
        print(
            "calibrate: needs the real SM90 kernel (" + (load().error or load().backend_reason) + ")",
            file=sys.stderr,
        )
        return 2
    summary = run(args.n, Path(args.out), args.seed, seconds=args.seconds)
    return _finish(summary, Path(args.out))


def _finish(summary: dict, out: Path) -> int:
    try:
        plot(summary, out / "calibration.png")
    except ImportError:
        print("calibrate: matplotlib not installed, no plot", file=sys.stderr)
    for name, d in summary["per_path"].items():
        print(f"{name:<14} examples {d['examples']:>7}  max err/bound {d['max_ratio'] or float('nan'):.4g}")
    print(f"out of bound: {summary['failure_count']}  ({summary['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
