"""An exact, vectorized model of one Hopper FP8 ``wgmma`` K-slice: 32 e4m3 products plus an fp32 accumulator.

One ``wgmma.mma_async.sync.aligned.m64nNk32.f32.e4m3.e4m3`` (PTX ISA, section "Asynchronous Warpgroup Level
Matrix Multiply-Accumulate Instructions": for ``.e4m3``/``.e5m2`` the shapes are ``m64nNk32``, N a multiple
of 8 up to 256) computes, for every output element, a fused dot product of K = 32 products and the incoming
accumulator ``c``. Its arithmetic is not IEEE: the tensor core aligns the 33 terms to the largest exponent,
keeps a fixed number of bits below it and truncates. DeepSeek-V3's technical report (arXiv:2412.19437,
sec. 3.3.2 "Increasing Accumulation Precision") measured "only about 14 bits" of accumulation on H800, which
is why block-scaled kernels promote to CUDA-core fp32 every 128 K.

The exact behaviour is MMA-Sim's (Microsoft Research, "MMA-Sim: Bit-Accurate Reference Model of Tensor
Cores and Matrix Cores", arXiv:2511.10909; package ``mmasim`` 2.1.1: ``mmasim/arithmetic/fdpa.py``
``t_fdpa``, ``truncated_fused_sum``, ``ldexp_and_normalize``; ``mmasim/nv_ptx/sim.py`` class ``WGMMA``,
for e4m3/e5m2 with an f32 accumulator F = 13, rho = ``"RZ-E8M13"``, L_max = 32, e_zero = -133). MMA-Sim
was validated bit for bit against the hardware. Per output element:

1. pseudo-exponents ``E(a) = max(floor(log2|a|), -6)`` for e4m3 (its subnormals count as exponent -6) and
   ``E(c) = max(floor(log2|c|), -126)``; a product's exponent is ``E(a_i) + E(b_i)``; a zero product or a
   zero ``c`` gets ``e_zero = -133``;
2. ``e_max`` = the largest of the 33 exponents; every term is truncated toward zero to a multiple of
   ``2^(e_max - 13)``;
3. the truncated terms are summed exactly and the sum is truncated toward zero to 14 significant bits (13
   fraction bits; fp32's subnormal range uses the quantum ``2^-139``);
4. a NaN anywhere gives the canonical NaN ``0x7FFFFFFF``; an infinite ``c`` gives ``c``; ``-0.0`` gives
   ``+0.0``.

MMA-Sim evaluates this in float64, element by element; here the same arithmetic runs in int8, int32 and fp32
on whole tiles, exactly (:func:`_fused_sum` says why each step is exact), so that a whole GEMM is affordable.
Intermediates are laid out [32, m, n] (K outermost): reductions over K are then element-wise over
contiguous slabs (on a CPU the exponent max ran ~8x faster than over an innermost dimension of 32).
``tests/test_numerics.py`` checks this model bit for bit against ``mmasim``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

K_SLICE = 32
"""Products per wgmma K-slice for 8-bit operands (PTX ``m64nNk32``; MMA-Sim ``L_max`` = 32 bytes / 1)."""
FRAC_BITS = 13
"""Fraction bits kept by the fused sum and by its result (MMA-Sim ``F = 13``, ``"RZ-E8M13"``)."""
E_ZERO = -133
"""The exponent MMA-Sim gives a zero term (``e_zero`` for an f32 accumulator on Hopper)."""
CANONICAL_NAN_BITS = 0x7FFFFFFF
"""The NaN NVIDIA's tensor cores (and FFMA) write (MMA-Sim ``ldexp_and_normalize``)."""

_ZERO_EXP_I8 = -64  # a zero e4m3 operand: every product with it sums to <= -56, and -64 + -64 fits int8
_MIN_PRODUCT_EXP = -12  # the smallest exponent of a nonzero e4m3 product: -6 + -6


@dataclass(frozen=True)
class E4M3Operand:
    """An e4m3 matrix [R, K] decoded once, so that a GEMM does not redo it per tile and slice.

    ``val_t``: fp32 values, transposed [K, R], NaN set to 0 (tracked in ``nan``); ``exp_t``: int8
    pseudo-exponents [K, R], ``_ZERO_EXP_I8`` for zeros; ``nan``: bool [R, K // 32], a NaN in that slice.
    """

    val_t: torch.Tensor
    exp_t: torch.Tensor
    nan: torch.Tensor

    @functools.cached_property
    def nan_kblock(self) -> torch.Tensor:
        """bool [R, K // 128]: a NaN in that row's 128-wide K-block (computed once per operand)."""
        return self.nan.view(self.nan.shape[0], -1, 4).any(dim=-1)

    @property
    def n_rows(self) -> int:
        return self.val_t.shape[1]

    def rows(self, r0: int, r1: int) -> E4M3Operand:
        """The operand restricted to rows ``r0:r1`` (views, no copy)."""
        return E4M3Operand(self.val_t[:, r0:r1], self.exp_t[:, r0:r1], self.nan[r0:r1])

    def kslice(self, s: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Values [32, R], exponents [32, R] and NaN flags [R] of K-slice ``s`` (K = 32 s .. 32 s + 31)."""
        k0 = s * K_SLICE
        return self.val_t[k0 : k0 + K_SLICE], self.exp_t[k0 : k0 + K_SLICE], self.nan[:, s]


def as_e4m3(x: torch.Tensor) -> torch.Tensor:
    """``x`` as float8_e4m3fn; another float dtype must hold e4m3 values exactly (no silent rounding)."""
    if x.dtype == torch.float8_e4m3fn:
        return x
    y = x.to(torch.float8_e4m3fn)
    same = (y.float() == x.float()) | (torch.isnan(x) & torch.isnan(y.float()))
    if not bool(same.all()):
        raise ValueError(f"an operand of dtype {x.dtype} holds values that are not e4m3")
    return y


def prepare_e4m3(x: torch.Tensor) -> E4M3Operand:
    """Decode an e4m3 matrix [R, K] (K a multiple of 32) into values, pseudo-exponents and NaN flags."""
    x = as_e4m3(x)
    if x.dim() != 2 or x.shape[1] % K_SLICE:
        raise ValueError(f"expected [R, K] with K a multiple of {K_SLICE}, got {tuple(x.shape)}")
    mag = x.view(torch.uint8).to(torch.int16) & 0x7F
    nan = mag == 0x7F  # e4m3fn has no infinities; 0x7F and 0xFF are its NaNs
    # floor(log2|x|) is (exponent field - 7) for normals; subnormals (field 0) count as -6, as field 1 does
    exp = torch.where(mag == 0, _ZERO_EXP_I8, (mag >> 3).clamp(min=1) - 7).to(torch.int8)
    val = torch.where(nan, 0.0, x.float())
    r = x.shape[0]
    return E4M3Operand(val.T.contiguous(), exp.T.contiguous(), nan.view(r, -1, K_SLICE).any(dim=-1))


def truncate_f32(x: torch.Tensor, frac_bits: int = FRAC_BITS) -> torch.Tensor:
    """Truncate fp32 toward zero to ``frac_bits`` fraction bits (MMA-Sim's ``"RZ-E8M13"`` for 13).

    Clearing the low ``23 - frac_bits`` bits of the pattern is that truncation for normals and, for
    subnormals, truncation to the quantum ``2^(-126 - frac_bits)``, which is what MMA-Sim does there."""
    return (x.contiguous().view(torch.int32) & -(1 << (23 - frac_bits))).view(torch.float32)


def _fused_sum(
    e_prod: torch.Tensor, products: torch.Tensor, c: torch.Tensor, frac_bits: int, ibuf: torch.Tensor | None
) -> torch.Tensor:
    """Steps 2-3 for finite ``c``: e_prod int8 [...] (largest product exponent), products fp32 [32, ...]
    (exact; overwritten), c fp32 [...] -> fp32 [...] (a ``-0.0`` may remain; NaN/inf ``c`` give garbage).

    Exactness: a product of two e4m3 values has at most 8 significant bits and lies in [2^-18, 2^17.7],
    so it is exact in fp32; multiplying by ``2^(F - e_max)`` is exact (a power of two; what would underflow
    is below 1 and truncates to 0 anyway); the fp32 -> int32 conversion truncates toward zero; each term is
    below ``2^(F+2)`` in magnitude, so 33 of them sum exactly in int32 and the sum converts exactly to fp32
    for ``F <= 16``; ``S * 2^(e_max - F)`` then has at most 24 significant bits and is exact, so the final
    truncation can work on its bit pattern.

    Alignment: ``e_al = max(e_prod, E(c), F - 127)`` keeps ``2^(F - e_al)`` a normal fp32. It equals
    ``e_max`` whenever a product is nonzero (then ``e_max >= -12``). With every product zero the sum is
    ``c`` aligned to its own exponent, i.e. ``c`` truncated -- taken directly, which also covers ``c``
    below ``2^(F - 127)``.
    """
    c_biased = (c.view(torch.int32) >> 23) & 0xFF  # E(c) + 127 for normal c; 0 for zero and subnormals
    e_al_biased = torch.maximum(e_prod.to(torch.int32) + 127, c_biased).clamp_(min=frac_bits)
    top = (e_al_biased << 23).view(torch.float32)  # 2^e_al
    scale = ((254 + frac_bits - e_al_biased) << 23).view(torch.float32)  # 2^(F - e_al), no division
    products.mul_(scale)
    if ibuf is None:
        ibuf = torch.empty(products.shape, dtype=torch.int32, device=products.device)
    ibuf.copy_(products)  # fp32 -> int32 truncates toward zero
    total = ibuf.sum(dim=0, dtype=torch.int32) + (c * scale).to(torch.int32)
    value = total.to(torch.float32) * (top * 2.0**-frac_bits)
    value = torch.where(e_prod < _MIN_PRODUCT_EXP, c, value)
    return truncate_f32(value, frac_bits)


def canonical_nan(x: torch.Tensor, where: torch.Tensor | None = None) -> torch.Tensor:
    """fp32 ``x`` with every NaN (and every element where ``where`` is true) set to ``0x7FFFFFFF``."""
    value = torch.tensor(CANONICAL_NAN_BITS, dtype=torch.int32, device=x.device).view(torch.float32)
    mask = torch.isnan(x) if where is None else where | torch.isnan(x)
    return torch.where(mask, value, x)


def _special_cases(d: torch.Tensor, c: torch.Tensor, nan: torch.Tensor) -> torch.Tensor:
    """Step 4: ``-0.0`` to ``+0.0``, an infinite ``c`` passes through, NaN anywhere -> ``0x7FFFFFFF``."""
    d = torch.where(torch.isinf(c), c, d + 0.0)  # x + 0.0 turns -0.0 into +0.0 and keeps everything else
    return canonical_nan(d, nan | torch.isnan(c))


@dataclass
class Scratch:
    """Reusable [32, m, n] buffers for the hot loop (int8 exponents, fp32 products, int32 terms)."""

    e8: torch.Tensor
    f32: torch.Tensor
    i32: torch.Tensor

    @staticmethod
    def new(m: int, n: int, device: torch.device) -> Scratch:
        shape = (K_SLICE, m, n)
        return Scratch(
            torch.empty(shape, dtype=torch.int8, device=device),
            torch.empty(shape, dtype=torch.float32, device=device),
            torch.empty(shape, dtype=torch.int32, device=device),
        )

    def first(self, m: int) -> Scratch:
        """The buffers for a tile of ``m <=`` rows (the last chunk may be shorter)."""
        return Scratch(self.e8[:, :m], self.f32[:, :m], self.i32[:, :m])


def wgmma_tile(
    av: torch.Tensor,
    ae: torch.Tensor,
    bv: torch.Tensor,
    be: torch.Tensor,
    c: torch.Tensor,
    frac_bits: int = FRAC_BITS,
    scratch: Scratch | None = None,
) -> torch.Tensor:
    """One K-slice on an [m, n] tile from decoded, NaN-free operands (:meth:`E4M3Operand.kslice`).

    av/ae: [32, m], bv/be: [32, n], c: finite fp32 [m, n] -> fp32 [m, n], ``-0.0`` not yet turned to
    ``+0.0`` and NaN not applied (the GEMM does both once per K-block). The GEMM model's hot loop: its
    intermediates are [32, m, n], so callers bound ``m``.
    """
    if not 1 <= frac_bits <= 16:
        raise ValueError("frac_bits must be in [1, 16] for the fp32 evaluation to stay exact")
    m, n = c.shape
    if scratch is None:
        scratch = Scratch.new(m, n, c.device)
    e_prod = torch.add(ae[:, :, None], be[:, None, :], out=scratch.e8).amax(dim=0)
    products = torch.mul(av[:, :, None], bv[:, None, :], out=scratch.f32)
    return _fused_sum(e_prod, products, c, frac_bits, scratch.i32)


def default_chunk_rows(n: int, device: torch.device, budget_bytes: int | None = None) -> int:
    """Rows per chunk so that one [32, rows, n] fp32 intermediate fits the budget.

    On a CPU small chunks are faster (the intermediates stay in cache): 2 MiB. Elsewhere 256 MiB, which
    bounds memory (about 2.3x that in all, with the int32 and int8 buffers) and keeps launches few."""
    if budget_bytes is None:
        budget_bytes = 2 << 20 if device.type == "cpu" else 256 << 20
    return max(1, budget_bytes // (max(n, 1) * K_SLICE * 4))


def wgmma_slice(
    a: torch.Tensor,
    b: torch.Tensor,
    c: torch.Tensor,
    frac_bits: int = FRAC_BITS,
    chunk_rows: int | None = None,
) -> torch.Tensor:
    """One Hopper wgmma K-slice on a whole tile: ``d[i, j] = fdpa(a[i, :], b[j, :], c[i, j])``.

    a: e4m3 [M, 32]; b: e4m3 [N, 32] (B given K-major, as the GEMM's weight is); c: fp32 [M, N] (any
    values, NaN and inf included). Returns fp32 [M, N], bit-identical to MMA-Sim's
    ``WGMMA("Hopper", "m64nNk32.f32.e4m3.e4m3")`` on these operands.
    """
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != K_SLICE or b.shape[1] != K_SLICE:
        raise ValueError(
            f"a [M, {K_SLICE}] and b [N, {K_SLICE}] expected, got {tuple(a.shape)}, {tuple(b.shape)}"
        )
    if c.shape != (a.shape[0], b.shape[0]) or c.dtype != torch.float32:
        raise ValueError(f"c must be fp32 [{a.shape[0]}, {b.shape[0]}], got {c.dtype} {tuple(c.shape)}")
    pa, pb = prepare_e4m3(a), prepare_e4m3(b)
    bv, be, bn = pb.kslice(0)
    rows = chunk_rows or default_chunk_rows(b.shape[0], c.device)
    finite_c = torch.where(torch.isfinite(c), c, 0.0)
    out = torch.empty_like(c)
    for r0 in range(0, a.shape[0], rows):
        av, ae, an = pa.rows(r0, r0 + rows).kslice(0)
        d = wgmma_tile(av, ae, bv, be, finite_c[r0 : r0 + rows].contiguous(), frac_bits)
        out[r0 : r0 + rows] = _special_cases(d, c[r0 : r0 + rows], an[:, None] | bn[None, :])
    return out


def wgmma_dpa(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, frac_bits: int = FRAC_BITS) -> torch.Tensor:
    """MMA-Sim's ``dpa`` calling convention: a, b e4m3 [..., K] (K a multiple of 32), c fp32 [...] -> [...].

    a[p] pairs with b[p]; ``K / 32`` slices are chained, each result the next one's ``c``, as MMA-Sim's
    ``MMA_T_FDPA.dpa`` does. For tests and small inputs (no tile broadcasting)."""
    if a.shape != b.shape or a.shape[:-1] != c.shape:
        raise ValueError(f"shapes differ: a {tuple(a.shape)}, b {tuple(b.shape)}, c {tuple(c.shape)}")
    if not 1 <= frac_bits <= 16:
        raise ValueError("frac_bits must be in [1, 16] for the fp32 evaluation to stay exact")
    k = a.shape[-1]
    pa, pb = prepare_e4m3(a.reshape(-1, k)), prepare_e4m3(b.reshape(-1, k))
    d = c.reshape(-1).float()
    for s in range(k // K_SLICE):
        av, ae, an = pa.kslice(s)
        bv, be, bn = pb.kslice(s)
        finite = torch.where(torch.isfinite(d), d, 0.0)
        e_prod = (ae + be).amax(dim=0)
        d = _special_cases(_fused_sum(e_prod, av * bv, finite, frac_bits, None), d, an | bn)
    return d.reshape(c.shape)
