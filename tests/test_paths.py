"""The core properties: every path agrees with the exact reference within the FP8 error bound, and the
paths agree with one another bit for bit where they run the same kernel on the same data."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, note
from hypothesis import strategies as st

from fp8_verify.make import make
from fp8_verify.paths import PATH_NAMES
from fp8_verify.testing import (
    check_within_bound,
    device,
    rejects_clearly,
    require_path,
    run_or_exception,
)
from fp8_verify.verdict import bitwise_diff
from strategies import m_dims, problem_specs

EAGER = ("bypass", "padded", "dynamic_eager")
pytestmark = pytest.mark.cpu


@pytest.mark.parametrize("path", [p for p in PATH_NAMES if p != "dynamic_compiled"])
@given(spec=problem_specs())
def test_within_bound(path, spec, fp8_record):
    """Each path's output is within the per-element FP8 bound of the float64 reference."""
    gemm = require_path(path)
    if gemm.needs_aligned_m() and spec.m % 4:
        spec = replace(spec, m=spec.m + 4 - spec.m % 4)
    p = make(spec, device())
    note(p.describe())
    check_within_bound(gemm, p, fp8_record)


@pytest.mark.finding("FV-001")
@pytest.mark.compiled
@pytest.mark.parametrize("path", ["dynamic_compiled"])
@given(spec=problem_specs(m=m_dims(max_value=256)))
def test_compiled_cond_within_bound(path, spec, fp8_record):
    """``_dynamic_padded_cutlass`` traced by torch.compile (its torch.cond) is within the bound."""
    p = make(spec, device())
    note(p.describe())
    check_within_bound(require_path(path), p, fp8_record)


@pytest.mark.parametrize("path", ["bypass"])
@given(spec=problem_specs(m=m_dims(max_value=256, aligned=False)))
def test_unaligned_m_is_rejected_or_right(path, spec, fp8_record):
    """The bypass cannot pad: for M % 4 != 0 it must raise an error that says so, or be right."""
    gemm = require_path(path)
    p = make(spec, device())
    note(p.describe())
    _out, exc = run_or_exception(gemm, p)
    if exc is not None:
        fp8_record.example()
        assert rejects_clearly(exc, "divisible by 4", "misaligned", "align", "m % 4"), (
            f"bypass rejected M={p.m} with an error that does not name the problem: {exc!r}"
        )
    else:
        check_within_bound(gemm, p, fp8_record)


@given(spec=problem_specs(), compiled=st.booleans())
def test_paths_agree_bitwise(spec, compiled, fp8_record):
    """Paths that run the same kernel on the same rows give the same bits: ``dynamic_eager`` equals
    ``padded`` always and ``bypass`` when M % 4 == 0; the registered op in a compiled graph equals it
    eagerly."""
    p = make(spec, device())
    note(p.describe())
    names = [*EAGER, "compiled_op"] if compiled else list(EAGER)
    outs = {}
    for name in names:
        gemm = require_path(name)
        if gemm.needs_aligned_m() and p.m % 4:
            continue
        outs[name] = gemm.run(p)
    fp8_record.example()
    base = outs.pop("dynamic_eager")
    for name, out in outs.items():
        diff = bitwise_diff(out, base)
        assert diff is None, f"{name} vs dynamic_eager on {p.describe()}: {diff}"


@given(spec=problem_specs(m=m_dims(max_value=64)))
def test_output_is_fresh_and_whole(spec, fp8_record):
    """The output has exactly M rows, is contiguous, and owns no storage shared with the inputs."""
    p = make(spec, device())
    for name in EAGER:
        gemm = require_path(name)
        if gemm.needs_aligned_m() and p.m % 4:
            continue
        out = gemm.run(p)
        assert out.shape == (p.m, p.n) and out.dtype == p.out_dtype, (name, out.shape, out.dtype)
        assert out.is_contiguous(), f"{name}: output strides {out.stride()} are not contiguous"
        for t in p.args():
            assert out.untyped_storage().data_ptr() != t.untyped_storage().data_ptr(), name
    fp8_record.example()
