"""fp8-verify: property-based correctness checks for vLLM's FP8 block-scaled GEMM paths.

The pipeline, one folder per stage: :mod:`fp8_verify.strategies` (the repository's ``strategies/``) draws
a problem spec; :mod:`fp8_verify.problem` builds the tensors; :mod:`fp8_verify.subject` finds the paths
through the installed vLLM (the registry) and runs them; :mod:`fp8_verify.judge` gives the exact
reference, the FP8 error bound, the bit-exact emulation and the verdicts; :mod:`fp8_verify.suite` is the
pytest plugin that records them; :mod:`fp8_verify.report` turns the records into summaries, the JSON
report and failure artifacts. :mod:`fp8_verify.numerics` models the Hopper tensor cores' arithmetic. The
tooling (bench, mutants, calibration, tables, matrix) is in :mod:`fp8_verify.tools`; nothing outside it
imports it.

The public API is importable from here (lazily, so ``import fp8_verify`` stays cheap)::

    from hypothesis import given
    from fp8_verify import Registry, build, check_within_bound, device, problem_specs

    @given(problem_specs())
    def test_every_path(spec):
        for gemm in Registry():
            if gemm.available and gemm.m_rule.admits(spec.m):
                check_within_bound(gemm, build(spec, device()))
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_API = {
    # strategies: what Hypothesis draws
    "problem_specs": "fp8_verify.strategies",
    "m_dims": "fp8_verify.strategies",
    "nk_dims": "fp8_verify.strategies",
    "weight_dims": "fp8_verify.strategies",
    "weight_shapes": "fp8_verify.strategies",
    "block_shapes": "fp8_verify.strategies",
    "value_regimes": "fp8_verify.strategies",
    "scale_regimes": "fp8_verify.strategies",
    "out_dtypes": "fp8_verify.strategies",
    # problems
    "ProblemSpec": "fp8_verify.problem",
    "BlockScaledProblem": "fp8_verify.problem",
    "build": "fp8_verify.problem",
    "quantize": "fp8_verify.problem",
    # the reference, the bound, the verdicts
    "reference": "fp8_verify.judge.reference",
    "oracle": "fp8_verify.judge.bound",
    "ErrorModel": "fp8_verify.judge.bound",
    "judge": "fp8_verify.judge.verdict",
    "Verdict": "fp8_verify.judge.verdict",
    "emulate": "fp8_verify.judge.exact",
    "judge_exact": "fp8_verify.judge.exact",
    "ExactVerdict": "fp8_verify.judge.exact",
    # the paths
    "PATHS": "fp8_verify.subject.registry",
    "PathSpec": "fp8_verify.subject.registry",
    "GemmPath": "fp8_verify.subject.registry",
    "Registry": "fp8_verify.subject.registry",
    "get": "fp8_verify.subject.registry",
    "external": "fp8_verify.subject.registry",
    "load": "fp8_verify.subject.vllm",
    # the checks properties make
    "check_within_bound": "fp8_verify.suite.properties",
    "check_bit_exact": "fp8_verify.suite.properties",
    "check_contract": "fp8_verify.suite.contract",
    "CASES": "fp8_verify.suite.contract",
    "FINDINGS": "fp8_verify.suite.findings",
    "device": "fp8_verify.suite.properties",
}
__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'fp8_verify' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
