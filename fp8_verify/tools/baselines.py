"""Upstream's accuracy checks, re-created as baselines to compare with the suite on the mutants.

The suite's verdict is per element against a derived FP8 error bound. Upstream projects check FP8
GEMMs with one number per output, on a fixed grid of shapes:

* ``vllm_metric`` -- vLLM's ``tests/kernels/quantization/test_block_fp8.py``: A and B uniform in
  +/-448 cast to e4m3, scales ``rand * 1e-2``, reference = dequantize, fp32 matmul, rounded to the
  output dtype (``native_w8a8_block_matmul``); pass iff ``mean|out - ref| / mean|ref| < 1e-3``.
* ``calc_diff`` -- DeepGEMM's ``calc_diff``: ``1 - 2 sum(x y) / sum(x x + y y) < 1e-3`` between the
  output and the *unquantized* bf16 product of ``randn`` data, quantized per 1x128 / 128x128 as in
  DeepGEMM's tests.

Both run the same shape grid, upstream's matmul grid scaled down for a CPU (unaligned M and partial
N/K blocks kept; upstream's partial K, 3884, is not a multiple of 16 and goes to Triton, so 528),
plus upstream's one CUTLASS case (M=32, N=576, K=7168), through the path vLLM's linear layer calls on
Hopper in the installed release (:func:`production_path`: the first eager registry row that takes every
M, e.g. ``torch.ops.vllm.dynamic_padded_cutlass`` on 0.23, the direct op from 0.24). A baseline *catches* the
current subject (mutated or not) when any case fails its threshold or raises.

``python -m fp8_verify.baselines [--mutant ID | --all]`` prints the results as JSON.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from ..judge.metrics import THRESHOLD, calc_diff, vllm_rel_diff
from ..problem import FP8, BlockScaledProblem, cdiv, column_major, quantize
from ..subject.vllm import load

BLOCK = (128, 128)
OUT_DTYPE = torch.bfloat16
GRID_M = (1, 7, 8, 83, 512)
GRID_N = (128, 576, 1024)
GRID_K = (256, 528)  # 528: a partial last K-block (vLLM's CUTLASS route needs K % 16 == 0)
UPSTREAM_CUTLASS_CASE = (32, 576, 7168)  # test_w8a8_block_fp8_cutlass_matmul
CASES: tuple[tuple[int, int, int], ...] = (*itertools.product(GRID_M, GRID_N, GRID_K), UPSTREAM_CUTLASS_CASE)


@dataclass
class BaselineResult:
    """Whether a baseline flags the subject, and on which case first."""

    caught: bool
    cases_run: int
    first_failure: str | None = None
    value: float | None = None  # the metric on the first failing case (the worst if none failed)
    seconds: float = 0.0


def _vllm_case(m: int, n: int, k: int, seed: int) -> tuple[BlockScaledProblem, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    fmax = torch.finfo(FP8).max
    a = ((torch.rand(m, k, generator=g) - 0.5) * 2 * fmax).clamp(-fmax, fmax).to(FP8)
    b = ((torch.rand(n, k, generator=g) - 0.5) * 2 * fmax).clamp(-fmax, fmax).to(FP8)
    kt, nt = cdiv(k, BLOCK[1]), cdiv(n, BLOCK[0])
    a_s = torch.rand(m, kt, generator=g) * 1e-2
    b_s = torch.rand(nt, kt, generator=g) * 1e-2
    p = BlockScaledProblem(
        a, column_major(a_s), b, b_s.contiguous(), BLOCK, OUT_DTYPE, {"baseline": "vllm_metric", "seed": seed}
    )
    # native_w8a8_block_matmul: dequantize, fp32 matmul, round to the output dtype
    a_deq = a.float() * a_s.repeat_interleave(BLOCK[1], dim=1)[:, :k]
    b_deq = b.float() * b_s.repeat_interleave(BLOCK[0], dim=0)[:n].repeat_interleave(BLOCK[1], dim=1)[:, :k]
    ref = (a_deq @ b_deq.T).to(OUT_DTYPE)
    return p, ref


def _deepgemm_case(m: int, n: int, k: int, seed: int) -> tuple[BlockScaledProblem, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(m, k, generator=g).to(torch.bfloat16)
    y = torch.randn(n, k, generator=g).to(torch.bfloat16)
    p = quantize(x.float(), y.float(), BLOCK, OUT_DTYPE, origin={"baseline": "calc_diff", "seed": seed})
    ref = (x.float() @ y.float().T).to(torch.bfloat16)  # DeepGEMM: x @ y.t() in bf16
    return p, ref


def _run(
    make_case: Callable[[int, int, int, int], tuple[BlockScaledProblem, torch.Tensor]],
    metric: Callable[[torch.Tensor, torch.Tensor], float],
) -> BaselineResult:
    path = production_path()
    dev = load().device
    t0 = time.monotonic()
    worst = 0.0
    for i, (m, n, k) in enumerate(CASES):
        p, ref = make_case(m, n, k, i)
        p = p.to(dev)
        where = f"M={m} N={n} K={k}"
        try:
            out = path.run(p)
        except Exception as e:  # upstream's test would error: a catch
            return BaselineResult(
                True, i + 1, f"{where}: {type(e).__name__}: {e}"[:300], None, time.monotonic() - t0
            )
        if tuple(out.shape) != tuple(ref.shape):
            return BaselineResult(
                True, i + 1, f"{where}: shape {tuple(out.shape)}", None, time.monotonic() - t0
            )
        value = metric(out.cpu(), ref)
        if not value < THRESHOLD:  # NaN fails too
            return BaselineResult(True, i + 1, where, value, time.monotonic() - t0)
        worst = max(worst, value)
    return BaselineResult(False, len(CASES), None, worst, time.monotonic() - t0)


def production_path():
    """The eager path vLLM's linear layer takes on Hopper in the installed release: the row of the padding
    op it calls (``dynamic_padded_cutlass`` on 0.23, ``padded_cutlass`` on 0.22), else -- the kernel
    taking any M itself (0.24+) -- the eager SM90 row that takes any M."""
    from ..subject.registry import CUTLASS_SM90, default
    from ..subject.releases import MRule
    from .bench.paths import production_op

    eager = [g for g in default() if g.available and not g.compiled and g.kernel == CUTLASS_SM90]
    op = production_op()
    chosen = next((g for g in eager if op and g.spec.op == op), None)
    chosen = chosen or next((g for g in eager if g.m_rule is MRule.ANY), None)
    if chosen is None:
        raise RuntimeError("no eager SM90 path that takes any M is available")
    return chosen


BASELINES: dict[str, Callable[[], BaselineResult]] = {
    "vllm_metric": lambda: _run(_vllm_case, vllm_rel_diff),
    "calc_diff": lambda: _run(_deepgemm_case, calc_diff),
}


def run_all() -> dict[str, dict]:
    """Every baseline on the subject as it is now (mutated or not)."""
    return {name: asdict(fn()) for name, fn in BASELINES.items()}


def run_baselines(mutant_id: str | None) -> dict:
    """Every baseline with ``mutant_id`` planted (None: the unmutated subject); never raises."""
    from .mutants.catalogue import apply

    undo = apply(mutant_id) if mutant_id else None
    try:
        return run_all()
    except Exception as e:  # a baseline must never stop the mutants' runner
        return {"error": f"{type(e).__name__}: {e}"}
    finally:
        if undo:
            undo()


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json

    p = argparse.ArgumentParser(
        prog="python -m fp8_verify.tools.baselines", description=__doc__.splitlines()[0]
    )
    p.add_argument("--mutant", help="plant this mutant first (fp8-verify mutants --list)")
    p.add_argument(
        "--all", action="store_true", help="the unmutated subject, then every mutant in turn (one process)"
    )
    args = p.parse_args(argv)
    s = load()
    if not s.available:
        print(json.dumps({"error": s.error}))
        return 2
    if args.all:
        from .mutants.catalogue import CATALOGUE

        out = {"control": run_baselines(None)} | {i: run_baselines(i) for i in CATALOGUE}
        print(json.dumps({"vllm_version": s.vllm_version, "device": s.device_name(), "runs": out}, indent=2))
        return 0
    if args.mutant:
        from .mutants.catalogue import apply

        apply(args.mutant)
    print(json.dumps(run_all(), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
