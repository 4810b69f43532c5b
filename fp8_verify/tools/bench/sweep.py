"""The timed run: check that the real kernel is here, find the paths, time every (shape, M) point
(:mod:`.point`), write the outputs after each shape (a cut run keeps what it measured), then the plots."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from typing import Any

import torch

from fp8_verify.strategies.shapes import Shape

from ...errors import UsageError
from ...subject import compiled, cpu_kernel
from ...subject.registry import CUTLASS_SM90
from ...subject.vllm import load
from .config import Config
from .environment import environment, l2_bytes, nvsmi
from .measure import Clock, overheads
from .outputs import log, write_outputs
from .paths import BenchPaths, bench_paths
from .plot import write_plots
from .point import n_calls, point, spin_up, weights
from .profile import launch_profile
from .shapes import pool


def _check_subject(cfg: Config) -> None:
    """Refuse to time anything but the real SM90 kernel, unless this is a dry run."""
    s = load()
    if not s.available:
        raise UsageError(f"bench: {s.error}")
    real = s.kernel == "real"
    if not real and not cfg.dry_run:
        raise UsageError(
            f"bench needs the real SM90 CUTLASS kernel (a Hopper GPU with vLLM's _C "
            f"ops); here: {s.kernel_reason}. Use --dry-run to smoke-test on the CPU "
            f"double"
        )
    if real and (cpu_kernel.installed() or s.device.type != "cuda"):
        raise UsageError("bench: the CPU double is installed on a GPU run; refusing to time it")


def _new_run(cfg: Config, bps: BenchPaths, label: str, env: dict[str, Any]) -> dict[str, Any]:
    """The run's record (the JSON's ``runs[label]``): how it was measured, then its rows as they come."""
    return {
        "label": label,
        "env": env,
        "config": asdict(cfg),
        "production_path": bps.production,
        "baseline": bps.baseline,
        "paths": {
            n: {"available": b.available, "what": b.what, "origin": b.origin, "reason": b.reason}
            for n, b in bps.paths.items()
        },
        "rows": [],
        "overhead": [],
        "launches": {},
        "truncated": None,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _annotate(rows: list[dict], run: dict, shape: Shape, m: int) -> None:
    """What the rows of one point share: run, shape, M, and the fraction of peak."""
    env = run["env"]
    for r in rows:
        r.update(
            label=run["label"],
            vllm=env["vllm"],
            device=env["device_name"],
            shape=shape.id,
            model=shape.model,
            layer=shape.layer,
            n=shape.n,
            k=shape.k,
            m=m,
            m_mod4=m % 4,
        )
        for mode in ("graph", "eager"):
            tf = r.get(f"{mode}_tflops")
            r[f"{mode}_peak_frac"] = tf / env["peak_tflops"] if (tf and env["peak_tflops"]) else None


def _overheads(run: dict, bps: BenchPaths) -> None:
    """Recompute the padding overheads from all rows so far (written after every shape)."""
    run["overhead"] = overheads(run["rows"], bps.overhead_pairs(True), bps.overhead_pairs(False))


def _time_points(
    run: dict, cfg: Config, bps: BenchPaths, shapes: list[Shape], g: torch.Generator, t0: float
) -> None:
    """Every (shape, M) point, the outputs rewritten after each shape; stops ``--budget-s`` after
    ``t0``."""
    dev = load().device
    clock = Clock(dev.type == "cuda")
    if clock.cuda and not cfg.dry_run:
        spin_up(bps, dev, g, 1.5)
    run["launches"] = launch_profile(bps, shapes[0], (8, 7) if cfg.dry_run else (128, 127), dev, g)
    if clock.cuda:
        missing = [
            n
            for n, d in run["launches"].items()
            if bps.paths[n].kernel == CUTLASS_SM90
            and any(not v.get("cutlass_gemm", False) for v in d.values())
        ]
        if missing:
            log(f"  WARNING: no CUTLASS kernel seen in the profile of {', '.join(missing)}")
    l2 = l2_bytes(dev)
    npoints = len(shapes) * len(cfg.ms)
    done = 0
    for si, shape in enumerate(shapes):
        w_sets = n_calls(shape, 1, l2, cfg)
        ws = weights(shape, w_sets, dev, g)
        note = "; " + shape.note if shape.note else ""
        log(f"[{si + 1}/{len(shapes)}] {shape.label()} ({shape.model}; {w_sets} weight sets{note})")
        for m in cfg.ms:
            if cfg.budget_s is not None and time.perf_counter() - t0 > cfg.budget_s:
                run["truncated"] = (
                    f"--budget-s {cfg.budget_s:g} reached after "
                    f"{done}/{npoints} points; stopped before {shape.id} M={m}"
                )
                break
            tp = time.perf_counter()
            try:
                rows, line = point(shape, m, bps, ws, n_calls(shape, m, l2, cfg), clock, cfg, g)
            except torch.OutOfMemoryError as e:
                rows, line = [], f"out of memory: {str(e).splitlines()[0][:200]}"
                torch.cuda.empty_cache()
            _annotate(rows, run, shape, m)
            run["rows"].extend(rows)
            done += 1
            log(
                f"  M={m:<5} us graph/eager: {line}  ({time.perf_counter() - tp:.1f}s, "
                f"{time.perf_counter() - t0:.0f}s)"
            )
        del ws
        if clock.cuda:
            torch.cuda.empty_cache()
        _overheads(run, bps)
        run["wall_s"] = time.perf_counter() - t0
        write_outputs(run, cfg)
        if run["truncated"]:
            break


def bench(cfg: Config) -> int:
    """Time every path on every (shape, M) of ``cfg``: exit status 0, or 130 when interrupted."""
    # On a machine without CUDA, importing vLLM logs a torch cpp_extension warning: keep the
    # "no Hopper GPU" answer to one line.
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    _check_subject(cfg)
    compiled.raise_recompile_limit()  # one compiled callable serves every shape
    s = load()
    bps = bench_paths(cfg)
    shapes = [x for x in pool(cfg.dry_run) if x.id in cfg.shapes]
    label = cfg.label or s.vllm_version or "unknown"
    g = torch.Generator(device=s.device).manual_seed(0)
    run = _new_run(cfg, bps, label, environment(bps))
    env = run["env"]
    timed = [n for n, b in bps.paths.items() if b.available]
    log(
        f"fp8-verify bench [{label}]: vLLM {s.vllm_version} on {env['device']}, kernel "
        f"{s.kernel}; peak {env['peak_tflops']} TFLOP/s; production path {bps.production}"
    )
    log(f"  timing {', '.join(timed)}; {len(shapes)} shapes x {len(cfg.ms)} M; out {cfg.out}")
    for n, b in bps.paths.items():
        if not b.available:
            log(f"  not timed: {n}: {b.reason}")
    base = bps.paths[bps.baseline]
    if not base.available:
        raise UsageError(f"bench: the {base.name} path is not available: {base.reason}")
    t0 = time.perf_counter()
    try:
        _time_points(run, cfg, bps, shapes, g, t0)
    except KeyboardInterrupt:
        run["truncated"] = "interrupted (Ctrl-C)"
    _overheads(run, bps)
    run["wall_s"] = time.perf_counter() - t0
    run["compile_count"] = compiled.compile_count()
    run["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    if s.device.type == "cuda":
        env["nvidia_smi_end"] = nvsmi()
    files = write_outputs(run, cfg)
    if cfg.plot:
        files += write_plots(run, cfg)
    log(
        f"wrote {', '.join(str(f) for f in files)}"
        + (f" (TRUNCATED: {run['truncated']})" if run["truncated"] else "")
    )
    return 130 if run["truncated"] == "interrupted (Ctrl-C)" else 0
