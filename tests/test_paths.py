"""The core properties: every row agrees with the exact reference within the FP8 bound (a layer's through
the GEMM problem its quantization should form, a quantization's by the quantization bound), every GEMM
path that ends in the SM90 kernel gives that kernel's bits, and a path whose kernel takes only some M says
so clearly for the others. Each runs on every row of the registry that has the facts it needs (the
``gemm`` fixture; fp8_verify/suite/selection.py), drawing what the row takes (``specs_for``: its family,
its kernel's N/K multiples and output dtypes, its M rule)."""

from __future__ import annotations

import pytest
from hypothesis import given, note
from hypothesis import strategies as st

from fp8_verify.problem import build
from fp8_verify.strategies import build_for, m_dims, m_dims_for, problem_specs, specs_for
from fp8_verify.subject.registry import CUTLASS_SM90, GEMM, LAYER
from fp8_verify.suite.properties import (
    WORDS_M4,
    assert_same_bits,
    check_within_bound,
    device,
    kernel_alone,
    rejects_clearly,
    run_or_exception,
)

pytestmark = pytest.mark.cpu


@pytest.mark.sharded
@given(data=st.data())
def test_within_bound(gemm, data, fp8_record):
    """The path's output is within the per-element FP8 bound of the float64 reference, for every M its
    kernel takes on this release."""
    spec = data.draw(specs_for(gemm), label="spec")
    p = build_for(spec, device(gemm))
    note(p.describe())
    check_within_bound(gemm, p, fp8_record)


@pytest.mark.paths(kernel=CUTLASS_SM90, family=GEMM)
@pytest.mark.sharded
@given(data=st.data())
def test_agrees_with_kernel(gemm, data, fp8_record):
    """A path that ends in the SM90 kernel gives the kernel's own bits: padding, slicing, the op
    registration and compilation change nothing (``kernel_alone``: the kernel on a packed copy)."""
    spec = data.draw(problem_specs(m=m_dims_for(gemm)), label="spec")
    p = build(spec, device(gemm))
    note(p.describe())
    out = gemm.run(p)
    fp8_record.example()
    assert_same_bits(out, kernel_alone(p), f"{gemm.name} vs the kernel alone on {p.describe()}")


@pytest.mark.paths(restricts_m=True)
@pytest.mark.sharded
@given(data=st.data())
def test_unaligned_m_is_rejected_or_right(gemm, data, fp8_record):
    """A path whose kernel takes only M % 4 == 0 (and does not pad) must, for other M, raise an error
    that says so -- or be right."""
    spec = data.draw(problem_specs(m=m_dims(max_value=256, aligned=False)), label="spec")
    p = build(spec, device(gemm))
    note(p.describe())
    _out, exc = run_or_exception(gemm, p)
    if exc is None:
        check_within_bound(gemm, p, fp8_record)
        return
    fp8_record.example()
    assert rejects_clearly(exc, *WORDS_M4), (
        f"{gemm.name} rejected M={p.m} with an error that does not name the problem: {exc!r}"
    )


@pytest.mark.paths(compiled=False, families=(GEMM, LAYER))
@pytest.mark.sharded
@given(data=st.data())
def test_output_is_fresh_and_whole(gemm, data, fp8_record):
    """The output has exactly M rows, is contiguous, and owns no storage shared with the inputs."""
    spec = data.draw(specs_for(gemm, max_m=64), label="spec")
    p = build_for(spec, device(gemm))
    out = gemm.run(p)
    fp8_record.example()
    assert out.shape == (p.m, p.n) and out.dtype == p.out_dtype, (gemm.name, out.shape, out.dtype)
    assert out.is_contiguous(), f"{gemm.name}: output strides {out.stride()} are not contiguous"
    for t in p.args():
        assert out.untyped_storage().data_ptr() != t.untyped_storage().data_ptr(), gemm.name
