"""One (shape, M) point: rotating input sets that keep L2 cold, each path checked against the baseline
bit for bit, captured into a CUDA graph and timed in both modes (:mod:`.measure`)."""

from __future__ import annotations

import functools
import itertools
import math
import time
from collections.abc import Callable
from typing import Any

import torch

from fp8_verify.strategies.shapes import Shape

from ...problem import FP8, BlockScaledProblem, cdiv, column_major
from .config import Config
from .measure import Clock, measure
from .paths import BenchPaths, round4

BLOCK = (128, 128)

Weights = list[tuple[torch.Tensor, torch.Tensor]]


def weights(shape: Shape, count: int, dev: torch.device, g: torch.Generator) -> Weights:
    """``count`` random FP8 weights with fp32 block scales, drawn on the device (fast; timing needs
    no bit-reproducible values, only realistic magnitudes)."""
    nb, kb = cdiv(shape.n, BLOCK[0]), cdiv(shape.k, BLOCK[1])
    out = []
    for _ in range(count):
        b = torch.randn(shape.n, shape.k, device=dev, generator=g).to(FP8)
        bs = 0.5 + torch.rand(nb, kb, device=dev, generator=g)
        out.append((b, bs))
    return out


def activations(
    m: int, k: int, ws: Weights, count: int, dev: torch.device, g: torch.Generator
) -> list[BlockScaledProblem]:
    """``count`` problems with fresh activations, cycling through the weights ``ws``."""
    probs = []
    for i in range(count):
        b, bs = ws[i % len(ws)]
        a = torch.randn(m, k, device=dev, generator=g).to(FP8)
        a_s = column_major(0.5 + torch.rand(m, cdiv(k, BLOCK[1]), device=dev, generator=g))
        probs.append(BlockScaledProblem(a, a_s, b, bs, BLOCK, torch.bfloat16, {"bench": True, "set": i}))
    return probs


def n_calls(shape: Shape, m: int, l2: int, cfg: Config) -> int:
    """Input sets per timed call sequence: enough bytes to stream ``rotate_l2_multiple`` x L2."""
    if l2 <= 0:
        return 2
    per_call = shape.n * shape.k + m * shape.k + 2 * m * shape.n
    return max(2, min(cfg.max_sets, math.ceil(cfg.rotate_l2_multiple * l2 / per_call)))


def flops(m: int, shape: Shape) -> float:
    return 2.0 * m * shape.n * shape.k


def _cycler(run: Callable, probs: list) -> Callable[[], object]:
    it = itertools.cycle(probs)
    return lambda: run(next(it))


def _all(run: Callable, probs: list) -> None:
    for p in probs:
        run(p)


def _stat_fields(mode: str, st: Any, m: int, shape: Shape) -> dict[str, Any]:
    if st is None:
        return {f"{mode}_{k}": None for k in ("us", "spread", "rounds", "converged", "tflops")}
    return {
        f"{mode}_us": st.median_s * 1e6,
        f"{mode}_spread": st.spread,
        f"{mode}_p25_us": st.p25_s * 1e6,
        f"{mode}_p75_us": st.p75_s * 1e6,
        f"{mode}_min_us": st.min_s * 1e6,
        f"{mode}_rounds": st.rounds,
        f"{mode}_inner": st.inner,
        f"{mode}_converged": st.converged,
        f"{mode}_tflops": flops(m, shape) / st.median_s / 1e12,
        f"{mode}_round_us": [round(x * 1e6, 4) for x in st.per_round_s],
    }


def point(
    shape: Shape,
    m: int,
    bps: BenchPaths,
    ws: Weights,
    n_sets: int,
    clock: Clock,
    cfg: Config,
    g: torch.Generator,
) -> tuple[list[dict], str]:
    """Time every applicable path at one M. Returns CSV-ready rows and a progress line."""
    dev = ws[0][0].device
    m4 = round4(m)
    sets4 = activations(m4, shape.k, ws, n_sets, dev, g)
    sets = sets4 if m == m4 else [p.with_m(slice(0, m)) for p in sets4]
    todo = [bp for bp in bps.paths.values() if bp.applies(m)]  # the baseline first
    rows: dict[str, dict] = {}
    graph_fns: dict[str, tuple[Callable[[], object], int]] = {}
    eager_fns: dict[str, tuple[Callable[[], object], int]] = {}
    ref = None
    keep: list[Any] = []
    pool = torch.cuda.graph_pool_handle() if clock.cuda else None
    for bp in todo:
        probs = sets4 if bp.rows(m) != m else sets
        row: dict[str, Any] = {"path": bp.name, "m_kernel": bp.m_kernel(m), "n_sets": n_sets, "error": ""}
        rows[bp.name] = row
        run = bp.run
        assert run is not None
        try:
            out = run(probs[0])
            if clock.cuda and out.device.type != "cuda":
                raise RuntimeError(f"{bp.name} returned a {out.device} tensor on the GPU run")
            if ref is None:  # the baseline is first: the reference rows
                ref = out[:m].clone()
            o = out[:m]
            row["bitwise_equal_bypass"] = bool(torch.equal(o, ref))
            row["max_abs_diff_bypass"] = float((o.float() - ref.float()).abs().max().item())
            for p in probs[1:]:
                run(p)  # compiles/warms every set before capture
            eager_fns[bp.name] = (_cycler(run, probs), 1)
            if clock.cuda:
                gr = torch.cuda.CUDAGraph()
                with torch.cuda.graph(gr, pool=pool):
                    for p in probs:
                        run(p)
                keep.append(gr)
                graph_fns[bp.name] = (gr.replay, len(probs))
            else:  # no graphs on the CPU: the plumbing runs, the numbers are host time
                graph_fns[bp.name] = (functools.partial(_all, run, probs), len(probs))
        except Exception as e:  # recorded per path; the run goes on
            row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
            if bp.name == bps.baseline:
                break
    gstats = measure(graph_fns, clock, cfg)
    estats = measure(eager_fns, clock, cfg, drain=True, max_rounds=cfg.max_rounds_eager) if cfg.eager else {}
    del keep
    out_rows = []
    parts = []
    for name, row in rows.items():
        for mode, st in (("graph", gstats.get(name)), ("eager", estats.get(name))):
            row.update(_stat_fields(mode, st, m, shape))
        out_rows.append(row)
        gs = f"{row['graph_us']:.1f}" if row.get("graph_us") is not None else "ERR"
        es = f"/{row['eager_us']:.1f}" if row.get("eager_us") is not None else ""
        at = f"@{row['m_kernel']}" if bps.paths[name].rows(m) != m else ""
        parts.append(f"{bps.paths[name].label}{at} {gs}{es}")
    return out_rows, " ".join(parts)


def spin_up(bps: BenchPaths, dev: torch.device, g: torch.Generator, seconds: float) -> None:
    """Run the baseline's GEMMs for a moment so that clocks have ramped before the first timed point."""
    shape = Shape("spin", "-", "-", 8192, 8192, "-")
    p = activations(1024, shape.k, weights(shape, 1, dev, g), 1, dev, g)[0]
    run = bps.paths[bps.baseline].run
    assert run is not None
    t = time.perf_counter()
    while time.perf_counter() - t < seconds:
        for _ in range(20):
            run(p)
        torch.cuda.synchronize()
