"""The SM90 block-scaled GEMM model (:mod:`.sm90`) as one Triton kernel, for GPUs (and Triton's interpreter).

Same arithmetic, bit for bit: each program owns a BLOCK_M x BLOCK_N tile and walks K in 128-wide blocks of
four 32-wide wgmma K-slices, with [BLOCK_M, BLOCK_N, 32] register tensors for the products and their
exponents (:mod:`.wgmma` explains the model and why each step is exact; here every power of two is built
from its bit pattern and division avoided: Triton's fp32 ``/`` is not guaranteed correctly rounded);
after each K-block ``acc = fma(partial, fp32(sa * sb), acc)`` (CUTLASS, DeepGEMM) or
``acc = fma(fp32(partial * sa), sb, acc)`` (vLLM's Triton block GEMM; ``promotion="fma_sa_then_sb"``).
The kernel writes the fp32 accumulator; :func:`.sm90.sm90_blockwise_gemm` rounds it to the output dtype,
as for the torch model. (This module imports nothing from :mod:`.sm90`, which imports it lazily: no import
cycle.) K-blocks of 128, slices of 32 and weight blocks of 128 rows are written into the kernel.

``fma_mode``: ``"hw"`` uses ``tl.fma`` (``fma.rn.f32`` on a GPU: one rounding, like CUTLASS's FFMA).
Triton's CPU interpreter (``TRITON_INTERPRET=1``) evaluates ``tl.fma`` as numpy ``x * y + z``, two
roundings, so there ``"hw"`` is not the model; ``"emulated"`` computes the fma in float64 with round to odd
(as :func:`.sm90.fma32` does), which is exact on both, so the interpreter can check every other step.

Imported lazily by :func:`.sm90.sm90_blockwise_gemm` (CUDA tensors, or ``backend="triton"``), never at
import time of :mod:`.sm90`; ``tests/test_numerics.py`` checks it in the interpreter and, given a GPU,
compiled.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .wgmma import FRAC_BITS, canonical_nan

PROMOTIONS = ("fma", "fma_sa_then_sb")
"""The promotions this kernel implements: those of the kernels measured on an H100 (subject/kernels.py)."""


@triton.jit
def _decode(code):
    """e4m3 byte codes (int32) -> fp32 values (NaN as 0), int32 pseudo-exponents (-64 for 0), NaN flags."""
    mag = code & 0x7F
    field = mag >> 3
    mant = mag & 7
    normal = ((field + 120) << 23) | (mant << 20)  # exponent field - 7 + 127; 3 mantissa bits on top
    value = tl.where(field == 0, mant.to(tl.float32) * 0.001953125, normal.to(tl.float32, bitcast=True))
    isnan = mag == 0x7F
    value = tl.where(isnan, 0.0, value)
    value = tl.where(code >= 128, -value, value)
    exp = tl.where(mag == 0, -64, tl.maximum(field, 1) - 7)
    return value, exp, isnan


@triton.jit
def _fma_round_to_odd(x, y, z):
    """fp32 ``x * y + z`` with one rounding, from float64: exact product, TwoSum, round to odd, RNE."""
    p = x.to(tl.float64) * y.to(tl.float64)
    z64 = z.to(tl.float64)
    s = p + z64
    bb = s - p
    err = (p - (s - bb)) + (z64 - bb)
    bits = s.to(tl.int64, bitcast=True)
    finite = ((bits >> 52) & 0x7FF) != 0x7FF  # inf/NaN: err is NaN, nothing to adjust
    to_odd = (err != 0.0) & ((bits & 1) == 0) & finite
    toward = tl.where((err > 0.0) == (s > 0.0), 1, -1).to(tl.int64)
    bits = tl.where(to_odd, bits + toward, bits)
    return bits.to(tl.float64, bitcast=True).to(tl.float32)


@triton.jit
def _sm90_blockwise_kernel(
    a_ptr,
    b_ptr,
    sa_ptr,
    sb_ptr,
    acc_ptr,
    M,
    N,
    K,
    KB,
    stride_am,
    stride_bn,
    stride_sam,
    stride_sak,
    stride_sbn,
    stride_sbk,
    stride_om,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    FRAC: tl.constexpr,
    EMULATED_FMA: tl.constexpr,
    SA_THEN_SB: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rk = tl.arange(0, 32)
    row_ok = rm < M
    col_ok = rn < N
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for kb in range(0, KB):
        partial = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        nan = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.int1)
        for s in tl.static_range(4):
            k = kb * 128 + s * 32 + rk
            k_ok = k < K  # past K: zero codes, i.e. the zero padding of the last K-block
            a_code = tl.load(
                a_ptr + rm[:, None] * stride_am + k[None, :], mask=row_ok[:, None] & k_ok[None, :], other=0
            ).to(tl.int32)
            b_code = tl.load(
                b_ptr + rn[:, None] * stride_bn + k[None, :], mask=col_ok[:, None] & k_ok[None, :], other=0
            ).to(tl.int32)
            av, ae, an = _decode(a_code)
            bv, be, bn = _decode(b_code)
            a_nan = tl.max(an.to(tl.int32), axis=1) > 0
            b_nan = tl.max(bn.to(tl.int32), axis=1) > 0
            nan = nan | a_nan[:, None] | b_nan[None, :]
            # largest product exponent; any product with a zero operand is <= -56
            e_prod = tl.max(ae[:, None, :] + be[None, :, :], axis=2)
            c = partial
            c_biased = (c.to(tl.int32, bitcast=True) >> 23) & 0xFF
            e_al = tl.maximum(tl.maximum(e_prod + 127, c_biased), FRAC)  # biased alignment exponent
            scale = ((FRAC + 254 - e_al) << 23).to(tl.float32, bitcast=True)  # 2^(F - e_al)
            inv = ((e_al - FRAC) << 23).to(tl.float32, bitcast=True)  # 2^(e_al - F)
            terms = (av[:, None, :] * bv[None, :, :] * scale[:, :, None]).to(tl.int32)  # trunc toward 0
            total = tl.sum(terms, axis=2) + (c * scale).to(tl.int32)
            value = total.to(tl.float32) * inv
            value = tl.where(e_prod < -12, c, value)
            partial = (value.to(tl.int32, bitcast=True) & -(1 << (23 - FRAC))).to(tl.float32, bitcast=True)
        partial = tl.where(partial == 0.0, 0.0, partial)  # -0.0 -> +0.0
        partial = tl.where(nan, float("nan"), partial)
        sa = tl.load(sa_ptr + rm * stride_sam + kb * stride_sak, mask=row_ok, other=0.0)
        sb = tl.load(sb_ptr + (rn // 128) * stride_sbn + kb * stride_sbk, mask=col_ok, other=0.0)
        if SA_THEN_SB:  # fma(fp32(partial * sa), sb, acc): the scales one after the other
            x = partial * sa[:, None]
            y = sb[None, :] + tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        else:  # fma(partial, fp32(sa * sb), acc)
            x = partial
            y = sa[:, None] * sb[None, :]
        if EMULATED_FMA:  # noqa: SIM108 (a constexpr branch: only one side is compiled)
            acc = _fma_round_to_odd(x, y, acc)
        else:
            acc = tl.fma(x, y, acc)
    out = acc_ptr + rm[:, None] * stride_om + rn[None, :]
    tl.store(out, acc, mask=row_ok[:, None] & col_ok[None, :])


def sm90_accumulator_triton(
    a: torch.Tensor,
    b: torch.Tensor,
    a_scale: torch.Tensor,
    b_scale: torch.Tensor,
    *,
    promotion: str = "fma",
    fma_mode: str = "hw",
    block_m: int = 16,
    block_n: int = 16,
    num_warps: int = 4,
) -> torch.Tensor:
    """The fp32 accumulator [M, N] of :func:`.sm90.sm90_blockwise_gemm` (measured arithmetic) in one launch.

    :func:`.sm90.sm90_blockwise_gemm` (``backend="triton"``, or ``"auto"`` on CUDA) checks the arguments
    and rounds the result to the output dtype. ``fma_mode``: ``"hw"`` (``tl.fma``; exact on a GPU, not in
    the interpreter) or ``"emulated"`` (float64 round to odd, exact on both)."""
    if fma_mode not in ("hw", "emulated"):
        raise ValueError(f"fma_mode must be 'hw' or 'emulated', got {fma_mode!r}")
    if promotion not in PROMOTIONS:
        raise ValueError(f"the Triton model implements promotions {PROMOTIONS}, got {promotion!r}")
    if a.dtype != torch.float8_e4m3fn or b.dtype != torch.float8_e4m3fn:
        raise ValueError("the Triton model takes float8_e4m3fn operands")
    m, k = a.shape
    n = b.shape[0]
    acc = torch.empty((m, n), dtype=torch.float32, device=a.device)
    if m and n:
        av = a.contiguous().view(torch.uint8)
        bv = b.contiguous().view(torch.uint8)
        sa, sb = a_scale.float(), b_scale.float()
        grid = (triton.cdiv(m, block_m), triton.cdiv(n, block_n))
        _sm90_blockwise_kernel[grid](
            av, bv, sa, sb, acc, m, n, k, a_scale.shape[1],
            av.stride(0), bv.stride(0), sa.stride(0), sa.stride(1), sb.stride(0), sb.stride(1), acc.stride(0),
            BLOCK_M=block_m, BLOCK_N=block_n, FRAC=FRAC_BITS, EMULATED_FMA=fma_mode == "emulated",
            SA_THEN_SB=promotion == "fma_sa_then_sb",
            num_warps=num_warps,
        )  # fmt: skip
    return canonical_nan(acc)
