"""What each test leaves for the report: the ``fp8_record`` fixture's per-test accumulator, and the
controller-side collector that turns pytest reports into result rows (it works under xdist: the rows
travel as ``user_properties`` with the reports)."""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from ..subject.kernels import CUTLASS_SM90
from ..subject.schedule import H100_SMS, classes
from . import shards

RECORD_KEY = "fp8_verify"
PATH_KEY = "fp8_path"
FINDING_KEY = "fp8_finding"
_PARAM = re.compile(r"\[(.*)\]$")


@dataclass
class Recorder:
    """Per-test accumulator that properties feed (the ``fp8_record`` fixture): examples run, the worst
    error/bound, and the artifacts a failing example left."""

    path: str | None = None
    test: str = "test"
    writer: Any = None  # fp8_verify.report.artifacts.ArtifactWriter, when artifacts are on
    release: str | None = None  # for the schedule classes (fp8_verify.subject.schedule)
    sm_count: int = H100_SMS
    examples: int = 0
    max_ratio: float | None = None
    artifacts: dict[str, str] = field(default_factory=dict)
    coverage: dict[str, int] = field(default_factory=dict)
    kernels: dict[str, int] = field(default_factory=dict)  # what vLLM decided for layer rows
    batch: int = 1  # problems per bit-exact example (--fp8-batch; options.BATCH)
    problems: int = 0  # problems judged: the examples, or more where an example checks a batch
    largest: list[int] | None = None  # [M, N, K] of the largest problem judged (by M * N * K)
    max_dims: list[int] | None = None  # the largest M, N and K judged (of any problems)

    def verdict(self, v, p=None, kernel: str = CUTLASS_SM90, problems: int = 1) -> None:
        """Count one example judged by ``v`` (a Verdict; its max error/bound feeds the report) and, given
        its problem ``p``, its dims and the CUTLASS kernel's schedule classes it reached (for that kernel
        only); ``problems``: how many problems of ``p``'s shape the example judged."""
        self.examples += 1
        self.problems += problems
        r = v.max_ratio
        if r == r and (self.max_ratio is None or r > self.max_ratio):
            self.max_ratio = r
        if p is None:
            return
        dims = [p.m, p.n, p.k]
        if self.largest is None or math.prod(dims) > math.prod(self.largest):
            self.largest = dims
        before = self.max_dims or dims
        self.max_dims = [max(x, y) for x, y in zip(before, dims, strict=True)]
        if kernel == CUTLASS_SM90:
            for c in classes(p.m, p.n, p.k, self.release, self.sm_count):
                self.coverage[c] = self.coverage.get(c, 0) + problems

    def bound_only(self) -> None:
        """Count an example the bit-exact property judged by the bound alone: its kernel computes it
        with an arithmetic fp8-verify does not model (``Kernel.modelled``)."""
        self.kernels["bound only (arithmetic not modelled here)"] = (
            self.kernels.get("bound only (arithmetic not modelled here)", 0) + 1
        )

    def decided(self, d) -> None:
        """Count what vLLM decided for a layer (:class:`fp8_verify.subject.layer.Decisions`): the report
        says which kernel class ran, with which quantization, how often."""
        key = f"{d.kernel_class} (UE8M0 activations: {d.act_ue8m0}, UE8M0 weights: {d.weight_ue8m0})"
        self.kernels[key] = self.kernels.get(key, 0) + 1

    def example(self) -> None:
        """Count one example that has no error/bound (a bitwise or a contract check)."""
        self.examples += 1
        self.problems += 1

    def failure(self, p, gemm, v, out, oracle) -> None:
        """Leave the repro script and error map of a failing example (the last one written wins:
        Hypothesis replays the shrunk example last)."""
        if self.writer is not None:
            self.artifacts = self.writer.write(self.test, p, gemm, v, out, oracle)

    def row(self) -> dict[str, Any]:
        row = {"path": self.path, "examples": self.examples, "max_ratio": self.max_ratio, **self.artifacts}
        if self.kernels:
            row["kernels"] = dict(self.kernels)
        if self.problems != self.examples:
            row["problems"] = self.problems
        if self.largest is not None:
            row.update(largest=self.largest, max_dims=self.max_dims)
        return {**row, "coverage": self.coverage} if self.coverage else row


class Results:
    """Controller-side: one row per test id, from the reports of every worker."""

    def __init__(self) -> None:
        self.rows: dict[str, dict] = {}
        self.t0 = time.time()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        row = self.rows.setdefault(report.nodeid, {"nodeid": report.nodeid})
        row["seconds"] = row.get("seconds", 0.0) + report.duration  # setup + call + teardown
        for key, val in report.user_properties:
            if key == RECORD_KEY:
                row.update({k: v for k, v in val.items() if v is not None})
            elif key == FINDING_KEY:
                row["finding"] = val
            elif key == PATH_KEY:
                row["path"] = val
        if report.when in ("setup", "teardown") and report.outcome == "passed":
            return
        if report.when == "???" and row.get("outcome") == "failed":  # xdist: the worker went away after
            row["worker_restarted"] = True  # this test failed; keep its own failure as the reason
            return
        if report.when == "call" or report.outcome != "passed":
            outcome = report.outcome
            if hasattr(report, "wasxfail"):
                outcome = "xfailed" if report.skipped else "failed"
            elif report.when != "call" and report.failed:
                outcome = "error"
            row["outcome"] = outcome
            if report.skipped and isinstance(report.longrepr, tuple):
                row["reason"] = report.longrepr[2].removeprefix("Skipped: ")
            elif hasattr(report, "wasxfail"):
                row["reason"] = report.wasxfail
            elif report.failed:
                crash = getattr(report.longrepr, "reprcrash", None)
                row["reason"] = (crash.message if crash else report.longreprtext or "failed")[:2000]

    def seconds(self) -> float:
        return time.time() - self.t0

    def results(self, kernel: str | None) -> list[dict]:
        """The rows as the JSON report lists them, a sharded property's shards joined into one;
        ``kernel`` says which kernel ran them."""
        out: dict[str, list[dict]] = {}
        for nodeid, row in self.rows.items():
            name = nodeid.split("::")[-1]
            out.setdefault(shards.base_nodeid(nodeid), []).append(
                {
                    "property": _PARAM.sub("", name),
                    "test": nodeid,
                    "path": row.get("path"),
                    "kernel": kernel,
                    "outcome": row.get("outcome", "error"),
                    "examples": row.get("examples", 0),
                    "max_error_over_bound": row.get("max_ratio"),
                    "finding": row.get("finding"),
                    "reason": row.get("reason"),
                    "repro": row.get("repro"),
                    "error_map": row.get("error_map"),
                    "seconds": round(row.get("seconds", 0.0), 2),
                    **{k: row[k] for k in ("problems", "largest", "max_dims", "kernels") if row.get(k)},
                    **({"coverage": row["coverage"]} if row.get("coverage") else {}),
                    **({"worker_restarted": True} if row.get("worker_restarted") else {}),
                }
            )
        return [shards.merge(rows) for rows in out.values()]
