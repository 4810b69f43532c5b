"""Self-tests of the batched bit-exact check (the nightly's many problems per example): a batch judges
each of its problems as judging it alone would, a bug in one problem of a batch fails it and is reported
as that one problem, and the per-token kernel's M-dependent epilogue is emulated per problem."""

from __future__ import annotations

import pytest
import torch

from fp8_verify.judge.exact import CUTLASS, emulate
from fp8_verify.problem import BlockScaledProblem, ProblemSpec, build
from fp8_verify.strategies import batch_for
from fp8_verify.subject.registry import as_path
from fp8_verify.suite.properties import VerdictFailure, check_bit_exact
from fp8_verify.suite.records import Recorder

pytestmark = [pytest.mark.cpu, pytest.mark.selftest]


def _model(a, b, a_s, b_s, block, out_dtype):
    """A correct 'kernel': the emulation of the CUTLASS arithmetic (the CPU double's)."""
    return emulate(BlockScaledProblem(a, a_s, b, b_s, tuple(block), out_dtype))


def _wrong_when_first_negative(a, b, a_s, b_s, block, out_dtype):
    """Correct except on a problem whose first activation is negative: there one output is 1 ulp off."""
    out = _model(a, b, a_s, b_s, block, out_dtype)
    if float(a[0, 0].float()) < 0:
        out.view(torch.int16)[0, 0] ^= 1  # the last bit of the output's first element
    return out


SPEC = ProblemSpec(m=3, n=256, k=384, values="random", scales="narrow", seed=7)


def test_a_batch_counts_its_problems_and_passes_a_correct_kernel():
    spec, rows = batch_for(as_path(_model), SPEC, 16)
    assert rows == 3 and spec.m == 48
    rec = Recorder()
    check_bit_exact(as_path(_model), build(spec), rec, rows=rows)
    assert (rec.examples, rec.problems, rec.largest) == (1, 16, [3, 256, 384])


def test_a_bug_in_one_problem_of_a_batch_is_reported_as_that_problem():
    """The planted bug touches only the problems whose first activation is negative: the batch fails,
    and the failure's verdict is of one 3-row problem (the repro a single problem's), not of the batch."""
    spec, rows = batch_for(as_path(_wrong_when_first_negative), SPEC, 16)
    p = build(spec)
    firsts = p.a[::rows, 0].float()
    assert (firsts < 0).any() and (firsts >= 0).any()  # the batch mixes good and bad problems
    with pytest.raises(VerdictFailure) as e:
        check_bit_exact(as_path(_wrong_when_first_negative), p, Recorder(), rows=rows)
    assert e.value.verdict.shape == (rows, 256)
    assert e.value.verdict.mismatched == 1


def test_the_per_token_kernel_is_emulated_per_problem():
    """K <= 128 and N <= 128 go to the per-token kernel, whose epilogue order flips at M = 64 (swap_ab):
    a batch of small problems must be emulated with each problem's M, not the stack's."""
    p = build(ProblemSpec(m=40 * 32, n=128, k=128, values="random", scales="wide", seed=3))
    per_problem = torch.cat([emulate(p.with_m(slice(r, r + 40)), CUTLASS) for r in range(0, p.m, 40)])
    batched = emulate(p, CUTLASS, rows=40)
    assert torch.equal(batched.view(torch.int16), per_problem.view(torch.int16))
    assert not torch.equal(emulate(p, CUTLASS).view(torch.int16), per_problem.view(torch.int16))


def test_a_quantization_row_is_never_batched():
    class Quant:
        family = "quant"

    assert batch_for(Quant, SPEC, 64) == (SPEC, None)
    with pytest.raises(Exception, match="batch=0"):
        batch_for(as_path(_model), SPEC, 0)
