"""pytest plugin: Hypothesis profiles, tier markers and skips, finding xfails, GPU pinning per xdist
worker, per-(property, path) result records, the end-of-run summary and the JSON report.

Load it with ``pytest_plugins = ["fp8_verify.plugin"]`` in a conftest (this repository's does).
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path as FsPath

import pytest
from hypothesis import HealthCheck, Phase, settings

from . import findings as findings_mod

# -- Hypothesis profiles ------------------------------------------------------------------------------
# The fp8_record fixture accumulates over examples on purpose (examples run, worst error/bound).
_common = dict(
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.differing_executors,
        HealthCheck.function_scoped_fixture,
    ],
    deadline=None,
)
settings.register_profile("dev", max_examples=15, **_common)
settings.register_profile("ci", max_examples=40, derandomize=True, database=None, print_blob=True, **_common)
settings.register_profile("nightly", max_examples=1000, **_common)
PROFILES = ("dev", "ci", "nightly")
SCALE = {"dev": 0.5, "ci": 1.0, "nightly": 25.0}


def examples(n: int) -> int:
    """``n`` examples under the ci profile, scaled for the others: for tests whose example count is set
    per test (expensive ones) but should still grow in nightly runs."""
    return max(2, round(n * SCALE.get(settings._current_profile, 1.0)))  # type: ignore[attr-defined]


settings.load_profile(os.environ.get("FP8_VERIFY_PROFILE") or ("ci" if os.environ.get("CI") else "dev"))

RECORD_KEY = "fp8_verify"


@dataclass
class Recorder:
    """Per-test accumulator that properties feed with verdicts (via the ``fp8_record`` fixture)."""

    path: str | None = None
    examples: int = 0
    max_ratio: float | None = None

    def verdict(self, v) -> None:
        self.examples += 1
        r = v.max_ratio
        if r == r and (self.max_ratio is None or r > self.max_ratio):
            self.max_ratio = r

    def example(self) -> None:
        self.examples += 1


@pytest.fixture
def fp8_record(request) -> Recorder:
    """Collects examples and worst error/bound for the report; properties call ``.verdict(v)``."""
    rec = Recorder(path=getattr(request.node, "callspec", None) and request.node.callspec.params.get("path"))
    yield rec
    from . import artifacts

    row = {"path": rec.path, "examples": rec.examples, "max_ratio": rec.max_ratio}
    row.update(artifacts.WRITTEN.pop(request.node.name, {}))
    request.node.user_properties.append((RECORD_KEY, row))


# -- crash isolation --------------------------------------------------------------------------------
# A sticky CUDA error (an illegal address, a device-side assert) poisons the process's CUDA context:
# every later CUDA call fails too. The test that hit it fails with its own error; after that, under
# pytest-xdist the worker exits so that xdist starts a fresh one for the rest of the run, and without
# xdist the remaining tests that need the GPU are skipped with the name of the test that poisoned it.
STICKY = (
    "illegal memory access",
    "illegal address",
    "device-side assert",
    "unspecified launch failure",
    "misaligned address",
    "an illegal instruction",
)
_poisoned_by: str | None = None


def is_sticky_cuda_error(exc: BaseException) -> bool:
    text = str(exc).lower()
    return type(exc).__name__ == "AcceleratorError" or ("cuda" in text and any(s in text for s in STICKY))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    global _poisoned_by
    outcome = yield
    report = outcome.get_result()
    if call.excinfo is not None and _poisoned_by is None and is_sticky_cuda_error(call.excinfo.value):
        _poisoned_by = item.nodeid
        report.sections.append(
            (
                "fp8-verify",
                "sticky CUDA error: this process's CUDA context is "
                "poisoned; later GPU tests run in a fresh worker or are skipped",
            )
        )


def _needs_gpu(item: pytest.Item) -> bool:
    return item.get_closest_marker("hopper") is not None or _subject().backend == "real"


@pytest.hookimpl(trylast=True)
def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Under xdist, end a poisoned worker right after the poisoning test's last report has gone out:
    xdist then reports that test as the one the worker crashed on (not an innocent later one) and
    starts a fresh worker for the rest of the run."""
    if report.when == "teardown" and report.nodeid == _poisoned_by and os.environ.get("PYTEST_XDIST_WORKER"):
        time.sleep(0.5)  # let xdist's channel deliver the reports already sent
        os._exit(75)


@pytest.hookimpl(optionalhook=True)
def pytest_handlecrashitem(crashitem: str, report: pytest.TestReport, sched) -> None:
    """xdist controller: say why the worker went away when it was fp8-verify's own exit (75)."""
    if "crashed while running" in str(report.longrepr):
        report.longrepr = (
            f"{report.longrepr}; if the test above failed with a sticky CUDA error, fp8-verify ended "
            "the worker on purpose (its CUDA context was poisoned) and the run goes on in a fresh one"
        )


def pytest_runtest_setup(item: pytest.Item) -> None:
    from . import artifacts

    artifacts.TEST = item.name
    if _poisoned_by is not None and _needs_gpu(item):  # without xdist (under it the worker has gone)
        pytest.skip(
            f"CUDA context poisoned by {_poisoned_by} (sticky CUDA error); rerun with -n 1 "
            "or more to isolate it in its own worker"
        )


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("fp8-verify")
    g.addoption("--fp8-report", metavar="FILE", help="write the JSON report here")
    g.addoption(
        "--fp8-artifacts",
        metavar="DIR",
        help="where failing examples leave repro scripts and error maps "
        "(default: <report>.failures/ when --fp8-report is given)",
    )
    g.addoption(
        "--fp8-summary-md",
        metavar="FILE",
        help="write the Markdown summary here (also appended to $GITHUB_STEP_SUMMARY if set)",
    )


def _pin_gpu_for_worker() -> None:
    """Under xdist, give worker gwN one GPU (N mod count) before anything initialises CUDA."""
    wid = os.environ.get("PYTEST_XDIST_WORKER")
    if not wid or ("CUDA_VISIBLE_DEVICES" in os.environ and "," not in os.environ["CUDA_VISIBLE_DEVICES"]):
        return
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = visible.split(",") if visible else None
    if ids is None:
        try:
            import torch

            if torch.cuda.is_initialized():
                return
            ids = [str(i) for i in range(torch.cuda.device_count())]
        except Exception:
            return
    if ids:
        os.environ["CUDA_VISIBLE_DEVICES"] = ids[int(wid.removeprefix("gw")) % len(ids)]


MARKERS = (
    "cpu: runs vLLM's Python on the CPU double of the CUTLASS op (any machine)",
    "hopper: needs an SM90 GPU and vLLM's compiled _C ops",
    "compiled: traces a path with torch.compile",
    "finding(id): a known upstream defect, strict xfail on the affected vLLM versions",
)


def pytest_configure(config: pytest.Config) -> None:
    for line in MARKERS:  # registered here too, so a project that loads only the plugin knows them
        config.addinivalue_line("markers", line)
    _pin_gpu_for_worker()
    mutant = os.environ.get("FP8_VERIFY_MUTANT")
    if mutant:  # `fp8-verify check --mutant ID`: plant the bug in the subject before any test runs
        from .mutants import apply

        _subject()
        apply(mutant)
    from . import artifacts

    where = config.getoption("--fp8-artifacts") or (
        config.getoption("--fp8-report") and str(config.getoption("--fp8-report")) + ".failures"
    )
    artifacts.DIR = FsPath(where) if where else None
    config._fp8 = _Session(config)  # type: ignore[attr-defined]
    config.pluginmanager.register(config._fp8, "fp8_verify_session")  # type: ignore[attr-defined]


def _subject():
    from .subject import load

    return load()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    s = _subject()
    from .paths import compile_backend

    for item in items:
        params = getattr(item, "callspec", None) and item.callspec.params
        if params and "path" in params:
            item.user_properties.append(("fp8_path", params["path"]))
        if item.get_closest_marker("hopper") and s.backend != "real":
            why = s.error or s.backend_reason
            item.add_marker(pytest.mark.skip(reason=f"needs the real SM90 kernel: {why}"))
        for mark in item.iter_markers("finding"):
            f = findings_mod.get(mark.args[0])
            if params and not f.covers(params):
                continue
            if s.available and f.applies(s, compile_backend()):
                item.add_marker(
                    pytest.mark.xfail(strict=True, reason=f"{f.id} (vLLM {s.vllm_version}): {f.title}")
                )
                item.user_properties.append(("fp8_finding", f.id))
                _skip_shrinking(item)


def _skip_shrinking(item: pytest.Item) -> None:
    """A known failure needs no minimal example (FINDINGS.md has the repro): stop at the first one."""
    fn = getattr(item, "obj", None)
    current = getattr(fn, "_hypothesis_internal_use_settings", None)
    if current is not None:
        fn._hypothesis_internal_use_settings = settings(
            current, phases=[p for p in current.phases if p is not Phase.shrink]
        )


_PARAM = re.compile(r"\[(.*)\]$")


class _Session:
    """Controller-side collector of results (works under xdist: user_properties travel with reports)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.rows: dict[str, dict] = {}
        self.t0 = time.time()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        row = self.rows.setdefault(report.nodeid, {"nodeid": report.nodeid})
        row["seconds"] = row.get("seconds", 0.0) + report.duration  # setup + call + teardown
        for key, val in report.user_properties:
            if key == RECORD_KEY:
                row.update({k: v for k, v in val.items() if v is not None})
            elif key == "fp8_finding":
                row["finding"] = val
            elif key == "fp8_path":
                row["path"] = val
        if report.when in ("setup", "teardown") and report.outcome == "passed":
            return
        if report.when == "???" and row.get("outcome") == "failed":  # xdist: the worker went away after
            row["worker_restarted"] = True  # this test failed; keep its own failure as the reason
            return
        if report.when == "call" or report.outcome != "passed":
            outcome = report.outcome
            if hasattr(report, "wasxfail"):
                outcome = "xfailed" if report.skipped else "failed"  # strict XPASS fails
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

    def results(self) -> list[dict]:
        out = []
        for nodeid, row in self.rows.items():
            name = nodeid.split("::")[-1]
            prop = _PARAM.sub("", name)
            out.append(
                {
                    "property": prop,
                    "test": nodeid,
                    "path": row.get("path"),
                    "outcome": row.get("outcome", "error"),
                    "examples": row.get("examples", 0),
                    "max_error_over_bound": row.get("max_ratio"),
                    "finding": row.get("finding"),
                    "reason": row.get("reason"),
                    "repro": row.get("repro"),
                    "error_map": row.get("error_map"),
                    "seconds": round(row.get("seconds", 0.0), 2),
                    **({"worker_restarted": True} if row.get("worker_restarted") else {}),
                }
            )
        return out

    def pytest_terminal_summary(self, terminalreporter, exitstatus, config) -> None:
        if os.environ.get("PYTEST_XDIST_WORKER"):
            return
        from .report import markdown_summary, text_summary, write_json

        results = self.results()
        if not results:
            return
        s = _subject()
        terminalreporter.write_sep("=", "fp8-verify summary")
        terminalreporter.write_line(
            f"vLLM {s.vllm_version}  torch {s.torch_version}  "
            f"kernel: {s.backend} ({s.backend_reason or s.error})"
        )
        for line in text_summary(results):
            terminalreporter.write_line(line)
        for r in results:
            if r.get("repro"):
                terminalreporter.write_line(
                    f"{r['test']}: repro {r['repro']} (fp8-verify repro FILE)"
                    + (f", error map {r['error_map']}" if r.get("error_map") else "")
                )
        profile = settings._current_profile  # type: ignore[attr-defined]
        report_path = config.getoption("--fp8-report")
        if report_path:
            write_json(report_path, s, profile, results, time.time() - self.t0)
            terminalreporter.write_line(f"fp8-verify report: {report_path}")
        md = markdown_summary(results, s)
        md_path = config.getoption("--fp8-summary-md")
        for target in filter(None, (md_path, os.environ.get("GITHUB_STEP_SUMMARY"))):
            with open(FsPath(target), "a") as fh:
                fh.write(md)
