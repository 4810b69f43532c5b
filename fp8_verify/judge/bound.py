r"""The FP8 error model: a per-element bound ``|out[i,j] - ref[i,j]| <= bound[i,j]``.

Derivation
----------
Write ``a, b`` for the e4m3 values, ``s_a[i, kb]``, ``s_b[jb, kb]`` for the fp32 scales, and
``S[i,j] = sum_k |a[i,k] s_a| |b[j,k] s_b|`` (the inner product of absolute values, Higham's
``|x|^T |y|``). For one output element the SM90 block-scaled CUTLASS kernel computes

1. **Products.** ``a * b`` of two e4m3 values (4-bit significands, exponents >= -9) is exact in the
   tensor core's accumulator: no error. (FP8 formats: Micikevicius et al., "FP8 Formats for Deep
   Learning", 2022, table 1.)
2. **Accumulation inside a K-block on tensor cores.** Each ``wgmma.mma_async`` with e4m3 operands takes
   ``mma_k = 32`` along K (PTX ISA, "Asynchronous Warpgroup Level Matrix Multiply-Accumulate", shape
   m64nNk32). The kernel (``KernelTmaWarpSpecializedCooperativeFP8BlockScaled*``) zeroes a temporary
   accumulator per K-block of ``bk = 128`` and issues ``bk / mma_k = 4`` of them into it. Hopper's FP8
   tensor cores keep only about 14 bits in that accumulation and truncate (DeepSeek-V3 Technical
   Report, arXiv:2412.19437, sec. 3.3.2, measured on H800; which is why CUTLASS promotes to fp32 every
   128). Two effects, with ``u_tc = 2**-13``:

   a. *the running sum*: each of the ``bk/mma_k`` accumulate steps, plus the sum inside one
      instruction, truncates relative to the running absolute sum: at most ``c_tc * u_tc * sum |a b|``
      over the block, ``c_tc = bk / mma_k + 1`` (Higham, *Accuracy and Stability of Numerical
      Algorithms*, 2nd ed., sec. 3.1, the ``gamma_n`` argument for a chain of ``c_tc`` operations);
   b. *alignment*: inside one instruction the products are aligned to the largest one and truncated,
      so each of the ``mma_k`` products can lose up to one unit of ``u_tc`` times the largest product
      of its group: at most ``mma_k * u_tc * max_{k in group} |a b|`` per group. Summed over groups
      and bounded by ``max |a| * max |b|`` per group, this is ``mma_k * u_tc * T`` with
      ``T[i,j] = sum_groups max_k |A[i,k]| max_k |B[j,k]|`` (dequantized; one small matmul).

   Term (b) matters only when one group mixes products of very different magnitudes (random e4m3
   codes across all exponents, wide per-block scales): an H100 calibration run with term (a) alone
   saw up to 1.77x the bound there, and never on quantized data (docs/calibration.md).
3. **Promotion across K-blocks in fp32.** ``acc += partial * (s_a * s_b)``: two roundings on each block's
   term and one per addition along ``kb = ceil(K/bk)`` blocks; with ``u32 = 2**-24`` this is at most
   ``gamma_{kb+2} * S`` (Higham eq. 3.5). fp32 underflow (tiny scales) adds at most half the smallest
   subnormal, ``2**-150``, per operation, magnified by ``|partial| <= sum |a b|``:
   ``eta32 = 2**-150 * (sum_k |a b| + 2 kb)`` in absolute terms.
4. **Rounding to the output dtype** (round to nearest): ``u_out |y| + eta_out`` with ``u_out`` = 2**-8
   (bf16) or 2**-11 (fp16) and ``eta_out`` = half the smallest subnormal (2**-134 bf16, 2**-25 fp16).

With ``y = ref + e``, ``|e| <= (c_tc u_tc + gamma_{kb+2}) S + mma_k u_tc T + eta32``::

    |out - ref| <= u_out |ref| + (1 + u_out) * ((c_tc u_tc + gamma_{kb+2}) S + mma_k u_tc T + eta32)
                   + eta_out

This is a worst-case bound: for random-sign data the observed error is a small fraction of it, and
``docs/calibration.md`` records the observed ``max |err| / bound`` on Hopper. It is per element and
scales with ``S``, so one wrong element, row or block stands out even when a mean-relative metric
(vLLM's ``mean|out-ref| / mean|ref| < 1e-3``) averages it away; see ``tests/test_oracle.py``.

Overflow: where ``|ref|`` rounds past the output dtype's largest finite value the correct output is an
infinity of the same sign; :mod:`fp8_verify.verdict` checks that separately.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..problem import BlockScaledProblem
from ..problem.budget import ORACLE_CHUNK_BYTES
from .reference import expand_scales

U32 = 2.0**-24
ETA32 = 2.0**-150
U_OUT = {torch.bfloat16: 2.0**-8, torch.float16: 2.0**-11, torch.float32: U32}
ETA_OUT = {torch.bfloat16: 2.0**-134, torch.float16: 2.0**-25, torch.float32: ETA32}


def gamma(n: int, u: float) -> float:
    """Higham's ``gamma_n = n u / (1 - n u)``."""
    return n * u / (1.0 - n * u)


@dataclass(frozen=True)
class ErrorModel:
    """Constants of the bound (see the module docstring). ``scale`` multiplies the whole bound: 1.0 is the
    derived bound; calibration reports the smallest scale that still passes everything observed."""

    u_tc: float = 2.0**-13
    mma_k: int = 32
    scale: float = 1.0

    def c_tc(self, bk: int) -> int:
        return -(-bk // self.mma_k) + 1

    def relative(self, p: BlockScaledProblem) -> float:
        """Coefficient of ``S`` in the bound before output rounding."""
        kb = -(-p.k // p.block[1])
        return self.c_tc(p.block[1]) * self.u_tc + gamma(kb + 2, U32)


DEFAULT_MODEL = ErrorModel()


@dataclass(frozen=True)
class Oracle:
    """The reference result of a problem and its error bound, both float64 [M, N]."""

    ref: torch.Tensor
    bound: torch.Tensor
    abs_sum: torch.Tensor  # S, the scale of the accumulation error
    align_sum: torch.Tensor  # T, the scale of the alignment error inside one MMA instruction


def group_max(x: torch.Tensor, group: int) -> torch.Tensor:
    """``max |x|`` over each run of ``group`` columns ([rows, ceil(cols / group)])."""
    rows, cols = x.shape
    pad = -cols % group
    return torch.nn.functional.pad(x.abs(), (0, pad)).view(rows, -1, group).amax(dim=-1)


def oracle(
    p: BlockScaledProblem, model: ErrorModel = DEFAULT_MODEL, chunk_bytes: int = ORACLE_CHUNK_BYTES
) -> Oracle:
    """Reference and per-element bound for ``p`` (float64, on ``p``'s device), computed over chunks of
    whole weight blocks of N (the same numbers as in one piece: every output column depends on its own
    weight row only)."""
    bn, bk = p.block
    a = p.a.double().mul_(expand_scales(p.a_scale.double(), p.m, p.k, (1, bk)))
    a_abs, a_max, a_raw = a.abs(), group_max(a, model.mma_k), p.a.double().abs()
    rows = max(bn, chunk_bytes // (8 * max(1, p.k)) // bn * bn)
    shape = (p.m, p.n)
    ref, s, t, raw = (torch.empty(shape, dtype=torch.float64, device=p.device) for _ in range(4))
    for n0 in range(0, p.n, rows):
        n1 = min(p.n, n0 + rows)
        scales = p.b_scale[n0 // bn : -(-n1 // bn)].double()
        b = p.b[n0:n1].double().mul_(expand_scales(scales, n1 - n0, p.k, (bn, bk)))
        ref[:, n0:n1] = a @ b.T
        s[:, n0:n1] = a_abs @ b.abs().T
        t[:, n0:n1] = a_max @ group_max(b, model.mma_k).T
        raw[:, n0:n1] = a_raw @ p.b[n0:n1].double().abs().T
        del b
    kb = -(-p.k // bk)
    eta32 = ETA32 * (raw + 2 * kb)
    u_out = U_OUT[p.out_dtype]
    inner = model.relative(p) * s + model.mma_k * model.u_tc * t + eta32
    bound = u_out * ref.abs() + (1 + u_out) * inner + ETA_OUT[p.out_dtype]
    return Oracle(ref, bound * model.scale, s, t)
