"""The input contract (fp8_verify/contract.py): for inputs outside the canonical form, every path either
raises an error that names the problem or returns a result within the bound of the logical inputs."""

from __future__ import annotations

import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st

from fp8_verify.contract import CASES, outcome
from fp8_verify.make import ProblemSpec, make
from fp8_verify.paths import PATH_NAMES
from fp8_verify.plugin import examples
from fp8_verify.testing import device, require_path
from strategies import m_dims

pytestmark = pytest.mark.cpu

EAGER_AND_OP = [p for p in PATH_NAMES if p != "dynamic_compiled"]  # FV-001: it does not compile


@pytest.mark.finding("FV-003")
@pytest.mark.finding("FV-004")
@pytest.mark.finding("FV-005")
@pytest.mark.finding("FV-006")
@pytest.mark.finding("FV-007")
@pytest.mark.finding("FV-008")
@pytest.mark.finding("FV-009")
@pytest.mark.finding("FV-010")
@pytest.mark.parametrize("m_mod", ["aligned", "unaligned"])
@pytest.mark.parametrize("path", EAGER_AND_OP)
@pytest.mark.parametrize("case", [c for c in CASES if c != "canonical"])
@settings(max_examples=examples(6))
@given(
    m=m_dims(max_value=40),
    n=st.sampled_from([256, 384, 272]),
    k=st.sampled_from([256, 384, 640]),
    seed=st.integers(0, 2**16),
)
def test_rejected_clearly_or_right(case, path, m_mod, m, n, k, seed, fp8_record):
    """A non-canonical input is rejected with an error naming the problem, or computed correctly, for
    M % 4 == 0 (the kernel sees the input as given) and M % 4 != 0 (vLLM pads it first). N and K span
    at least two blocks, so that every layout case really differs from the canonical one."""
    gemm = require_path(path)
    if gemm.needs_aligned_m() and m_mod == "unaligned":
        pytest.skip("the bypass takes only M % 4 == 0 (test_unaligned_m_is_rejected_or_right)")
    if (m % 4 == 0) != (m_mod == "aligned"):
        m = m + (4 - m % 4 if m_mod == "aligned" else 1)
    p = make(ProblemSpec(m=m, n=n, k=k, seed=seed), device())
    note(f"{case} on {path}: {p.describe()}")
    res = outcome(CASES[case], gemm, p)
    fp8_record.example()
    assert res.ok(), f"{path} on {case} ({CASES[case].description}), {p.describe()}: {res.kind}: {res.detail}"
