"""What properties share: the device, path lookup with skip reasons, and check-and-record.

A property upstream could lift into its own tree needs only these imports and a strategy.
"""

from __future__ import annotations

import pytest
import torch

from .bound import oracle
from .paths import Path, get
from .problem import BlockScaledProblem
from .subject import load
from .verdict import Verdict, judge


def device() -> torch.device:
    """Where problems live: the GPU when the real kernel runs, else the CPU (double)."""
    return load().device


def require_vllm() -> None:
    s = load()
    if not s.available:
        pytest.skip(s.error)


def require_path(name: str) -> Path:
    """The path, or skip the test with the reason the installed vLLM lacks it."""
    require_vllm()
    p = get(name)
    if not p.available:
        pytest.skip(p.reason)
    return p


def check_within_bound(path: Path, p: BlockScaledProblem, record=None) -> Verdict:
    """Run ``path`` on ``p`` and assert every element is within the FP8 error bound."""
    out = path.run(p)
    o = oracle(p)
    v = judge(out, o, p, path.name)
    if record is not None:
        record.verdict(v)
    if not v.ok:
        from .artifacts import record_failure

        record_failure(p, path.name, v, out, o)
    assert v.ok, v.message()
    return v


def rejects_clearly(exc: BaseException, *words: str) -> bool:
    """An error 'names the problem' when its text carries one of ``words`` (case-insensitive)."""
    text = str(exc).lower()
    return any(w.lower() in text for w in words)


def run_or_exception(path: Path, p: BlockScaledProblem):
    """``(output, None)`` or ``(None, exception)`` -- for properties that accept a clear rejection."""
    try:
        return path.run(p), None
    except (RuntimeError, ValueError, AssertionError, TypeError, NotImplementedError) as e:
        return None, e
