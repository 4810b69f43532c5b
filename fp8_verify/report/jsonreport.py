"""The JSON report of a check run: the subject, the profile, one entry per test (property, path, kernel,
outcome, examples, worst error/bound, finding, reason, artifacts, seconds) and the findings it saw."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..subject.vllm import Subject

SCHEMA = "fp8-verify-report/2"


def document(
    subject: Subject,
    profile: str,
    results: list[dict],
    findings: list[dict],
    seconds: float,
    coverage: dict | None = None,
    complete: bool = True,
) -> dict[str, Any]:
    """``complete`` is false for a run stopped early (SIGTERM, Ctrl-C): its results are the tests that ran."""
    return {
        "schema": SCHEMA,
        "vllm_version": subject.vllm_version,
        "torch_version": subject.torch_version,
        "device": subject.device_name() if subject.available else "unknown",
        "kernel": subject.kernel if subject.available else None,
        "kernel_reason": subject.kernel_reason or subject.error,
        "profile": profile,
        "seconds": round(seconds, 1),
        "complete": complete,
        "results": results,
        "findings": findings,
        "coverage": coverage or {},
    }


def write(path: str | Path, doc: dict[str, Any]) -> None:
    """Write a report :func:`document` made."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(doc, indent=2, default=str) + os.linesep)
