"""Self-tests of the findings' signatures and of their strict xfails (fp8_verify/suite/findings.py, marks.py):
a finding's cell xfails only while *every* example fails the way the finding says -- the very wrong
answer it predicts, the bare assert where it names, the compiler's own complaint -- and a second bug in
the same cell fails the run. Each check here is shown to fail on a planted bug."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from hypothesis import settings

from fp8_verify.problem import ProblemSpec, build
from fp8_verify.subject.registry import CUTLASS_SM90, default
from fp8_verify.subject.vllm import load
from fp8_verify.suite.contract import CASES, ContractFailure, check_contract, predicted_output, same_bits
from fp8_verify.suite.findings import FINDINGS, ByCase, raised_in
from fp8_verify.suite.marks import PAST_A_KNOWN_FAILURE
from fp8_verify.suite.records import RECORD_KEY

pytestmark = [pytest.mark.cpu, pytest.mark.selftest]

CONTRACT_TESTS = Path(__file__).with_name("test_contract.py")
CELL = "test_rejected_clearly_or_right"


def _direct_path():
    """The path straight to the SM90 kernel (vLLM's cutlass_scaled_mm wrapper): no padding, not compiled."""
    spec = default().select(kernel=CUTLASS_SM90, compiled=False, pads_m=False, op=False)[0]
    path = default().get(spec.name)
    if not path.available:
        pytest.skip(path.reason)
    return path


def _padded_path():
    specs = default().select(kernel=CUTLASS_SM90, compiled=False, pads_m=True, op=True)
    path = next((p for p in map(default().get, (s.name for s in specs)) if p.available), None)
    if path is None:
        pytest.skip("no eager path that pads M in this vLLM")
    return path


def _failure(case: str, path, m: int = 8, n: int = 256, k: int = 384) -> ContractFailure:
    p = build(ProblemSpec(m=m, n=n, k=k, seed=3), torch.device("cpu"))
    with pytest.raises(ContractFailure) as info:
        check_contract(CASES[case], path, p)
    return info.value


class Raising:
    """A path that raises ``exc`` (from this file: not where any finding's error is raised)."""

    name = "raising"

    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def call(self, *args):
        raise self.exc


def _needs(fid: str) -> None:
    s = load()
    if not s.available or s.vllm_version not in FINDINGS[fid].releases:
        pytest.skip(f"{fid} is not in this vLLM ({s.vllm_version})")


# -- silent wrong answers: the predicted one, bit for bit --------------------------------------------


def test_a_silent_wrong_answer_must_be_the_predicted_one():
    """FV-004's signature holds for the kernel's own misreading of row-major activation scales, and not
    for an answer wrong another way: scaled by 2, or one element one ulp off."""
    _needs("FV-004")
    path = _direct_path()
    sig = FINDINGS["FV-004"].signature
    real = _failure("a_scale_row_major", path)
    assert "silent-wrong" in str(real) and sig.matches(real)
    assert same_bits(real.output, predicted_output(real))

    doubled = _failure("a_scale_row_major", replace(path, call=lambda *a: 2 * path.call(*a)))
    assert "silent-wrong" in str(doubled) and not sig.matches(doubled)

    def one_ulp_off(*a):
        out = path.call(*a)
        out.view(torch.int16)[0, 0] += 1
        return out

    nudged = _failure("a_scale_row_major", replace(path, call=one_ulp_off))
    assert not sig.matches(nudged)


def test_the_prediction_follows_the_padding():
    """A path that pads M copies A and its scales into fresh packed buffers first (M % 4 != 0): the
    prediction models that copy. Row-major activation scales are then read right (FV-004 is hidden by
    the padding), and the prediction is the path's correct answer -- not the misread of the unpadded
    kernel; B's padded row stride is misread all the same, and predicted (FV-003)."""
    _needs("FV-004")
    path = _padded_path()
    p = build(ProblemSpec(m=5, n=256, k=384, seed=3), torch.device("cpu"))
    args, _ = CASES["a_scale_row_major"].make(p)
    run = SimpleNamespace(case_args=args, output=path.call(*args), pads_m=True)
    assert same_bits(run.output, predicted_output(run))
    run.pads_m = False
    assert not same_bits(run.output, predicted_output(run))
    if load().vllm_version in FINDINGS["FV-003"].releases:
        assert FINDINGS["FV-003"].signature.matches(_failure("b_sliced", path, m=5))


# -- bare asserts: where they are raised ------------------------------------------------------------


@pytest.mark.parametrize(
    ("fid", "case"), [("FV-007", "out_fp32"), ("FV-010", "n_not16"), ("FV-010", "k_not16")]
)
def test_a_bare_assert_is_known_only_where_the_finding_says(fid, case):
    """vLLM's bare asserts match their finding; the same ``AssertionError()`` raised anywhere else (a new
    check, a planted wrapper) does not."""
    _needs(fid)
    sig = FINDINGS[fid].signature
    assert sig.matches(_failure(case, _direct_path()))
    elsewhere = _failure(case, Raising(AssertionError()))
    assert "AssertionError: " in str(elsewhere) and not sig.matches(elsewhere)


def test_the_triton_block_gemms_bare_asserts():
    """FV-011 on vLLM's own Triton block GEMM (its asserts fire before any kernel, so on a CPU too); the
    same text from another function is not FV-011."""
    _needs("FV-011")
    from vllm.model_executor.layers.quantization.utils.fp8_utils import w8a8_triton_block_scaled_mm

    triton_path = SimpleNamespace(name="triton", call=w8a8_triton_block_scaled_mm)
    sig = FINDINGS["FV-011"].signature
    for case in FINDINGS["FV-011"].cases:
        failure = _failure(case, triton_path)
        assert raised_in(failure.__cause__) == ("utils/fp8_utils.py", "w8a8_triton_block_scaled_mm")
        assert sig.matches(failure), failure
        assert not sig.matches(_failure(case, Raising(AssertionError())))


def test_message_less_checks_are_known_by_their_location():
    """FV-008: each case's check reports its own function and file; a message-less check located
    elsewhere is another defect."""
    _needs("FV-008")
    sig = FINDINGS["FV-008"].signature
    assert isinstance(sig, ByCase) and {c for c, _ in sig.signatures} == set(FINDINGS["FV-008"].cases)
    for case in FINDINGS["FV-008"].cases:
        assert sig.matches(_failure(case, _direct_path())), case
    other = RuntimeError(
        "cutlass_scaled_mm_blockwise_sm90_fp8, /csrc/c3x/scaled_mm_blockwise_sm90_fp8.cu:17, "
    )
    for case in FINDINGS["FV-008"].cases:
        assert not sig.matches(_failure(case, Raising(other)))
    moved = RuntimeError("dispatch_scaled_mm, /csrc/c3x/scaled_mm_helper.hpp:15, ")
    assert not sig.matches(_failure("b_col_major", Raising(moved)))


def test_triton_compile_errors_are_known_by_their_complaint():
    """FV-012 (seen on an H100; constructed here): each case's own complaint, as Triton 3.x words it
    (FINDINGS.md, docs/reports/h100-triton-contract-probe.txt), and not another case's or another one."""
    _needs("FV-012")
    compile_error = type("CompilationError", (Exception,), {"__module__": "triton.compiler.errors"})
    said = {
        "a_fp16": "at 67:23:\n        accumulator += tl.dot(a, b) * a_s[:, None] * b_s[None, :]\n"
        "                       ^\nUnsupported rhs dtype fp8e4nv",
        "scales_fp64": "at 58:4:\n    for k in range(0, tl.cdiv(K, BLOCK_SIZE_K)):\n    ^\n"
        "AssertionError(\"Loop-carried variable accumulator has initial type <['64', '128'], fp32> but is "
        "re-assigned to <['64', '128'], fp64> in loop! Please make sure that the type stays consistent.\")",
    }
    sig = FINDINGS["FV-012"].signature
    for case, text in said.items():
        assert sig.matches(_failure(case, Raising(compile_error(text)))), case
        other = next(t for c, t in said.items() if c != case)
        assert not sig.matches(_failure(case, Raising(compile_error(other)))), case
        assert not sig.matches(_failure(case, Raising(compile_error("at 1:1:\nout of resources"))))


# -- the strict xfail: every example, not the first ---------------------------------------------------


class Reports:
    def __init__(self) -> None:
        self.reports: list[pytest.TestReport] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.reports.append(report)


def _run_cell(request: pytest.FixtureRequest, nodeid: str) -> list[pytest.TestReport]:
    """Run one contract cell in this process (a subprocess that imports vLLM costs ~20 s here) under the
    ci profile, with this session's options; the Hypothesis profile is restored afterwards."""
    previous = settings.get_current_profile_name()
    args = [nodeid, "-q", "-rN", "-p", "no:cacheprovider", "--hypothesis-profile=ci"]
    for opt in ("--fp8-examples", "--fp8-require"):
        if request.config.getoption(opt) is not None:
            args.append(f"{opt}={request.config.getoption(opt)}")
    reports = Reports()
    try:
        pytest.main(args, plugins=[reports])
    finally:
        settings.load_profile(previous)
    return [r for r in reports.reports if r.nodeid.endswith(nodeid.rpartition("::")[2])]


def test_a_second_bug_in_a_finding_cell_fails_it(request, monkeypatch):
    """The review's plant: strided A with M >= 5 raises ``AssertionError()`` in vLLM's path. FV-003's
    cell used to xfail anyway (its first example, M = 4, failed as FV-003 says, and ended the test); now
    every example runs, the plant's failure is reported and the cell fails. Without the plant the same
    cell xfails after all its examples."""
    _needs("FV-003")
    from vllm import _custom_ops as ops

    nodeid = f"{CONTRACT_TESTS}::{CELL}[{_direct_path().name}-a_sliced-aligned]"
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)

    clean = _run_cell(request, nodeid)
    (call,) = [r for r in clean if r.when == "call"]
    assert call.skipped and "FV-003" in call.wasxfail, call.longreprtext
    (row,) = [v for r in clean for k, v in r.user_properties if k == RECORD_KEY]
    assert row["examples"] > 1, row  # all the examples ran, not just the first

    original = ops.cutlass_scaled_mm

    def planted(a, b, *args, **kwargs):
        if a.size(0) >= 5 and a.stride(0) != a.size(1):
            raise AssertionError()
        return original(a, b, *args, **kwargs)

    monkeypatch.setattr(ops, "cutlass_scaled_mm", planted)
    (call,) = [r for r in _run_cell(request, nodeid) if r.when == "call"]
    assert call.failed, call.longreprtext
    section = dict(call.sections).get("fp8-verify", "")
    assert "expected the failure of FV-003" in section and "as FV-003" in section, call.sections
    assert "AssertionError" in call.longreprtext


CAPPED = """
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st


@pytest.mark.paths(traces="_dynamic_padded_cutlass", dynamic_m=True)
@settings(
    max_examples={n},
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(x=st.integers())
def test_one_graph_for_every_m(gemm, x):
    with open("calls.txt", "a") as fh:
        fh.write(f"{x}\\n")
    raise AssertionError("3 graphs for M in [1, 5]; 1 expected (a guard on M or M % 4 recompiles)")
"""


@pytest.mark.parametrize("examples", [40, 3])
def test_a_known_failure_runs_a_fixed_number_of_examples_more(examples, tmp_path, monkeypatch):
    """A finding's cell runs PAST_A_KNOWN_FAILURE examples after its first known failure and stops (a
    known failure may cost far more than an example: FV-001 compiles afresh on every call), or ends with
    its examples if they are fewer; either way it xfails (FV-002's cell, in a generated file)."""
    _needs("FV-002")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["fp8_verify.plugin"]\n')
    test = tmp_path / f"test_capped_{examples}.py"  # a module name of its own: this process imports both
    test.write_text(CAPPED.replace("{n}", str(examples)))
    reports = Reports()
    previous = settings.get_current_profile_name()
    try:
        args = [str(test), "-q", "-rN", "-p", "no:cacheprovider"]
        pytest.main([*args, "--import-mode=importlib"], plugins=[reports])
    finally:
        settings.load_profile(previous)
    (call,) = [r for r in reports.reports if r.when == "call"]
    assert call.skipped and "FV-002" in call.wasxfail, call.longreprtext
    ran = (tmp_path / "calls.txt").read_text().split()
    assert len(ran) == min(examples, 1 + PAST_A_KNOWN_FAILURE), ran
