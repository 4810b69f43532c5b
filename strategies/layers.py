"""Layer problems and the problem strategy of any registry row: a property asks :func:`specs_for` for what
to draw, and the row's facts (its family, its kernel's N/K multiples and output dtypes, its M rule) shape
the draw -- no property names a kernel."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from fp8_verify.problem import build, m_limit, max_m_for
from fp8_verify.problem.layer import ACT_DTYPES, ACT_REGIMES, WEIGHT_REGIMES, LayerSpec, build_layer

from .dims import m_dims, m_dims_for
from .problems import problem_specs, weight_dims

GROUP = 128  # vLLM's activation quantization groups: a layer's K is a multiple of them


def layer_weight_dims(
    n_multiple: int = 16, max_work: int | None = None
) -> st.SearchStrategy[tuple[int, int]]:
    """``(N, K)`` of a layer: :func:`~.problems.weight_dims` with N a multiple of ``n_multiple`` and K of
    128 (the quantization group): small dims, and one draw in ten a real checkpoint's layer that fits."""
    if n_multiple < 1 or n_multiple > 512:
        raise InvalidArgument(f"layer_weight_dims: n_multiple={n_multiple} must be in [1, 512]")
    return weight_dims(max_work=max_work, n_multiple=n_multiple, k_multiple=GROUP)


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
    m_ = draw(m_dims(max_value=m_limit()) if m is None else m)
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


def specs_for(path, max_m: int | None = None, **kwargs) -> st.SearchStrategy:
    """The problem specs a registry row takes (:class:`fp8_verify.subject.registry.GemmPath`): a GEMM row
    its kernel's M rule, N/K multiples and output dtypes; a layer or quantization row layers whose N is
    a multiple of its kernel's. ``kwargs`` go to :func:`problem_specs` / :func:`layer_specs`."""
    rules = path.rules
    max_m = m_limit() if max_m is None else max_m
    if path.family == "gemm":
        kwargs.setdefault("m", m_dims_for(path, max_value=max_m))
        kwargs.setdefault("weights", weight_dims(n_multiple=rules.n_multiple, k_multiple=rules.k_multiple))
        kwargs.setdefault("out_dtype", st.sampled_from(rules.out_dtypes))
        return problem_specs(**kwargs)
    kwargs.setdefault("m", m_dims(max_value=max_m))
    kwargs.setdefault("weights", layer_weight_dims(n_multiple=rules.n_multiple))
    kwargs.setdefault("out_dtypes", rules.out_dtypes)
    return layer_specs(**kwargs)


def batch_for(path, spec, batch: int) -> tuple:
    """``(spec, rows)``: ``spec`` grown into a batch of up to ``batch`` problems of its shape that share the
    weight -- the spec with ``batch`` times its M, whose rows are drawn independently, so that each slice
    of ``rows`` rows is a problem of its own with fresh activations -- as many as the budgets allow
    (:func:`fp8_verify.problem.max_m_for`); ``rows`` None where that is one problem, or for a
    quantization row (judged on its own outputs, not a GEMM's). For the bit-exact property's ``rows``
    (:func:`fp8_verify.suite.properties.check_bit_exact`).

    >>> from fp8_verify.problem import ProblemSpec
    >>> class Row: family = "gemm"
    >>> batch_for(Row, ProblemSpec(m=3, n=256, k=256), 8)
    (ProblemSpec(m=24, n=256, k=256, block=(128, 128), out_dtype='bfloat16', values='quantized', scales='fp32', row_spread=0, seed=0), 3)
    """
    if batch < 1:
        raise InvalidArgument(f"batch_for: batch={batch!r} must be >= 1")
    if batch == 1 or path.family not in ("gemm", "layer"):
        return spec, None
    count = min(batch, max_m_for(spec.n, spec.k) // spec.m)
    return (replace(spec, m=spec.m * count), spec.m) if count > 1 else (spec, None)


def build_for(spec, device):
    """A spec of either kind built into its problem on ``device``."""
    return build_layer(spec, device) if isinstance(spec, LayerSpec) else build(spec, device)
