"""The input contract (fp8_verify/suite/contract.py): for inputs outside the canonical form, every path
either raises an error that names the problem or returns a result within the bound of the logical inputs.
Known upstream defects in these cells are the findings' signature-checked xfails (FINDINGS.md)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, note, settings
from hypothesis import strategies as st

from fp8_verify.problem import ProblemSpec, build
from fp8_verify.strategies import m_dims
from fp8_verify.subject.registry import GEMM
from fp8_verify.subject.releases import MRule
from fp8_verify.suite.contract import CASES, check_contract
from fp8_verify.suite.options import examples
from fp8_verify.suite.properties import device

pytestmark = pytest.mark.cpu


# Paths that trace vLLM's own function body (its torch.cond) compile a graph per case and layout (and per M
# when static) and, on 0.23, do not compile at all with M dynamic (FV-001): they are judged by the numeric
# properties; compiled paths around the registered ops are in the contract.
@pytest.mark.paths(traces=False, family=GEMM)
@pytest.mark.parametrize("m_mod", ["aligned", "unaligned"])
@pytest.mark.parametrize("case", [c for c in CASES if c != "canonical"])
@settings(max_examples=examples(6))
@given(data=st.data(), n=st.sampled_from([256, 384, 272]), k=st.sampled_from([256, 384, 640]))
def test_rejected_clearly_or_right(gemm, case, m_mod, data, n, k, fp8_record):
    """A non-canonical input is rejected with an error naming the problem, or computed correctly, for
    M % 4 == 0 and M % 4 != 0 (where vLLM's padding, on releases that pad, copies A and its scales first).
    N and K span at least two blocks, so that every layout case really differs from the canonical one."""
    if m_mod == "unaligned" and gemm.m_rule is MRule.MULTIPLE_OF_4:
        pytest.skip(f"{gemm.name} takes only M % 4 == 0 here (test_unaligned_m_is_rejected_or_right)")
    m = data.draw(m_dims(max_value=40, aligned=m_mod == "aligned"), label="m")
    seed = data.draw(st.integers(0, 2**16), label="seed")
    p = build(ProblemSpec(m=m, n=n, k=k, seed=seed), device())
    note(f"{case} on {gemm.name}: {p.describe()}")
    check_contract(CASES[case], gemm, p)
    fp8_record.example()


def test_a_triton_compile_error_is_never_a_clear_rejection():
    """Triton's compiler failing inside a kernel quotes the kernel's source ("dtype=tl.float32") and its
    own type conflict: it is an unclear error whatever words it contains (FV-012), while the same words
    from a check of the arguments name the problem."""
    from fp8_verify.suite.contract import outcome

    compile_error = type("CompilationError", (Exception,), {"__module__": "triton.compiler.errors"})

    class Raising:
        name = "raising"

        def __init__(self, exc: Exception) -> None:
            self.exc = exc

        def call(self, *args):
            raise self.exc

    p = build(ProblemSpec(m=8, n=256, k=256, seed=0), torch.device("cpu"))
    text = "at 67:23:\n    acc = tl.zeros((M, N), dtype=tl.float32)\nUnsupported rhs dtype fp8e4nv"
    got = outcome(CASES["a_fp16"], Raising(compile_error(text)), p)
    assert got.kind == "unclear-error" and got.detail.endswith("Unsupported rhs dtype fp8e4nv"), got
    assert (
        outcome(CASES["a_fp16"], Raising(ValueError("A must be float8, got float16")), p).kind == "rejected"
    )


def test_a_rejection_is_judged_on_its_message():
    """An error names the problem by its message, not by where it was raised: a message-less stable-ABI
    check located in scaled_mm_blockwise_sm90_fp8.cu ("block" in the file and function name) does not
    name a block-shape or a K/N-not-16 problem, while the same location with a message that says what
    was checked does. Python-style and C++ locations ("file.py:12", "(Triggered internally at
    /path/x.cpp:5)") do not count either."""
    from fp8_verify.suite.contract import message_of, outcome

    class Raising:
        name = "raising"

        def __init__(self, exc: Exception) -> None:
            self.exc = exc

        def call(self, *args):
            raise self.exc

    p = build(ProblemSpec(m=8, n=256, k=256, seed=0), torch.device("cpu"))
    where = (
        "cutlass_scaled_mm_blockwise_sm90_fp8, /workspace/csrc/libtorch_stable/quantization/w8a8/"
        "cutlass/c3x/scaled_mm_blockwise_sm90_fp8.cu:17, "
    )
    for case in ("k_not16", "n_not16", "block_64x128", "block_128x64"):
        got = outcome(CASES[case], Raising(RuntimeError(where)), p)
        assert got.kind == "unclear-error", (case, got)
    said = where + "b_scale_group_shape must be [128, 128]."
    assert outcome(CASES["block_64x128"], Raising(RuntimeError(said)), p).kind == "rejected"
    elsewhere = "check failed at /src/blockwise/group_stride.cpp:5 (see block_utils.py:12, line 40)"
    for case in ("block_64x128", "a_sliced", "a_scale_row_major"):
        assert outcome(CASES[case], Raising(ValueError(elsewhere)), p).kind == "unclear-error", case
    assert message_of(where) == ""
    assert message_of("dispatch_scaled_mm, /x/c3x/scaled_mm_helper.hpp, a scale must be 2d tensor.") == (
        "a scale must be 2d tensor."
    )
