"""An emulation of vLLM's SM90 FP8 block-scaled GEMM (CUTLASS, 1x128 activation / 128x128 weight scales).

What it computes, per output element (i, j), for each 128-wide K-block ``kb`` in order:

1. ``partial`` = four chained wgmma K-slices of 32 (:mod:`.wgmma`), starting from a zero accumulator;
   the last K-block is zero-padded past K (zero products do not move ``e_max``, so padding is neutral);
2. ``scale = fp32(a_scale[i, kb] * b_scale[j // 128, kb])`` (one rounding);
3. promotion: ``acc = fma(partial, scale, acc)``, one fp32 rounding (CUDA-core FFMA), ``acc`` from 0;

then ``out = RNE(acc)`` to bf16 or fp16. The project measured this order bit-identical to the real kernel
on an H100 (vLLM 0.23.0); ``docs/numerics.md`` shows how rarely the alternatives differ in bf16 outputs.

Sources. Why the kernel promotes every 128 K: DeepSeek-V3 technical report (arXiv:2412.19437) sec. 3.3.2
-- the tensor cores keep about 14 bits, so partial sums move to fp32 CUDA-core registers every 128
elements. CUTLASS's ``GmmaFP8AccumulationWithScale`` (``cutlass/gemm/collective/fp8_accumulation.hpp``; a
copy adapted from soundOfDestiny/cutlass@a4208aa was read) promotes with ``accum(i) += accum_temp(i) *
scale(i)``, commented "(FFMA)": nvcc contracts it to one fused multiply-add by default (``-fmad=true``).
The exact source lines of vLLM's build are being cited separately.

Each step is a small named function so variants can be built for experiments -- other promotion orders
(:data:`PROMOTIONS`), partials computed exactly (``partial="exact"``) or with another truncation width
(``frac_bits``) -- to show which of them do *not* match the hardware.

``fma32`` is exact on every device: fp32 x fp32 is exact in float64, the sum with the addend is rounded
to odd in float64 (TwoSum gives the error; an inexact even result is moved one ulp toward the exact
value), and rounding to odd with 53 >= 24 + 2 bits followed by one round-to-nearest-even to fp32 is the
correctly rounded result (Boldo & Melquiond, "Emulation of FMA and correctly rounded sums: proved
algorithms using rounding to odd", IEEE TC 57(4), 2008). ``tests/test_numerics.py`` checks it against
``fractions.Fraction``.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable

import torch

from .wgmma import (
    FRAC_BITS,
    K_SLICE,
    E4M3Operand,
    Scratch,
    canonical_nan,
    default_chunk_rows,
    prepare_e4m3,
    wgmma_tile,
)

BLOCK_K = 128
"""K per scale block, and the promotion interval."""
BLOCK_N = 128
"""N per weight-scale block."""
SLICES_PER_BLOCK = BLOCK_K // K_SLICE

Promotion = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""``(partial, a_scale, b_scale, acc) -> acc``, all fp32 and broadcastable to [m, n]."""


# -- exact fp32 arithmetic --------------------------------------------------------------------------


def fma32(x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """``x * y + z`` rounded once to fp32 (round to nearest even), like CUDA's ``fmaf``/``FFMA``.

    torch has no fused multiply-add whose single rounding is guaranteed on every device, so: the product
    of two fp32 is exact in float64; ``s = p + z`` and its exact error (TwoSum, Knuth) are computed in
    float64; if ``s`` is inexact and its last bit even it moves one ulp toward the exact value (round to
    odd); then one RNE to fp32. Subnormal fp32 inputs and results are honoured (no flush to zero)."""
    x, y, z = torch.broadcast_tensors(x.float(), y.float(), z.float())
    p = x.double() * y.double()  # exact: 48 significant bits, exponent within float64's normal range
    z64 = z.double()
    s = p + z64
    bb = s - p
    err = (p - (s - bb)) + (z64 - bb)  # TwoSum: s + err == p + z exactly (no overflow possible here)
    bits = s.view(torch.int64)
    to_odd = (err != 0) & ((bits & 1) == 0) & torch.isfinite(s)
    toward = torch.where((err > 0) == (s > 0), 1, -1)  # same sign: the exact value is further from 0
    bits = torch.where(to_odd, bits + toward, bits)
    return canonical_nan(bits.view(torch.float64).to(torch.float32))


def mul32(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """fp32 product, one rounding (IEEE multiplication, which torch does on every device)."""
    return canonical_nan(x.float() * y.float())


def add32(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """fp32 sum, one rounding."""
    return canonical_nan(x.float() + y.float())


# -- the kernel's steps ------------------------------------------------------------------------------


def block_scale(a_scale: torch.Tensor, b_scale: torch.Tensor) -> torch.Tensor:
    """Step 2: the combined scale of a (row, weight block) pair for one K-block, ``fp32(sa * sb)``."""
    return mul32(a_scale, b_scale)


def promote_fma(partial: torch.Tensor, sa: torch.Tensor, sb: torch.Tensor, acc: torch.Tensor) -> torch.Tensor:
    """Step 3 as measured: ``acc = fma(partial, fp32(sa * sb), acc)``."""
    return fma32(partial, block_scale(sa, sb), acc)


def promote_mul_add(
    partial: torch.Tensor, sa: torch.Tensor, sb: torch.Tensor, acc: torch.Tensor
) -> torch.Tensor:
    """Variant: ``acc + fp32(partial * fp32(sa * sb))``, two roundings instead of a fused one."""
    return add32(acc, mul32(partial, block_scale(sa, sb)))


def promote_fma_sa_then_sb(
    partial: torch.Tensor, sa: torch.Tensor, sb: torch.Tensor, acc: torch.Tensor
) -> torch.Tensor:
    """Variant: ``fma(fp32(partial * sa), sb, acc)``, the scales applied one after the other."""
    return fma32(mul32(partial, sa), sb, acc)


def promote_mul_mul_add(
    partial: torch.Tensor, sa: torch.Tensor, sb: torch.Tensor, acc: torch.Tensor
) -> torch.Tensor:
    """Variant: ``acc + fp32(fp32(partial * sa) * sb)``, three roundings."""
    return add32(acc, mul32(mul32(partial, sa), sb))


PROMOTIONS: dict[str, Promotion] = {
    "fma": promote_fma,
    "mul_add": promote_mul_add,
    "fma_sa_then_sb": promote_fma_sa_then_sb,
    "mul_mul_add": promote_mul_mul_add,
}
"""Named promotion orders: ``"fma"`` measured on the H100 for CUTLASS and DeepGEMM, ``"fma_sa_then_sb"``
for vLLM's Triton block GEMM; the others are for experiments."""

MEASURED_PROMOTIONS = ("fma", "fma_sa_then_sb")
"""Promotions some kernel was measured to use (the Triton model implements these)."""


def kblock_nan(a: E4M3Operand, b: E4M3Operand, kb: int) -> torch.Tensor:
    """Where a NaN operand reaches the K-block's partial: bool [m, n] (a NaN row of A or column of B)."""
    return a.nan_kblock[:, kb, None] | b.nan_kblock[None, :, kb]


def kblock_partial_wgmma(
    a: E4M3Operand,
    b: E4M3Operand,
    kb: int,
    frac_bits: int = FRAC_BITS,
    scratch: Scratch | None = None,
) -> torch.Tensor:
    """Step 1: the K-block's partial sum as the tensor cores form it: four chained wgmma K-slices from 0.

    ``a`` holds this chunk's rows, ``b`` all of N, both zero-padded to whole K-blocks. NaN is applied once
    at the end (a NaN slice makes every later slice NaN, so that is the same), ``-0.0`` becomes ``+0.0``.
    """
    partial = torch.zeros((a.n_rows, b.n_rows), dtype=torch.float32, device=a.val_t.device)
    for s in range(kb * SLICES_PER_BLOCK, (kb + 1) * SLICES_PER_BLOCK):
        av, ae, _ = a.kslice(s)
        bv, be, _ = b.kslice(s)
        partial = wgmma_tile(av, ae, bv, be, partial, frac_bits, scratch)
    return canonical_nan(partial + 0.0, kblock_nan(a, b, kb))


def kblock_partial_exact(a: E4M3Operand, b: E4M3Operand, kb: int) -> torch.Tensor:
    """Variant of step 1: the K-block's exact dot product rounded once to fp32 (no tensor-core truncation).

    Exact in float64 whatever the summation order: 128 products, each a multiple of 2^-18 below 2^18,
    sum to a multiple of 2^-18 below 2^25 (43 bits)."""
    k0, k1 = kb * BLOCK_K, (kb + 1) * BLOCK_K
    d = a.val_t[k0:k1].double().T @ b.val_t[k0:k1].double()
    return canonical_nan(d.to(torch.float32) + 0.0, kblock_nan(a, b, kb))


def round_output(acc: torch.Tensor, out_dtype: torch.dtype) -> torch.Tensor:
    """Final step: RNE of the fp32 accumulator to the output dtype (``cvt.rn``); fp32 returns ``acc``.

    NaN becomes the canonical 0x7FFF of bf16/fp16 (what ``cvt`` writes; torch's CPU conversion would
    write 0x7FC0 for bf16)."""
    if out_dtype == torch.float32:
        return acc
    if out_dtype not in (torch.bfloat16, torch.float16):
        raise ValueError(
            f"out_dtype must be bfloat16, float16 (or float32 for the accumulator), got {out_dtype}"
        )
    out = acc.to(out_dtype)
    nan = torch.tensor(0x7FFF, dtype=torch.int16, device=acc.device).view(out_dtype)
    return torch.where(torch.isnan(out), nan, out)


# -- the GEMM ------------------------------------------------------------------------------------------


def _pad_k(x: torch.Tensor, kp: int) -> torch.Tensor:
    """Zero-pad the K dimension to ``kp`` (whole 128-blocks): the kernel's TMA fills past K with zeros."""
    x = x.view(torch.uint8) if x.dtype == torch.float8_e4m3fn else x
    pad = kp - x.shape[1]
    out = torch.nn.functional.pad(x, (0, pad)) if pad else x
    return out.view(torch.float8_e4m3fn) if out.dtype == torch.uint8 else out


def _check(
    a: torch.Tensor, b: torch.Tensor, a_scale: torch.Tensor, b_scale: torch.Tensor
) -> tuple[int, int, int]:
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"a [M, K] and b [N, K] expected, got {tuple(a.shape)} and {tuple(b.shape)}")
    m, k = a.shape
    n = b.shape[0]
    kb, nb = -(-k // BLOCK_K), -(-n // BLOCK_N)
    if tuple(a_scale.shape) != (m, kb):
        raise ValueError(f"a_scale must be [M, ceil(K/128)] = [{m}, {kb}], got {tuple(a_scale.shape)}")
    if tuple(b_scale.shape) != (nb, kb):
        raise ValueError(
            f"b_scale must be [ceil(N/128), ceil(K/128)] = [{nb}, {kb}], got {tuple(b_scale.shape)}"
        )
    return m, n, k


def sm90_blockwise_gemm(
    a: torch.Tensor,
    b: torch.Tensor,
    a_scale: torch.Tensor,
    b_scale: torch.Tensor,
    out_dtype: torch.dtype = torch.bfloat16,
    *,
    promotion: str | Promotion = "fma",
    partial: str = "wgmma",
    frac_bits: int = FRAC_BITS,
    chunk_rows: int | None = None,
    backend: str = "auto",
    threads: int | None = 1,
) -> torch.Tensor:
    """The SM90 block-scaled FP8 GEMM, bit for bit: ``out[i, j] = sum_k a[i, k] b[j, k] sa sb``.

    a: e4m3 [M, K] row-major; b: e4m3 [N, K] (the weight, K-major); a_scale: fp32 [M, ceil(K/128)];
    b_scale: fp32 [ceil(N/128), ceil(K/128)]; out_dtype: bf16 or fp16 (fp32 returns the accumulator).

    Variants for experiments: ``promotion`` (a key of :data:`PROMOTIONS` or a callable), ``partial``
    (``"wgmma"`` as the tensor cores do, ``"exact"`` for exact fp32 partials), ``frac_bits`` (the wgmma's
    truncation width). ``chunk_rows`` bounds the [rows, N, 32] intermediates (default: ~2 MiB on CPU,
    256 MiB elsewhere). ``backend``: ``"torch"``, ``"triton"`` (:mod:`.triton_sm90`; on CPU tensors only
    under ``TRITON_INTERPRET=1``), or ``"auto"`` (Triton for CUDA tensors with the measured arithmetic,
    falling back to torch with a warning if it fails). ``threads``: torch's intra-op threads while the CPU
    model runs (restored afterwards; process-wide while it runs). 1 by default: the model's ops are small
    and, measured on a 2-core machine shared with other jobs, two OpenMP threads made it 7-15x *slower*
    (docs/numerics.md); ``None`` keeps torch's setting.
    """
    _check(a, b, a_scale, b_scale)
    measured = promotion in MEASURED_PROMOTIONS and partial == "wgmma" and frac_bits == FRAC_BITS
    if backend not in ("auto", "torch", "triton"):
        raise ValueError(f"backend must be auto, torch or triton, got {backend!r}")
    if backend == "triton" or (backend == "auto" and a.is_cuda and measured):
        if not measured:
            raise ValueError("the Triton backend implements only the measured arithmetic")
        try:
            from . import triton_sm90  # lazy: Triton is imported only when asked for or for CUDA tensors

            acc = triton_sm90.sm90_accumulator_triton(a, b, a_scale, b_scale, promotion=promotion)
            return round_output(acc, out_dtype)
        except Exception as e:
            if backend == "triton":
                raise
            warnings.warn(f"Triton SM90 model unavailable ({e!r}); using the torch model", stacklevel=2)
    promote = PROMOTIONS[promotion] if isinstance(promotion, str) else promotion
    if partial not in ("wgmma", "exact"):
        raise ValueError(f"partial must be 'wgmma' or 'exact', got {partial!r}")
    with _threads(threads, a.device):
        acc = _gemm_torch(a, b, a_scale, b_scale, promote, partial, frac_bits, chunk_rows)
    return round_output(acc, out_dtype)


@contextlib.contextmanager
def _threads(threads: int | None, device: torch.device):
    """torch's intra-op threads set to ``threads`` while the CPU model runs (see sm90_blockwise_gemm)."""
    before = torch.get_num_threads()
    limit = threads is not None and device.type == "cpu" and threads != before
    if limit:
        torch.set_num_threads(threads)  # type: ignore[arg-type]
    try:
        yield
    finally:
        if limit:
            torch.set_num_threads(before)


SWAP_AB_MAX_M = 64
"""The per-token kernel swaps A and B (and so the epilogue's two scales) for M up to this."""


def uses_blockwise_kernel(m: int, n: int, a_scale_numel: int, b_scale_numel: int) -> bool:
    """vLLM's dispatch between its two SM90 FP8 kernels (``c3x/scaled_mm_helper.hpp``): scales of 1 or M
    and 1 or N elements go to the per-tensor/per-token kernel (:func:`sm90_scaled_gemm`), anything else
    to the block-wise one (:func:`sm90_blockwise_gemm`)."""
    return not (a_scale_numel in (1, m) and b_scale_numel in (1, n))


def sm90_scaled_gemm(
    a: torch.Tensor,
    b: torch.Tensor,
    a_scale: torch.Tensor,
    b_scale: torch.Tensor,
    out_dtype: torch.dtype = torch.bfloat16,
    *,
    threads: int | None = 1,
) -> torch.Tensor:
    """vLLM's *other* SM90 FP8 kernel: per-tensor, per-token or per-channel scales (``a_scale`` of M or 1
    elements, ``b_scale`` of N or 1), which vLLM's dispatch (``c3x/scaled_mm_helper.hpp``) also picks for
    block-scaled operands whose scale tensors have such sizes -- K <= 128 and N <= 128.

    Arithmetic: the wgmma K-slices chained over all of K from zero (``KernelTmaWarpSpecializedFP8FastAccum``;
    for K <= 128 the same four slices as one K-block of the block-wise kernel), then the
    ``ScaledEpilogue``, ``D = ScaleA * (ScaleB * acc)`` with two fp32 roundings
    (``cutlass_extensions/epilogue/scaled_mm_epilogues_c3x.hpp``), then RNE to the output dtype. For
    M <= 64 vLLM's dispatch (``c3x/scaled_mm_sm90_fp8_dispatch.cuh``: the M16 and M64 configs swap A and B)
    hands the epilogue the scales the other way round, so there ``D = b_scale * (a_scale * acc)``; above
    it ``D = a_scale * (b_scale * acc)`` (measured on an H100, vLLM 0.23.0: each order matches bit for bit
    on its side of M = 64 and misses on the other). a: e4m3 [M, K]; b: e4m3 [N, K]."""
    m, k = a.shape
    n = b.shape[0]
    if a_scale.numel() not in (1, m) or b_scale.numel() not in (1, n):
        raise ValueError(f"scales of {a_scale.numel()} and {b_scale.numel()} elements for M={m}, N={n}")
    kp = -(-k // BLOCK_K) * BLOCK_K
    with _threads(threads, a.device):
        pa, pb = prepare_e4m3(_pad_k(a, kp)), prepare_e4m3(_pad_k(b, kp))
        acc = torch.zeros((m, n), dtype=torch.float32, device=a.device)
        for s in range(kp // K_SLICE):
            av, ae, _ = pa.kslice(s)
            bv, be, _ = pb.kslice(s)
            acc = wgmma_tile(av, ae, bv, be, acc)
        acc = canonical_nan(acc + 0.0, pa.nan.any(dim=1)[:, None] | pb.nan.any(dim=1)[None, :])
        sa = a_scale.float().reshape(-1, 1)
        sb = b_scale.float().reshape(1, -1)
        inner, outer = (sa, sb) if m <= SWAP_AB_MAX_M else (sb, sa)
        return round_output(mul32(outer, mul32(inner, acc)), out_dtype)


def _gemm_torch(
    a: torch.Tensor,
    b: torch.Tensor,
    a_scale: torch.Tensor,
    b_scale: torch.Tensor,
    promote: Promotion,
    partial: str,
    frac_bits: int,
    chunk_rows: int | None,
) -> torch.Tensor:
    """The fp32 accumulator [M, N]: rows in chunks, and per chunk the K-blocks in order (steps 1-3)."""
    m, n = a.shape[0], b.shape[0]
    acc = torch.zeros((m, n), dtype=torch.float32, device=a.device)
    if m == 0 or n == 0:
        return acc
    nkb = a_scale.shape[1]
    kp = nkb * BLOCK_K
    pa, pb = prepare_e4m3(_pad_k(a, kp)), prepare_e4m3(_pad_k(b, kp))
    sa = a_scale.float()
    sb = b_scale.float().repeat_interleave(BLOCK_N, dim=0)[:n]  # [N, KB]: weight block of each column
    rows = chunk_rows or default_chunk_rows(n, a.device)
    scratch = Scratch.new(min(rows, m), n, a.device)
    for r0 in range(0, m, rows):
        r1 = min(r0 + rows, m)
        ca = pa.rows(r0, r1)
        acc_c = acc[r0:r1]
        for kb in range(nkb):
            if partial == "wgmma":
                part = kblock_partial_wgmma(ca, pb, kb, frac_bits, scratch.first(r1 - r0))
            else:
                part = kblock_partial_exact(ca, pb, kb)
            acc_c = promote(part, sa[r0:r1, kb, None], sb[None, :, kb], acc_c)
        acc[r0:r1] = acc_c
    return acc
