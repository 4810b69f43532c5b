"""The bit-exact property: every row whose kernel arithmetic is known gives, bit for bit, what that
arithmetic gives -- Hopper's wgmma modelled as MMA-Sim does, promotion to fp32 every 128 K (one fma for
CUTLASS and DeepGEMM, the scales one after the other for vLLM's Triton GEMM), round to nearest at the end
(fp8_verify/numerics, fp8_verify/subject/kernels.py, docs/numerics.md); a layer composed with the exact
emulation of vLLM's quantization, a quantization row against that emulation alone.

What each tier tests: on Hopper this holds the real kernels to their emulations. On the CPU doubles,
whose arithmetic *is* those emulations, a GEMM row compares the emulation with itself through vLLM's
routing: it holds vLLM's Python (padding, slicing, op registrations, compilation, the layer's weight
processing and quantization calls) to the kernel's bits, not the arithmetic. The arithmetic's evidence on
the CPU is the replayed hardware corpus (tests/test_corpus.py) and MMA-Sim (tests/test_numerics.py)."""

from __future__ import annotations

import pytest
from hypothesis import given, note
from hypothesis import strategies as st

from fp8_verify.strategies import batch_for, build_for, specs_for
from fp8_verify.suite.properties import check_bit_exact, device

pytestmark = pytest.mark.cpu


@pytest.mark.paths(exact=True)
@pytest.mark.sharded
@given(data=st.data())
def test_bit_exact(gemm, data, fp8_record):
    """The row's output equals the emulation of its kernel's arithmetic bit for bit (NaN equal to NaN),
    for every M its kernel takes, real checkpoints' shapes included. Under the nightly profile one
    example checks a batch of problems of the drawn shape (``--fp8-batch``); a failure names one."""
    spec, rows = batch_for(gemm, data.draw(specs_for(gemm), label="spec"), fp8_record.batch)
    p = build_for(spec, device(gemm))
    note(p.describe() + (f", a batch of {p.m // rows} problems of M={rows}" if rows else ""))
    check_bit_exact(gemm, p, fp8_record, rows=rows)
