"""Clocks, the interleaved timing loop and its statistics: per-round medians, their spread, and the
padding overheads as ratios paired round by round (drift between rounds cancels)."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .config import Config

RESOLVED = 0.01  # a difference counts when above both spreads and this (1%)


class Clock:
    """CUDA events on the GPU (read after one sync per round); ``perf_counter`` on the CPU."""

    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda

    def mark(self) -> Any:
        if self.cuda:
            import torch

            e = torch.cuda.Event(enable_timing=True)
            e.record()
            return e
        return time.perf_counter()

    def sync(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()

    def seconds(self, a: Any, b: Any) -> float:
        return a.elapsed_time(b) / 1e3 if self.cuda else b - a


@dataclass
class Stat:
    """Per-call time: median of the per-round medians, and their (p75 - p25) / median."""

    median_s: float
    spread: float
    p25_s: float
    p75_s: float
    min_s: float
    rounds: int
    inner: int
    converged: bool
    per_round_s: list[float] = field(default_factory=list)  # for paired ratios between paths


def spread(xs: list[float]) -> float:
    """Interquartile range over the median; infinite with fewer than two values."""
    if len(xs) < 2:
        return math.inf
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return (q[2] - q[0]) / statistics.median(xs)


def measure(
    fns: dict[str, tuple[Callable[[], object], int]],
    clock: Clock,
    cfg: Config,
    drain: bool = False,
    max_rounds: int | None = None,
) -> dict[str, Stat]:
    """Time each ``fn`` (one call does ``div`` GEMMs), interleaved round-robin per repetition, until
    every path's spread is under the target after ``min_rounds``, or a cap.

    ``drain`` (eager timing): wait for the GPU before each sample. Otherwise a GPU-bound path leaves
    queued work behind, and the next path's host overhead hides under it."""
    names = list(fns)
    if not names:
        return {}
    for _ in range(cfg.warmup):
        for n in names:
            fns[n][0]()
    clock.sync()
    inner: dict[str, int] = {}
    for n in names:
        a = clock.mark()
        fns[n][0]()
        b = clock.mark()
        clock.sync()
        inner[n] = max(1, min(2000, math.ceil(cfg.sample_s / max(clock.seconds(a, b), 1e-7))))
    rounds: dict[str, list[float]] = {n: [] for n in names}
    t0 = time.perf_counter()
    for r in range(max_rounds or cfg.max_rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        marks: dict[str, list[tuple[Any, Any]]] = {n: [] for n in names}
        for _ in range(cfg.samples_per_round):
            for n in order:
                fn = fns[n][0]
                if drain:
                    clock.sync()
                a = clock.mark()
                for _ in range(inner[n]):
                    fn()
                marks[n].append((a, clock.mark()))
        clock.sync()
        for n in names:
            div = inner[n] * fns[n][1]
            rounds[n].append(statistics.median(clock.seconds(a, b) / div for a, b in marks[n]))
        if r + 1 >= cfg.min_rounds:
            converged = all(spread(rounds[n]) < cfg.target_spread for n in names)
            if converged or time.perf_counter() - t0 > cfg.max_point_s:
                break
    out = {}
    for n in names:
        xs = rounds[n]
        q = statistics.quantiles(xs, n=4, method="inclusive") if len(xs) > 1 else [xs[0]] * 3
        out[n] = Stat(
            statistics.median(xs),
            spread(xs) if len(xs) > 1 else math.nan,
            q[0],
            q[2],
            min(xs),
            len(xs),
            inner[n],
            spread(xs) < cfg.target_spread,
            list(xs),
        )
    return out


def paired(a: dict, b: dict, mode: str) -> list[float]:
    """Round-by-round ratios of two rows timed together; the ratio of medians otherwise."""
    ra, rb = a.get(f"{mode}_round_us"), b.get(f"{mode}_round_us")
    if ra and rb and len(ra) == len(rb):
        return [x / y for x, y in zip(ra, rb, strict=True)]
    return [a[f"{mode}_us"] / b[f"{mode}_us"]]


def overheads(
    rows: list[dict], aligned: list[tuple[str, str]], unaligned: list[tuple[str, str]]
) -> list[dict]:
    """Padding overhead per (shape, M): ``t_a / t_b - 1`` for the ``(a, b)`` pairs of M's alignment
    class (:meth:`.paths.BenchPaths.overhead_pairs`: PR #43706's comparisons and the references
    bounding them).

    Paths were timed in the same rounds, so the ratio is taken round by round (paired): clock and
    power drift between rounds cancels. ``resolved``: the paired ratios' interquartile range
    excludes 1 and the median differs from 1 by more than ``RESOLVED``.
    """
    by: dict[tuple[str, int], dict[str, dict]] = {}
    for r in rows:
        by.setdefault((r["shape"], r["m"]), {})[r["path"]] = r
    out = []
    for (sid, m), d in by.items():
        for a, b in aligned if m % 4 == 0 else unaligned:
            if a not in d or b not in d:
                continue
            rec: dict[str, Any] = {"shape": sid, "m": m, "m_mod4": m % 4, "metric": f"{a}/{b}-1"}
            for mode in ("graph", "eager"):
                if not d[a].get(f"{mode}_us") or not d[b].get(f"{mode}_us"):
                    rec[mode] = None
                    continue
                xs = paired(d[a], d[b], mode)
                med = statistics.median(xs)
                q = statistics.quantiles(xs, n=4, method="inclusive") if len(xs) > 1 else [med] * 3
                rec[mode] = med - 1
                rec[f"{mode}_iqr"] = [q[0] - 1, q[2] - 1]
                rec[f"{mode}_resolved"] = (q[0] > 1 or q[2] < 1) and abs(med - 1) > RESOLVED
            out.append(rec)
    return out
