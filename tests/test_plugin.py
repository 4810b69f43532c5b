"""Self-tests of the pytest plugin: crash isolation after a sticky CUDA error, the JSON report."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from fp8_verify.plugin import is_sticky_cuda_error

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.cpu


def test_sticky_errors_are_recognised():
    assert is_sticky_cuda_error(RuntimeError("CUDA error: an illegal memory access was encountered"))
    assert is_sticky_cuda_error(RuntimeError("CUDA error: device-side assert triggered"))
    assert not is_sticky_cuda_error(RuntimeError("m must be divisible by 4"))


def test_plugin_in_a_fresh_project(pytester, monkeypatch):
    """The plugin loads from a conftest in another project, marks and skips Hopper tests with a
    reason, and writes a JSON report with one entry per test."""
    root = Path(__file__).resolve().parent.parent
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])))
    pytester.makeconftest('pytest_plugins = ["fp8_verify.plugin"]')
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.hopper
        def test_a_crashes():
            raise RuntimeError("CUDA error: an illegal memory access was encountered")

        def test_b_cpu_still_runs():
            pass
        """
    )
    r = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--fp8-report", "r.json", "-rs")
    if "kernel: real" in r.stdout.str():  # on Hopper the crash is real: it fails, the rest runs
        r.assert_outcomes(passed=1, failed=1)
    else:  # elsewhere the hopper test is skipped, with the reason
        r.assert_outcomes(passed=1, skipped=1)
        r.stdout.fnmatch_lines(["*needs the real SM90 kernel*"])
    report = json.loads((pytester.path / "r.json").read_text())
    assert {x["property"] for x in report["results"]} == {"test_a_crashes", "test_b_cpu_still_runs"}


def test_poison_skips_later_gpu_tests(monkeypatch):
    """After a sticky CUDA error, later GPU tests are skipped naming the test that poisoned the
    context (without xdist; under xdist the worker exits and a fresh one carries on)."""
    from fp8_verify import plugin

    monkeypatch.setattr(plugin, "_poisoned_by", "tests/x.py::test_crash")
    monkeypatch.setattr(plugin, "_needs_gpu", lambda item: True)
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)

    class Item:
        name = "test_next"

    with pytest.raises(pytest.skip.Exception, match=r"poisoned by tests/x\.py::test_crash"):
        plugin.pytest_runtest_setup(Item())
