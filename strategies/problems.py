"""Whole problems: a :class:`~fp8_verify.make.ProblemSpec` drawn from composable parts."""

from __future__ import annotations

from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from fp8_verify.make import QUANTIZED_SCALES, SCALE_REGIMES, VALUE_REGIMES, ProblemSpec, make, max_m_for

from .dims import m_dims, nk_dims

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
    """Value regimes (see :mod:`fp8_verify.make`); ``quantized`` first, so it is what shrinking reaches."""
    return st.sampled_from(_subset("value_regimes", regimes, VALUE_REGIMES))


def scale_regimes(regimes=None) -> st.SearchStrategy[str]:
    """Scale regimes for synthetic values (``quantized`` values take fp32 or ue8m0 scales instead)."""
    allowed = tuple(r for r in SCALE_REGIMES if r not in QUANTIZED_SCALES)
    return st.sampled_from(_subset("scale_regimes", regimes, allowed))


def out_dtypes(dtypes=("bfloat16", "float16")) -> st.SearchStrategy[str]:
    return st.sampled_from(_subset("out_dtypes", dtypes, ("bfloat16", "float16")))


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
    max_bytes: int | None = None,
) -> ProblemSpec:
    """A :class:`ProblemSpec`; every part can be replaced by a strategy of its own.

    M is capped so that the problem and its check fit ``max_bytes`` (default: a quarter of the free
    GPU memory, or ``$FP8_VERIFY_MAX_PROBLEM_BYTES``; see :func:`fp8_verify.make.memory_budget`), so
    a nightly run with large dimensions on a busy or small GPU draws smaller problems, not OOM errors.

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
    ):
        if s is not None and not isinstance(s, st.SearchStrategy):
            raise InvalidArgument(f"problem_specs: {name}={s!r} must be a Hypothesis strategy")
    if max_bytes is not None and (not isinstance(max_bytes, int) or max_bytes <= 0):
        raise InvalidArgument(f"problem_specs: max_bytes={max_bytes!r} must be a positive int")
    v = draw(value_regimes() if values is None else values)
    if v == "quantized":
        sc = draw(st.sampled_from(QUANTIZED_SCALES))
        spread = draw(st.sampled_from((0, 0, 3)))
    else:
        sc = draw(scale_regimes() if scales is None else scales)
        spread = 0
    n_, k_ = (
        draw(nk_dims(max_value=512) if n is None else n),
        draw(nk_dims(max_value=1024) if k is None else k),
    )
    m_ = draw(m_dims() if m is None else m)
    cap = max_m_for(n_, k_, max_bytes)
    if m_ > cap:  # shapes are capped by free memory: keep M's residue mod 4 where the cap allows
        m_ = max(1, cap - (cap - m_) % 4) if cap >= 4 else cap
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
    return problem_specs(**kwargs).map(lambda spec: make(spec, device))
