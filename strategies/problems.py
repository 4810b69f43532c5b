"""Whole problems: a :class:`~fp8_verify.problem.ProblemSpec` drawn from composable parts."""

from __future__ import annotations

from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from fp8_verify.problem import (
    QUANTIZED_SCALES,
    SCALE_REGIMES,
    VALUE_REGIMES,
    ProblemSpec,
    build,
    m_limit,
    max_m_for,
    memory_budget,
    problem_bytes,
    work_budget,
)

from .dims import m_dims, nk_dims
from .shapes import SHAPES, weight_shapes

SUPPORTED_BLOCKS = ((128, 128),)  # the only block shape the SM90 CUTLASS kernel takes


def _subset(name: str, chosen, allowed) -> tuple:
    chosen = tuple(allowed if chosen is None else chosen)
    bad = [c for c in chosen if c not in allowed]
    if bad or not chosen:
        raise InvalidArgument(f"{name}: {bad or 'empty'} not among {allowed}")
    return chosen


def block_shapes(shapes=SUPPORTED_BLOCKS) -> st.SearchStrategy[tuple[int, int]]:
    """Block shapes ``(bn, bk)``; the CUTLASS path supports (128, 128) only, others are for contract
    tests (``block_shapes([(128, 128), (64, 128), (128, 64)])``)."""
    shapes = tuple(tuple(s) for s in shapes)
    if not shapes or any(len(s) != 2 or min(s) < 1 for s in shapes):
        raise InvalidArgument(f"block_shapes: {shapes!r} must be non-empty (bn, bk) pairs of positive ints")
    return st.sampled_from(shapes)


def value_regimes(regimes=None) -> st.SearchStrategy[str]:
    """Value regimes (:mod:`fp8_verify.problem.build`); ``quantized`` first, so shrinking reaches it."""
    return st.sampled_from(_subset("value_regimes", regimes, VALUE_REGIMES))


def scale_regimes(regimes=None) -> st.SearchStrategy[str]:
    """Scale regimes for synthetic values (``quantized`` values take fp32 or ue8m0 scales instead)."""
    allowed = tuple(r for r in SCALE_REGIMES if r not in QUANTIZED_SCALES)
    return st.sampled_from(_subset("scale_regimes", regimes, allowed))


def out_dtypes(dtypes=("bfloat16", "float16")) -> st.SearchStrategy[str]:
    return st.sampled_from(_subset("out_dtypes", dtypes, ("bfloat16", "float16")))


REAL_SHAPE_SHARE = 10  # percent of draws offered a real checkpoint layer; measured 2026-12-06 (2,000 draws):
# 9.2% of specs a real layer under a GPU worker's budget (2.5 GB, 2^36 MACs), 8.7% under the CPU's 2^26 of that day


@st.composite
def weight_dims(
    draw,
    max_work: int | None = None,
    max_bytes: int | None = None,
    n_multiple: int = 16,
    k_multiple: int = 16,
) -> tuple[int, int]:
    """``(N, K)``: small dims with partial blocks (N <= 512, K <= 1024, multiples of ``n_multiple`` and
    ``k_multiple``) and, one draw in ten, a real checkpoint's layer (:mod:`strategies.shapes`) with those
    multiples whose single row fits ``max_work`` multiply-adds and ``max_bytes`` of memory (defaults:
    :func:`fp8_verify.problem.work_budget`, :func:`fp8_verify.problem.memory_budget`: a 57344 x 8192
    weight does not fit an eighth of an H100). The small dims are drawn first and the real shape only on
    top, so shrinking leaves the small ones."""
    n = draw(nk_dims(min_value=n_multiple, max_value=512, multiple_of=n_multiple))
    k = draw(nk_dims(min_value=k_multiple, max_value=1024, multiple_of=k_multiple))
    work = work_budget() if max_work is None else max_work
    budget = memory_budget() if max_bytes is None else max_bytes
    fits = [
        s
        for s in SHAPES
        if s.n % n_multiple == 0
        and s.k % k_multiple == 0
        and s.n * s.k <= work
        and problem_bytes(1, s.n, s.k) <= budget
    ]
    if fits and draw(st.integers(0, 99)) >= 100 - REAL_SHAPE_SHARE:
        n, k = draw(weight_shapes(shapes=fits))
    return n, k


@st.composite
def problem_specs(
    draw,
    m: st.SearchStrategy[int] | None = None,
    n: st.SearchStrategy[int] | None = None,
    k: st.SearchStrategy[int] | None = None,
    block: st.SearchStrategy[tuple[int, int]] | None = None,
    values: st.SearchStrategy[str] | None = None,
    scales: st.SearchStrategy[str] | None = None,
    out_dtype: st.SearchStrategy[str] | None = None,
    weights: st.SearchStrategy[tuple[int, int]] | None = None,
    max_bytes: int | None = None,
    max_work: int | None = None,
) -> ProblemSpec:
    """A :class:`ProblemSpec`; every part can be replaced by a strategy of its own.

    ``n`` and ``k`` draw the weight's dims independently; without them ``weights`` draws ``(N, K)``
    together (default :func:`weight_dims`: small dims, and real checkpoints' layers). M (default
    :func:`m_dims` up to :func:`fp8_verify.problem.m_limit`: 4096 on a GPU, past one wave of output tiles) is then capped, keeping its
    residue mod 4, so that the problem fits ``max_bytes`` of memory and ``max_work`` multiply-adds
    (defaults: :func:`fp8_verify.problem.memory_budget`, :func:`fp8_verify.problem.work_budget`): a run
    on a small GPU or on the CPU draws smaller problems, not out-of-memory errors or hour-long examples.

    >>> problem_specs(m=st.just(5)).example().m
    5
    """
    for name, s in (
        ("m", m),
        ("n", n),
        ("k", k),
        ("block", block),
        ("values", values),
        ("scales", scales),
        ("out_dtype", out_dtype),
        ("weights", weights),
    ):
        if s is not None and not isinstance(s, st.SearchStrategy):
            raise InvalidArgument(f"problem_specs: {name}={s!r} must be a Hypothesis strategy")
    for name, x in (("max_bytes", max_bytes), ("max_work", max_work)):
        if x is not None and (not isinstance(x, int) or x <= 0):
            raise InvalidArgument(f"problem_specs: {name}={x!r} must be a positive int")
    if weights is not None and (n is not None or k is not None):
        raise InvalidArgument("problem_specs: give weights=(N, K) pairs, or n and k, not both")
    v = draw(value_regimes() if values is None else values)
    if v == "quantized":
        sc = draw(st.sampled_from(QUANTIZED_SCALES))
        spread = draw(st.sampled_from((0, 0, 3)))
    else:
        sc = draw(scale_regimes() if scales is None else scales)
        spread = 0
    if n is None and k is None:
        n_, k_ = draw(weight_dims(max_work, max_bytes) if weights is None else weights)
    else:
        n_ = draw(nk_dims(max_value=512) if n is None else n)
        k_ = draw(nk_dims(max_value=1024) if k is None else k)
    m_ = draw(m_dims(max_value=m_limit()) if m is None else m)
    cap = max_m_for(n_, k_, max_bytes, max_work)
    if m_ > cap:  # keep M's residue mod 4; an aligned M stays aligned even past a cap under 4
        m_ = cap - (cap - m_) % 4 if cap >= 4 else (4 if m_ % 4 == 0 else min(m_ % 4, cap))
    return ProblemSpec(
        m=m_,
        n=n_,
        k=k_,
        block=draw(block_shapes() if block is None else block),
        out_dtype=draw(out_dtypes() if out_dtype is None else out_dtype),
        values=v,
        scales=sc,
        row_spread=spread,
        seed=draw(st.integers(0, 2**32 - 1)),
    )


def problems(device="cpu", **kwargs):
    """Problems built on ``device`` from :func:`problem_specs` (``kwargs`` go there)."""
    return problem_specs(**kwargs).map(lambda spec: build(spec, device))
