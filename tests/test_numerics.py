"""Self-tests of fp8_verify.numerics: the wgmma model against MMA-Sim, fma32 against exact rationals, the
GEMM against a slow composition of MMA-Sim, and planted wrong variants that these comparisons must catch.

MMA-Sim (``pip install mmasim==2.1.1``; arXiv:2511.10909) is the independent reference; without it those
comparisons are skipped with the reason. Its import builds a C++ extension (torch's cpp_extension JIT) and
may wait on another process's build lock, so it is imported by the ``mmasim`` fixture, when the first test
that needs it runs -- never at collection -- and that wait is bounded (:mod:`fp8_verify.suite.guard`).
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable, Iterator
from fractions import Fraction
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fp8_verify.numerics import fma32, sm90_blockwise_gemm, wgmma_dpa, wgmma_slice
from fp8_verify.numerics.sm90 import BLOCK_K, BLOCK_N, PROMOTIONS
from fp8_verify.suite.guard import NativeBuildError, import_mmasim

pytestmark = [pytest.mark.cpu, pytest.mark.selftest]

_NO_MMASIM = "mmasim (MMA-Sim, the independent reference) is not installed; pip install mmasim==2.1.1"
Wgmma = Any  # mmasim.nv_ptx.WGMMA, which only the ``mmasim`` fixture imports


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """One intra-op thread for these small problems: on a CPU shared with other jobs, OpenMP's two
    threads wait on each other in every op and a test can run 30x slower. Restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


needs_mmasim = pytest.mark.skipif(importlib.util.find_spec("mmasim") is None, reason=_NO_MMASIM)


@pytest.fixture(scope="module")
def mmasim() -> Wgmma:
    """MMA-Sim's Hopper wgmma (``m64n8k32.f32.e4m3.e4m3``), imported on first use: a stale build lock, or
    one held past the limit, fails these tests in one line instead of waiting for ever."""
    try:
        nv_ptx = import_mmasim()
    except ImportError as e:
        pytest.skip(f"{_NO_MMASIM} ({e})")
    except NativeBuildError as e:
        failure = f"fp8-verify: {e}"
    else:
        return nv_ptx.WGMMA("Hopper", "m64n8k32.f32.e4m3.e4m3")
    pytest.fail(failure, pytrace=False)  # outside the except: the one line, without its chain


def examples(n: int) -> settings:
    """A fixed number of examples whatever the active profile: the file's time budget is set here."""
    return settings(max_examples=n, deadline=None, suppress_health_check=list(HealthCheck))


# -- inputs ---------------------------------------------------------------------------------------------

E4M3_REGIMES = ("all_codes", "finite", "subnormal", "sparse", "extreme", "narrow", "wide")
C_REGIMES = ("zero", "bits", "subnormal", "tiny", "big", "matched", "neg_zero")


def e4m3_codes(g: torch.Generator, shape: tuple[int, ...], regime: str) -> torch.Tensor:
    """e4m3 tensors by byte code: every exponent, subnormals, zeros, +-448, sparse, NaN (``all_codes``)."""

    def randint(lo: int, hi: int) -> torch.Tensor:
        return torch.randint(lo, hi, shape, generator=g)

    sign = randint(0, 2) << 7
    if regime == "all_codes":  # NaN (0x7F, 0xFF) included: 2 codes in 256
        code = randint(0, 256)
    elif regime == "finite":
        code = randint(0, 0x7F) | sign
    elif regime == "subnormal":  # exponent field 0: 0, 2^-9 .. 7 * 2^-9
        code = randint(0, 8) | sign
    elif regime == "sparse":
        code = torch.where(randint(0, 8) == 0, randint(0, 0x7F), 0) | sign
    elif regime == "extreme":  # +-448, +-2^-9, zeros and a few others
        pick = torch.tensor([0x7E, 0x01, 0x00, 0x7E, 0x08, 0x77])[randint(0, 6)]
        code = pick | sign
    elif regime == "narrow":  # exponents within 2 of each other: little or no truncation
        field = randint(6, 9)
        code = (field << 3) | randint(0, 8) | sign
    elif regime == "wide":  # one large term per row and small ones: truncation everywhere
        field = torch.where(randint(0, 16) == 0, randint(13, 16), randint(0, 6))
        code = ((field << 3) | randint(0, 8)).clamp(max=0x7E) | sign
    else:
        raise ValueError(regime)
    return code.to(torch.uint8).view(torch.float8_e4m3fn)


def fp32_values(g: torch.Generator, shape: tuple[int, ...], regime: str, like: torch.Tensor) -> torch.Tensor:
    """Accumulator values of every magnitude; ``like`` ([..., K] products' scale) for ``matched``."""
    n = math.prod(shape)
    if regime == "zero":
        return torch.zeros(shape)
    if regime == "neg_zero":
        return torch.full(shape, -0.0)
    if regime == "bits":  # any pattern: normals, subnormals, inf, NaN
        return (
            torch.randint(-(2**31), 2**31, (n,), generator=g, dtype=torch.int64)
            .to(torch.int32)
            .view(torch.float32)
            .view(shape)
        )
    if regime == "subnormal":
        return torch.randint(-(2**23) + 1, 2**23, shape, generator=g).to(torch.int32).view(torch.float32)
    sign = torch.randint(0, 2, shape, generator=g) * 2.0 - 1.0
    mant = 1.0 + torch.rand(shape, generator=g)
    if regime == "tiny":  # normal, below every product (2^-18): only c survives unless a product is there
        return sign * mant * torch.exp2(torch.randint(-126, -100, shape, generator=g).float())
    if regime == "big":
        return sign * mant * torch.exp2(torch.randint(20, 128, shape, generator=g).float()).clamp(max=3e38)
    if regime == "matched":  # near the products' own magnitude: the interesting alignments
        mag = like.abs().amax(dim=-1).clamp(min=2.0**-18)
        return sign * mant * mag * torch.exp2(torch.randint(-16, 8, shape, generator=g).float())
    raise ValueError(regime)


def same_bits(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Element-wise: identical bit patterns (NaN payloads included)."""
    assert x.dtype == y.dtype and x.shape == y.shape, (x.dtype, y.dtype, x.shape, y.shape)
    width = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[x.element_size()]
    return x.contiguous().view(width) == y.contiguous().view(width)


def first_difference(x: torch.Tensor, y: torch.Tensor, same: torch.Tensor) -> str:
    idx = tuple(int(i) for i in (~same).nonzero()[0])
    return f"{int((~same).sum())} differ; first at {idx}: {x[idx].item()!r} vs {y[idx].item()!r}"


# -- wgmma vs MMA-Sim ------------------------------------------------------------------------------------


def mmasim_tile(mmasim: Wgmma, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """MMA-Sim's Hopper wgmma on a tile: d[i, j] = dpa(a[i], b[j], c[i, j]) (a [M, K], b [N, K])."""
    m, n = c.shape
    return mmasim.dpa(a[:, None, :].expand(m, n, -1), b[None, :, :].expand(m, n, -1), c)


@needs_mmasim
@examples(200)
@given(
    seed=st.integers(0, 2**32 - 1),
    a_regime=st.sampled_from(E4M3_REGIMES),
    b_regime=st.sampled_from(E4M3_REGIMES),
    c_regime=st.sampled_from(C_REGIMES),
    c_specials=st.lists(st.floats(width=32), max_size=8),
)
def test_wgmma_slice_matches_mmasim(
    mmasim: Wgmma, seed: int, a_regime: str, b_regime: str, c_regime: str, c_specials: list[float]
) -> None:
    """One K-slice on a 64 x 8 tile (``m64n8k32``), bit for bit, NaN payloads included."""
    g = torch.Generator().manual_seed(seed)
    a = e4m3_codes(g, (64, 32), a_regime)
    b = e4m3_codes(g, (8, 32), b_regime)
    products = a.float()[:, None, :] * b.float()[None, :, :]
    c = fp32_values(g, (64, 8), c_regime, products.nan_to_num())
    if c_specials:  # Hypothesis-chosen accumulators (any fp32: inf, NaN, subnormal, -0.0, ...)
        c.view(-1)[: len(c_specials)] = torch.tensor(c_specials, dtype=torch.float32)
    ref = mmasim_tile(mmasim, a, b, c)
    got = wgmma_slice(a, b, c)
    assert_same_bits(got, ref)


@needs_mmasim
@examples(40)
@given(
    seed=st.integers(0, 2**32 - 1),
    regime=st.sampled_from(E4M3_REGIMES),
    c_regime=st.sampled_from(C_REGIMES),
    slices=st.integers(1, 4),
)
def test_chained_slices_match_mmasim(
    mmasim: Wgmma, seed: int, regime: str, c_regime: str, slices: int
) -> None:
    """MMA-Sim's own chaining over K = 32..128 (its ``dpa`` loops over L_max = 32) vs ``wgmma_dpa``."""
    g = torch.Generator().manual_seed(seed)
    k = 32 * slices
    a = e4m3_codes(g, (50, k), regime)
    b = e4m3_codes(g, (50, k), "finite")
    c = fp32_values(g, (50,), c_regime, (a.float() * b.float()).nan_to_num())
    ref = mmasim.dpa(a, b, c)
    got = wgmma_dpa(a, b, c)
    assert_same_bits(got, ref)


def _e4m3(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32).to(torch.float8_e4m3fn)


EDGE_CASES: dict[str, tuple[list[float], list[float], float]] = {
    # name: (a values, b values, c); padded with zeros to 32
    "all_zero_c_subnormal": ([0.0], [1.0], 1e-45),
    "all_zero_c_tiny_subnormal_truncated": ([0.0], [0.0], -3.0e-42),
    "all_zero_c_neg_zero": ([0.0], [0.0], -0.0),
    "zero_products_keep_c_bits": ([0.0, 448.0], [5.0, 0.0], 1.2345678),
    "cancel_to_zero": ([448.0, -448.0], [448.0, 448.0], 0.0),
    "cancel_with_c": ([1.0], [1.0], -1.0),
    "c_dominates_products_vanish": ([448.0], [448.0], 3.0e38),
    "products_dominate_c_vanishes": ([448.0] * 32, [448.0] * 32, 1e-3),
    "max_sum": ([448.0] * 32, [448.0] * 32, 3.4e38),
    "min_subnormal_products": ([2.0**-9] * 32, [2.0**-9] * 32, 0.0),
    "subnormal_times_normal": ([2.0**-9, 7 * 2.0**-9], [1.5, -448.0], 2.0**-20),
    "truncation_of_small_terms": ([256.0, 1.125, -1.125], [1.0, 2.0**-7, 2.0**-8], 0.0),
    "negative_truncates_toward_zero": ([-256.0, -1.125], [1.0, 2.0**-8], 0.0),
    "c_inf": ([1.0], [1.0], math.inf),
    "c_minus_inf": ([448.0], [-448.0], -math.inf),
    "c_nan": ([1.0], [1.0], math.nan),
    "a_nan": ([math.nan], [0.0], 0.0),
    "a_nan_c_inf": ([math.nan], [1.0], math.inf),
}


@needs_mmasim
@pytest.mark.parametrize("name", list(EDGE_CASES))
def test_wgmma_edge_cases_match_mmasim(mmasim: Wgmma, name: str) -> None:
    a_vals, b_vals, c_val = EDGE_CASES[name]
    a = torch.zeros(1, 32, dtype=torch.float8_e4m3fn)
    b = torch.zeros(1, 32, dtype=torch.float8_e4m3fn)
    a[0, : len(a_vals)] = _e4m3(a_vals)
    b[0, : len(b_vals)] = _e4m3(b_vals)
    c = torch.tensor([[c_val]], dtype=torch.float32)
    ref, got = mmasim_tile(mmasim, a, b, c), wgmma_slice(a, b, c)
    assert bool(same_bits(got, ref).all()), (got.item(), ref.item())


# -- fma32 vs exact rationals ----------------------------------------------------------------------------


def round_to_f32(q: Fraction) -> float:
    """Round an exact rational to binary32, nearest-even, with subnormals and overflow (a Python float)."""
    if q == 0:
        return 0.0
    sign = -1.0 if q < 0 else 1.0
    q = abs(q)
    e = q.numerator.bit_length() - q.denominator.bit_length()  # floor(log2 q) is e or e - 1
    if Fraction(2) ** e > q:
        e -= 1
    quantum = Fraction(2) ** max(e - 23, -149)
    n, rem = divmod(q / quantum, 1)
    if rem > Fraction(1, 2) or (rem == Fraction(1, 2) and n % 2 == 1):
        n += 1
    value = n * quantum
    if value >= Fraction(2) ** 128:
        return sign * math.inf
    return sign * float(value)


def fma_reference(x: float, y: float, z: float) -> float:
    """``x * y + z`` rounded once to binary32, from exact rationals (IEEE 754 special cases by hand)."""
    if not (math.isfinite(x) and math.isfinite(y) and math.isfinite(z)):
        return x * y + z  # inf/NaN arithmetic involves no rounding
    q = Fraction(x) * Fraction(y) + Fraction(z)
    if q == 0:  # exact zero: -0 only if both addends are -0 (round-to-nearest)
        product_negative = math.copysign(1.0, x) * math.copysign(1.0, y) < 0
        both_neg_zero = x * y == 0 and product_negative and z == 0 and math.copysign(1.0, z) < 0
        return -0.0 if both_neg_zero else 0.0
    return round_to_f32(q)


def _f32(v: float) -> float:
    return float(torch.tensor(v, dtype=torch.float32))


def fma_adversarial() -> list[tuple[float, float, float]]:
    """Cases where shortcuts fail: double rounding, ties, subnormal results, cancellation, overflow."""
    u = 2.0**-12
    sub = 2.0**-149
    return [
        (1 + u, 1 + u, 2.0**-70),  # (1 + 2^-11 + 2^-24) + 2^-70: naive double rounding gives 1 + 2^-11
        (1 + u, 1 + u, -(2.0**-70)),
        (1 + u, 1 + u, 0.0),  # an exact tie below fp32's last bit: to even
        (1 + u, -(1 + u), 0.0),
        (1 + 3 * u, 1 + u, 0.0),
        (1.5, 2.0**-130, 2.0**-149),  # subnormal result with a tie
        (3.0, sub, sub),
        (0.5, sub, 0.0),  # 2^-150: a tie between 0 and the smallest subnormal -> 0
        (0.75, sub, 0.0),  # rounds up to 2^-149
        (_f32(1 / 3), 3.0, -1.0),  # cancellation: the exact residue survives
        (_f32(0.1), _f32(10.0), -1.0),
        (2.0**64, 2.0**64, -(2.0**127)),  # product beyond fp32, exact result in range
        (2.0**100, 2.0**100, 0.0),  # overflow to inf
        (_f32(3.4e38), 1.0, _f32(3.4e38)),
        (-0.0, 1.0, -0.0),
        (0.0, -1.0, 0.0),
        (1.0, -1.0, 1.0),
        (math.inf, 0.0, 1.0),
        (math.inf, 1.0, -math.inf),
        (math.nan, 1.0, 1.0),
    ]


def _check_fma(
    xs: list[float], ys: list[float], zs: list[float], impl: Callable[..., torch.Tensor] = fma32
) -> list[tuple[float, float, float, float, float]]:
    """Run ``impl`` on the batch; return the cases that differ from the exact reference."""
    t = [torch.tensor(v, dtype=torch.float32) for v in (xs, ys, zs)]
    got = impl(*t).tolist()
    bad = []
    for x, y, z, r in zip(*(v.tolist() for v in t), got, strict=True):
        ref = _f32(fma_reference(x, y, z))
        if not (math.isnan(ref) and math.isnan(r)) and (
            ref != r or math.copysign(1, ref) != math.copysign(1, r)
        ):
            bad.append((x, y, z, r, ref))
    return bad


def test_fma32_adversarial_cases_exact() -> None:
    xs, ys, zs = zip(*fma_adversarial(), strict=True)
    assert _check_fma(list(xs), list(ys), list(zs)) == []


def test_fma32_nan_is_canonical() -> None:
    out = fma32(torch.tensor([math.nan, math.inf]), torch.tensor([1.0, 0.0]), torch.tensor([0.0, 0.0]))
    assert out.view(torch.int32).tolist() == [0x7FFFFFFF, 0x7FFFFFFF]


def _few_bit_floats(bits: int, lo: int, hi: int) -> st.SearchStrategy[float]:
    """fp32 with at most ``bits`` significant bits: exact results often land on ties and half-ulps."""
    return st.builds(
        lambda m, e, s: _f32(s * m * 2.0**e),
        st.integers(1, 2**bits - 1),
        st.integers(lo, hi),
        st.sampled_from([1.0, -1.0]),
    )


@examples(400)
@given(
    x=st.one_of(st.floats(width=32), _few_bit_floats(12, -80, 40)),
    y=st.one_of(st.floats(width=32), _few_bit_floats(12, -80, 40)),
    z=st.one_of(st.floats(width=32), _few_bit_floats(24, -160, 80)),
)
@example(x=1 + 2.0**-12, y=1 + 2.0**-12, z=2.0**-70)
def test_fma32_exact(x: float, y: float, z: float) -> None:
    assert _check_fma([x], [y], [z]) == []


def test_fma32_exact_on_a_random_batch() -> None:
    """2,000 random cases at once (subnormal, tie-prone and cancelling ones among them)."""
    g = torch.Generator().manual_seed(7)
    n = 2000
    x = (1 + torch.randint(0, 2**12, (n,), generator=g) * 2.0**-12) * torch.exp2(
        torch.randint(-75, 20, (n,), generator=g).float()
    )
    y = (1 + torch.randint(0, 2**12, (n,), generator=g) * 2.0**-12) * torch.exp2(
        torch.randint(-75, 20, (n,), generator=g).float()
    )
    p = (x.double() * y.double()).float()  # the product rounded, so z often cancels most of it
    z = torch.where(torch.rand(n, generator=g) < 0.5, -p, -p * (1 + torch.randn(n, generator=g) * 1e-6))
    z = torch.where(torch.rand(n, generator=g) < 0.2, torch.randn(n, generator=g) * 2.0**-135, z)
    assert _check_fma(x.tolist(), y.tolist(), z.tolist()) == []


def test_naive_fma_is_caught() -> None:
    """The fma check can fail: float64 ``x * y + z`` rounded twice (no round-to-odd) is caught."""

    def naive(x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return (x.double() * y.double() + z.double()).float()

    xs, ys, zs = zip(*fma_adversarial(), strict=True)
    assert _check_fma(list(xs), list(ys), list(zs), naive)


# -- the GEMM vs a composition of MMA-Sim ---------------------------------------------------------------


def reference_gemm(
    mmasim: Wgmma,
    a: torch.Tensor,
    b: torch.Tensor,
    sa: torch.Tensor,
    sb: torch.Tensor,
    out_dtype: torch.dtype,
) -> torch.Tensor:
    """Slow and plain: per 128-block MMA-Sim's wgmma chain from 0, ``fma32(partial, sa * sb, acc)``, RNE.

    No chunking, no decoding, no special handling: zero padding of the last K-block is written out."""
    m, k = a.shape
    n = b.shape[0]
    nkb = sa.shape[1]
    ap = torch.zeros(m, nkb * BLOCK_K, dtype=torch.float8_e4m3fn)
    bp = torch.zeros(n, nkb * BLOCK_K, dtype=torch.float8_e4m3fn)
    ap[:, :k] = a
    bp[:, :k] = b
    acc = torch.zeros(m, n)
    weight_block = torch.arange(n) // BLOCK_N
    for kb in range(nkb):
        block = slice(kb * BLOCK_K, (kb + 1) * BLOCK_K)
        partial = mmasim_tile(mmasim, ap[:, block], bp[:, block], torch.zeros(m, n))  # 4 chained slices of 32
        scale = sa[:, kb, None] * sb[weight_block, kb][None, :]  # one fp32 rounding
        acc = fma32(partial, scale, acc)
    out = acc.to(out_dtype)
    if out_dtype != torch.float32:  # the hardware's cvt writes the canonical NaN
        out = torch.where(out.isnan(), torch.tensor(0x7FFF, dtype=torch.int16).view(out_dtype), out)
    return out


SCALE_REGIMES = ("fp32", "ue8m0", "tiny", "wide", "huge")


def scales(g: torch.Generator, shape: tuple[int, int], regime: str) -> torch.Tensor:
    if regime == "fp32":
        return torch.rand(shape, generator=g) * 2.0**-6 + 2.0**-12
    if regime == "ue8m0":  # powers of two: the fma's single rounding matters less
        return torch.exp2(torch.randint(-20, 4, shape, generator=g).float())
    if regime == "tiny":  # products of scales and partials in fp32's subnormal range
        return torch.rand(shape, generator=g) * 2.0**-70
    if regime == "wide":
        return (1 + torch.rand(shape, generator=g)) * torch.exp2(
            torch.randint(-60, 60, shape, generator=g).float()
        )
    if regime == "huge":  # overflow to inf
        return torch.rand(shape, generator=g) * 2.0**110
    raise ValueError(regime)


def gemm_problem(
    seed: int, m: int, n: int, k: int, regime: str, scale_regime: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    nkb = -(-k // BLOCK_K)
    a = e4m3_codes(g, (m, k), regime)
    b = e4m3_codes(g, (n, k), "finite" if regime == "all_codes" else regime)
    return a, b, scales(g, (m, nkb), scale_regime), scales(g, (-(-n // BLOCK_N), nkb), scale_regime)


def assert_same_bits(got: torch.Tensor, ref: torch.Tensor) -> None:
    __tracebackhide__ = True
    same = same_bits(got, ref)
    assert bool(same.all()), first_difference(got, ref, same)


@needs_mmasim
@examples(40)
@given(
    seed=st.integers(0, 2**32 - 1),
    m=st.integers(1, 9),
    n=st.sampled_from([1, 8, 16, 120, 136, 200]),
    k=st.sampled_from([16, 32, 100, 128, 144, 260, 384]),
    regime=st.sampled_from(E4M3_REGIMES),
    scale_regime=st.sampled_from(SCALE_REGIMES),
    out_dtype=st.sampled_from([torch.bfloat16, torch.float16, torch.float32]),
)
def test_gemm_matches_mmasim_composition(
    mmasim: Wgmma, seed: int, m: int, n: int, k: int, regime: str, scale_regime: str, out_dtype: torch.dtype
) -> None:
    """Partial K-blocks (K % 128 != 0) and partial N-blocks (N % 128 != 0) included."""
    a, b, sa, sb = gemm_problem(seed, m, n, k, regime, scale_regime)
    ref = reference_gemm(mmasim, a, b, sa, sb, out_dtype)
    assert_same_bits(sm90_blockwise_gemm(a, b, sa, sb, out_dtype), ref)


def test_gemm_does_not_depend_on_chunking() -> None:
    a, b, sa, sb = gemm_problem(3, 37, 200, 300, "finite", "fp32")
    whole = sm90_blockwise_gemm(a, b, sa, sb, torch.float32, chunk_rows=64)
    for rows in (1, 5, 16):
        assert_same_bits(sm90_blockwise_gemm(a, b, sa, sb, torch.float32, chunk_rows=rows), whole)


def test_gemm_rejects_wrong_scale_shapes() -> None:
    a, b, sa, sb = gemm_problem(0, 4, 260, 200, "finite", "fp32")  # b_scale [3, 2]
    with pytest.raises(ValueError, match="b_scale"):
        sm90_blockwise_gemm(a, b, sa, sb.T.contiguous())
    with pytest.raises(ValueError, match="a_scale"):
        sm90_blockwise_gemm(a, b, sa[:, :1], sb)


# -- the comparisons can fail ------------------------------------------------------------------------------

# name: (variant arguments, output dtype compared). A wrong partial shows in about 10% of bf16 outputs; a
# wrong promotion order changes about half the fp32 accumulators by an ulp but only ~1 in 16,000 bf16
# outputs (docs/numerics.md), so on a problem this small its comparison is made on the accumulator.
WRONG_VARIANTS: dict[str, tuple[dict[str, object], torch.dtype]] = {
    "exact_fp32_partials": ({"partial": "exact"}, torch.bfloat16),
    "truncation_12_bits": ({"frac_bits": 12}, torch.bfloat16),
    "truncation_14_bits": ({"frac_bits": 14}, torch.bfloat16),
    "promotion_mul_then_add": ({"promotion": "mul_add"}, torch.float32),
    "promotion_sa_then_sb": ({"promotion": "fma_sa_then_sb"}, torch.float32),
    "promotion_mul_mul_add": ({"promotion": "mul_mul_add"}, torch.float32),
}


@needs_mmasim
@pytest.mark.parametrize("variant", list(WRONG_VARIANTS))
def test_planted_wrong_variant_is_detected(mmasim: Wgmma, variant: str) -> None:
    """Each non-measured arithmetic fails the check of ``test_gemm_matches_mmasim_composition`` on an
    ordinary problem, where the measured one passes."""
    kwargs, out_dtype = WRONG_VARIANTS[variant]
    a, b, sa, sb = gemm_problem(11, 8, 136, 384, "finite", "fp32")
    ref = reference_gemm(mmasim, a, b, sa, sb, out_dtype)
    assert_same_bits(sm90_blockwise_gemm(a, b, sa, sb, out_dtype), ref)
    wrong = sm90_blockwise_gemm(a, b, sa, sb, out_dtype, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(AssertionError):
        assert_same_bits(wrong, ref)


@needs_mmasim
@pytest.mark.parametrize("frac_bits", [12, 14])
def test_planted_wgmma_width_is_detected(mmasim: Wgmma, frac_bits: int) -> None:
    g = torch.Generator().manual_seed(5)
    a, b = e4m3_codes(g, (64, 32), "wide"), e4m3_codes(g, (8, 32), "finite")
    c = torch.zeros(64, 8)
    ref = mmasim_tile(mmasim, a, b, c)
    assert not bool(same_bits(wgmma_slice(a, b, c, frac_bits=frac_bits), ref).all())


def test_promotions_are_named() -> None:
    assert set(PROMOTIONS) == {"fma", "mul_add", "fma_sa_then_sb", "mul_mul_add"}


# -- the Triton kernel (stretch) -------------------------------------------------------------------------


TRITON_PROBLEMS = [  # (seed, m, n, k, regime, scale regime): partial blocks, NaN codes, subnormal acc, inf
    (0, 5, 40, 300, "finite", "fp32"),
    (1, 9, 136, 260, "all_codes", "tiny"),
    (2, 3, 130, 100, "subnormal", "huge"),
]
PROBLEM_IDS = [f"{p[1]}x{p[2]}x{p[3]}-{p[4]}-{p[5]}" for p in TRITON_PROBLEMS]

_INTERPRETED = """
import json, sys
import torch
sys.path.insert(0, sys.argv[1])
from test_numerics import TRITON_PROBLEMS, gemm_problem, same_bits
from fp8_verify.numerics import sm90_blockwise_gemm
from fp8_verify.numerics.triton_sm90 import sm90_accumulator_triton
out = {}
for i, problem in enumerate(TRITON_PROBLEMS):
    a, b, sa, sb = gemm_problem(*problem)
    ref = sm90_blockwise_gemm(a, b, sa, sb, torch.float32)
    for mode in ("emulated", "hw") if i == 0 else ("emulated",):
        got = sm90_accumulator_triton(a, b, sa, sb, fma_mode=mode)
        out[f"{i}-{mode}"] = [int((~same_bits(got, ref)).sum()), ref.numel()]
import triton
import triton.language as tl

@triton.jit
def fma_probe(x, y, z, o):
    tl.store(o, tl.fma(tl.load(x), tl.load(y), tl.load(z)))

# (1 + 2^-12)^2 - (1 + 2^-11) is 2^-24 with one rounding, 0 with two (the product rounds to 1 + 2^-11)
x, z, o = torch.tensor([1 + 2**-12]), torch.tensor([-(1 + 2**-11)]), torch.zeros(1)
fma_probe[(1,)](x, x, z, o)
out["fma_fused"] = o.item() == 2**-24
out["triton"] = triton.__version__
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def interpreted() -> dict:
    """Mismatch counts of the Triton kernel run by Triton's CPU interpreter, per problem and fma mode.

    In a fresh process: ``TRITON_INTERPRET=1`` must be set before Triton is first imported (vLLM, loaded
    by the suite's plugin, imports it), or ``tl.zeros`` and the other library kernels stay compiled-only."""
    pytest.importorskip("triton", reason="Triton is not installed")
    if torch.cuda.is_available():
        pytest.skip("a GPU is here: test_triton_kernel_on_gpu_matches_model runs the kernel itself")
    import json
    import os
    import pathlib
    import subprocess
    import sys

    env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1"}
    tests = str(pathlib.Path(__file__).parent)
    run = subprocess.run(
        [sys.executable, "-c", _INTERPRETED, tests], capture_output=True, text=True, env=env, timeout=600
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("i", range(len(TRITON_PROBLEMS)), ids=PROBLEM_IDS)
def test_triton_kernel_in_interpreter_matches_model(interpreted: dict[str, list[int]], i: int) -> None:
    """Triton's CPU interpreter runs the kernel with the float64 round-to-odd fma: every step but the
    hardware ``tl.fma`` is checked bit for bit against the torch model (fp32 accumulator)."""
    bad, total = interpreted[f"{i}-emulated"]
    assert bad == 0, f"{bad} of {total} accumulators differ"


def test_triton_interpreter_fma_mode(interpreted: dict) -> None:
    """What the interpreter can check of the kernel's hardware-fma form depends on its ``tl.fma``, probed
    directly: numpy ``x * y + z`` (two roundings; Triton 3.6) makes ``"hw"`` differ from the model, which
    is why the check above uses ``"emulated"``; a fused ``tl.fma`` (Triton 3.9.0's interpreter) must give
    the model's bits in ``"hw"`` too."""
    bad, total = interpreted["0-hw"]
    if interpreted["fma_fused"]:
        assert bad == 0, (
            f"Triton {interpreted['triton']}: fused tl.fma, yet {bad} of {total} differ in hw mode"
        )
    else:
        assert bad > 0, f"Triton {interpreted['triton']}: tl.fma rounds twice, yet hw mode equals the model"


@pytest.mark.hopper  # the emulation's GPU backend, which the bit-exact checks use where the kernel runs
@pytest.mark.parametrize("problem", TRITON_PROBLEMS, ids=PROBLEM_IDS)
def test_triton_kernel_on_gpu_matches_model(problem: tuple[int, int, int, int, str, str]) -> None:
    """On a GPU: the compiled kernel (both fma modes) and the torch model on CUDA equal the CPU model."""
    from fp8_verify.numerics.triton_sm90 import sm90_accumulator_triton

    a, b, sa, sb = gemm_problem(*problem)
    cuda = [t.cuda() for t in (a, b, sa, sb)]
    for out_dtype in (torch.float32, torch.bfloat16):
        ref = sm90_blockwise_gemm(a, b, sa, sb, out_dtype)
        for backend in ("torch", "triton"):
            assert_same_bits(sm90_blockwise_gemm(*cuda, out_dtype, backend=backend).cpu(), ref)
    acc = sm90_blockwise_gemm(a, b, sa, sb, torch.float32)
    for mode in ("hw", "emulated"):
        assert_same_bits(sm90_accumulator_triton(*cuda, fma_mode=mode).cpu(), acc)


def test_sm90_does_not_import_triton() -> None:
    """``sm90`` must stay importable where Triton is not: it imports the kernel module lazily."""
    import subprocess
    import sys

    code = "import sys, fp8_verify.numerics.sm90; print('triton' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stdout + out.stderr
