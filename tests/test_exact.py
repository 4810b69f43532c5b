"""The bit-exact property: every path that ends in the SM90 CUTLASS kernel gives, bit for bit, what that
kernel's arithmetic gives -- Hopper's wgmma modelled as MMA-Sim does, promotion to fp32 every 128 K with
one fma, round to nearest at the end (fp8_verify/numerics, docs/numerics.md). On Hopper this holds the
real kernel to its emulation; on the CPU double, whose arithmetic is that emulation, it holds vLLM's
routing (padding, slicing, the op registrations, compilation) to the kernel's bits."""

from __future__ import annotations

import pytest
from hypothesis import given, note
from hypothesis import strategies as st

from fp8_verify.problem import build
from fp8_verify.subject.registry import CUTLASS_SM90
from fp8_verify.suite.properties import check_bit_exact, device
from strategies import m_dims_for, problem_specs

pytestmark = pytest.mark.cpu


@pytest.mark.paths(kernel=CUTLASS_SM90)
@pytest.mark.sharded
@given(data=st.data())
def test_bit_exact(gemm, data, fp8_record):
    """The path's output equals the emulation of the SM90 kernel bit for bit (NaN equal to NaN), for
    every M its kernel takes, real checkpoints' shapes included."""
    spec = data.draw(problem_specs(m=m_dims_for(gemm)), label="spec")
    p = build(spec, device())
    note(p.describe())
    check_bit_exact(gemm, p, fp8_record)
