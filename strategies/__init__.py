"""Hypothesis strategies for block-scaled FP8 GEMM problems.

Small pieces that compose: :func:`m_dims` / :func:`nk_dims` draw dimensions with the edges weighted in,
:func:`weight_shapes` the (N, K) of real checkpoints' layers and :func:`weight_dims` a mix of both;
:func:`block_shapes`, :func:`value_regimes`, :func:`scale_regimes` and :func:`out_dtypes` draw the rest,
:func:`problem_specs` puts them together and :func:`problems` builds tensors from a spec.

>>> from hypothesis import given
>>> @given(problems(m=m_dims(max_value=64), device="cpu"))
... def test_something(p): ...
"""

from .dims import m_dims, m_dims_for, nk_dims
from .layers import batch_for, build_for, layer_specs, layer_weight_dims, specs_for
from .problems import (
    block_shapes,
    out_dtypes,
    problem_specs,
    problems,
    scale_regimes,
    value_regimes,
    weight_dims,
)
from .shapes import SHAPES, Shape, weight_shapes

__all__ = [
    "SHAPES",
    "Shape",
    "batch_for",
    "block_shapes",
    "build_for",
    "layer_specs",
    "layer_weight_dims",
    "m_dims",
    "m_dims_for",
    "nk_dims",
    "out_dtypes",
    "problem_specs",
    "problems",
    "scale_regimes",
    "specs_for",
    "value_regimes",
    "weight_dims",
    "weight_shapes",
]
