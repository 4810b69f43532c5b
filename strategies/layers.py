"""Layer problems and the problem strategy of any registry row: a property asks :func:`specs_for` for what
to draw, and the row's facts (its family, its kernel's N/K multiples and output dtypes, its M rule) shape
the draw -- no property names a kernel."""

from __future__ import annotations

from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from fp8_verify.problem import build, max_m_for, memory_budget, problem_bytes, work_budget
from fp8_verify.problem.layer import ACT_DTYPES, ACT_REGIMES, WEIGHT_REGIMES, LayerSpec, build_layer

from .dims import m_dims, m_dims_for, nk_dims
from .problems import problem_specs, weight_dims
from .shapes import SHAPES, weight_shapes

GROUP = 128  # vLLM's activation quantization groups: a layer's K is a multiple of them
REAL_SHAPE_SHARE = 10  # percent of drawn layers that are a real checkpoint's layer (where one fits)


@st.composite
def layer_weight_dims(
    draw, n_multiple: int = 16, max_n: int = 512, max_k: int = 1024, max_work: int | None = None
) -> tuple[int, int]:
    """``(N, K)`` of a layer: N a multiple of ``n_multiple``, K of 128 (the quantization group); one draw
    in ten a real checkpoint's layer that fits the budgets and the multiples."""
    if n_multiple < 1 or n_multiple > max_n:
        raise InvalidArgument(f"layer_weight_dims: n_multiple={n_multiple} must be in [1, {max_n}]")
    n = draw(nk_dims(min_value=n_multiple, max_value=max_n, multiple_of=n_multiple))
    k = draw(nk_dims(min_value=GROUP, max_value=max_k, multiple_of=GROUP))
    work = work_budget() if max_work is None else max_work
    fits = [
        s
        for s in SHAPES
        if s.n % n_multiple == 0
        and s.k % GROUP == 0
        and s.n * s.k <= work
        and problem_bytes(1, s.n, s.k) <= memory_budget()
    ]
    if fits and draw(st.integers(0, 99)) >= 100 - REAL_SHAPE_SHARE:
        n, k = draw(weight_shapes(shapes=fits))
    return n, k


@st.composite
def layer_specs(
    draw,
    m: st.SearchStrategy[int] | None = None,
    weights: st.SearchStrategy[tuple[int, int]] | None = None,
    out_dtypes: tuple[str, ...] = ("bfloat16", "float16"),
    act_dtypes: tuple[str, ...] = ("bfloat16",),
) -> LayerSpec:
    """A :class:`~fp8_verify.problem.layer.LayerSpec`: M (capped to the budgets, keeping M % 4), the
    weight's (N, K), the activation and weight regimes, the output dtype and a seed.

    >>> layer_specs(m=st.just(3)).example().m
    3
    """
    if not out_dtypes or not set(out_dtypes) <= {"bfloat16", "float16"}:
        raise InvalidArgument(f"layer_specs: out_dtypes={out_dtypes!r} must be a subset of bfloat16, float16")
    if not act_dtypes or not set(act_dtypes) <= set(ACT_DTYPES):
        raise InvalidArgument(f"layer_specs: act_dtypes={act_dtypes!r} must be a subset of {ACT_DTYPES}")
    n, k = draw(layer_weight_dims() if weights is None else weights)
    m_ = draw(m_dims(max_value=4096) if m is None else m)
    cap = max_m_for(n, k)
    if m_ > cap:
        m_ = cap - (cap - m_) % 4 if cap >= 4 else min(m_, cap)
    return LayerSpec(
        m=m_,
        n=n,
        k=k,
        out_dtype=draw(st.sampled_from(out_dtypes)),
        act=draw(st.sampled_from(ACT_REGIMES)),
        act_dtype=draw(st.sampled_from(act_dtypes)),
        weights=draw(st.sampled_from(WEIGHT_REGIMES)),
        row_spread=draw(st.sampled_from((0, 0, 3))),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


def specs_for(path, max_m: int = 4096, **kwargs) -> st.SearchStrategy:
    """The problem specs a registry row takes (:class:`fp8_verify.subject.registry.GemmPath`): a GEMM row
    its kernel's M rule, N/K multiples and output dtypes; a layer or quantization row layers whose N is
    a multiple of its kernel's. ``kwargs`` go to :func:`problem_specs` / :func:`layer_specs`."""
    rules = path.rules
    if path.family == "gemm":
        kwargs.setdefault("m", m_dims_for(path, max_value=max_m))
        kwargs.setdefault("weights", weight_dims(n_multiple=rules.n_multiple, k_multiple=rules.k_multiple))
        kwargs.setdefault("out_dtype", st.sampled_from(rules.out_dtypes))
        return problem_specs(**kwargs)
    kwargs.setdefault("m", m_dims(max_value=max_m))
    kwargs.setdefault("weights", layer_weight_dims(n_multiple=rules.n_multiple))
    kwargs.setdefault("out_dtypes", rules.out_dtypes)
    return layer_specs(**kwargs)


def build_for(spec, device):
    """A spec of either kind built into its problem on ``device``."""
    return build_layer(spec, device) if isinstance(spec, LayerSpec) else build(spec, device)
