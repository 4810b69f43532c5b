"""The pytest plugin: hooks and fixtures only; the logic lives in the modules beside it.

================  ==================================================================================
``options``       command-line options, Hypothesis profiles, example counts
``selection``     which paths a property runs on (the ``gemm`` fixture, the ``paths`` marker)
``shards``        one property's examples split over several items (``--fp8-shards``)
``marks``         Hopper skips and the findings' signature-checked xfails
``isolation``     one GPU per xdist worker, crash isolation after a sticky CUDA error
``records``       the ``fp8_record`` fixture and the result rows
``fp8_verify.report``  terminal and Markdown summary, JSON report, failure artifacts
================  ==================================================================================

Enable it with ``-p fp8_verify.plugin`` (or ``pytest_plugins = ["fp8_verify.plugin"]`` in a conftest);
this repository's conftest does. Session state lives on ``config.stash``. Its Hypothesis profiles touch
only its own items (``options``): a project's own ``@given`` tests keep their settings.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Generator
from pathlib import Path

import pytest
from hypothesis import settings

from ..errors import UsageError
from ..report import artifacts, jsonreport, summary
from ..subject import compiled, schedule
from ..subject.registry import Registry, default, external
from ..subject.vllm import FORCE_CPU_ENV, Subject, load
from . import findings, isolation, marks, options, selection, shards
from .records import PATH_KEY, RECORD_KEY, Recorder, Results


class State:
    """What one session knows: the subject, its paths, where artifacts go, and the plugin objects."""

    def __init__(
        self, config: pytest.Config, subject: Subject, registry: Registry, profile: str, scope: str
    ) -> None:
        self.subject = subject
        self.registry = registry
        self.profile = profile  # fp8-verify's profile (dev, ci, nightly) or a user's, for the report
        self.scope = scope  # its name as registered with Hypothesis (options.scoped)
        self.suite = suite_dir()
        self.compile_backend = (
            compiled.default_backend(subject.kernel == "real") if subject.available else None
        )
        where = config.getoption("--fp8-artifacts") or (
            config.getoption("--fp8-report") and str(config.getoption("--fp8-report")) + ".failures"
        )
        self.writer = artifacts.ArtifactWriter(Path(where), subject) if where else None
        self.results = Results()
        self.batch = options.batch(profile, config.getoption("--fp8-batch"))
        self.sm_count = schedule.H100_SMS
        if subject.kernel == "real":
            import torch

            self.sm_count = torch.cuda.get_device_properties(subject.device).multi_processor_count
        self.isolation = isolation.CrashIsolation(self.needs_gpu)
        self.expected = marks.ExpectedFailures(subject.vllm_version)

    def needs_gpu(self, item: pytest.Item) -> bool:
        return item.get_closest_marker("hopper") is not None or self.subject.kernel == "real"

    def owns_file(self, path: Path) -> bool:
        """A test file of fp8-verify's suite (a checkout's tests/, or the installed properties)."""
        return self.suite is not None and Path(path).resolve().is_relative_to(self.suite)


def suite_dir() -> Path | None:
    """Where fp8-verify's own test files are: a checkout's ``tests/`` beside this package (as the CLI
    runs them), else the installed ``fp8_verify.properties``."""
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "tests").is_dir() and (checkout / "conftest.py").is_file():
        return checkout / "tests"
    spec = importlib.util.find_spec("fp8_verify.properties")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))).resolve()


STATE = pytest.StashKey[State]()

MARKERS = (
    "cpu: runs vLLM's Python on the CPU double of the SM90 kernel (any machine)",
    "hopper: needs an SM90 GPU and vLLM's compiled _C ops",
    "compiled: traces a path with torch.compile",
    "selftest: tests fp8-verify itself (CLI, plugin, packaging, tools, the judges) and not the kernel: "
    "deselected where the real kernel runs, unless --fp8-self-tests",
    "paths(**facts): run this property on the paths with these registry facts (see fp8_verify.suite."
    "selection)",
    "fp8_finding(id, release): a known upstream defect expected here (set by the plugin)",
    "sharded: a property at the profile's example count; --fp8-shards N runs it as N items that share its "
    "examples (fp8_verify.suite.shards)",
)


def state(config: pytest.Config) -> State:
    return config.stash[STATE]


def pytest_addoption(parser: pytest.Parser) -> None:
    options.addoption(parser)
    options.register_names()  # before Hypothesis' own plugin loads --hypothesis-profile


def _require(config: pytest.Config, s: Subject) -> None:
    """Stop the run (one line, non-zero exit) when there is no subject or not the required kernel."""
    want = config.getoption("--fp8-require")
    if not s.available:
        if not config.getoption("--fp8-dry-run"):
            raise pytest.UsageError(f"fp8-verify: no subject to test: {s.error} (--fp8-dry-run runs anyway)")
        return
    needs_real = want == "real" or (want == "auto" and _sm90_visible())
    if needs_real and s.kernel != "real":
        why = "--fp8-require real" if want == "real" else "an SM90 GPU is visible"
        raise pytest.UsageError(
            f"fp8-verify: the real SM90 kernel is required ({why}) but did not load: {s.kernel_reason}; "
            "--fp8-require double runs on the CPU double"
        )


def _sm90_visible() -> bool:
    import torch

    return torch.cuda.is_available() and torch.cuda.get_device_capability() == (9, 0)


@pytest.hookimpl(tryfirst=True)  # before Hypothesis' plugin reads --hypothesis-seed
def pytest_configure(config: pytest.Config) -> None:
    for line in MARKERS:  # registered here too, so a project that loads only the plugin knows them
        config.addinivalue_line("markers", line)
    isolation.pin_gpu_for_worker()
    isolation.share_cpu_threads()
    isolation.interrupt_on_sigterm()
    if config.getoption("--fp8-require") == "double":
        os.environ[FORCE_CPU_ENV] = "1"
    try:
        options.check_environment()
        s = load()
        profile = options.chosen_profile(config)
        scope = options.register_scoped(config, profile, s.kernel == "real")
        options.fixed_seed_for(config, profile)
        shards.check(config)
        registry = Registry(default().specs())
        for text in config.getoption("--fp8-path"):
            registry.add(external(text))
    except (UsageError, ValueError) as e:
        raise pytest.UsageError(f"fp8-verify: {e}") from None
    _require(config, s)
    if s.kernel == "real":
        isolation.limit_gpu_memory()
    st = config.stash[STATE] = State(config, s, registry, profile, scope)
    for name, obj in (("results", st.results), ("isolation", st.isolation), ("expected", st.expected)):
        config.pluginmanager.register(obj, f"fp8_verify_{name}")


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, object, object]:
    """A test module of fp8-verify's suite imports and is parametrized under its profile (``@given`` and
    ``@settings`` read Hypothesis' default then); no other module is."""
    config = collector.config
    if (
        isinstance(collector, pytest.Module)
        and STATE in config.stash
        and state(config).owns_file(collector.path)
    ):
        with options.scoped(state(config).scope):
            return (yield)
    return (yield)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    st = state(metafunc.config)
    if "gemm" in metafunc.fixturenames:
        specs = selection.select(st.registry, st.subject, metafunc.definition.get_closest_marker("paths"))
        metafunc.parametrize("gemm", [p.name for p in specs], indirect=True, ids=[p.name for p in specs])
    if st.owns_file(metafunc.definition.path) or options.owns(
        metafunc.fixturenames, metafunc.definition.get_closest_marker
    ):  # a test of fp8-verify's: its profile, also in a project's own test file
        with options.scoped(st.scope):
            shards.parametrize(metafunc)
        options.apply(metafunc.function, st.scope)


@pytest.fixture
def gemm(request: pytest.FixtureRequest):
    """The path this test item runs on (parametrized by the plugin); skips with the reason when the
    installed vLLM does not have it."""
    path = state(request.config).registry.get(request.param)
    if not path.available:
        pytest.skip(path.reason)
    return path


@pytest.fixture
def fp8_shard(request: pytest.FixtureRequest) -> int:
    """Which share of a sharded property's examples this item runs (parametrized by the plugin)."""
    return request.param


@pytest.fixture
def fp8_record(request: pytest.FixtureRequest):
    """Collects examples, the worst error/bound and failure artifacts for the report."""
    st = state(request.config)
    params = getattr(request.node, "callspec", None) and request.node.callspec.params
    rec = Recorder(
        path=(params or {}).get("gemm"),
        test=request.node.name,
        writer=st.writer,
        release=st.subject.vllm_version,
        sm_count=st.sm_count,
        batch=st.batch,
    )
    yield rec
    request.node.user_properties.append((RECORD_KEY, rec.row()))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker(shards.MARKER) is not None:
        with options.scoped(state(item.config).scope):  # the shard's profile says whether to derandomize
            shards.seed_item(item)


def _named_files(config: pytest.Config) -> bool:
    """Test files or items named on the command line run as named (``check tests/test_cli.py``)."""
    return any(str(a).partition("::")[0].endswith(".py") for a in config.args)


def _deselect_self_tests(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On the real kernel, drop the tests of fp8-verify itself that never touch it (the CPU CI runs
    them): on Hopper they took more than half of the ci run (subprocesses that import vLLM) and tell
    nothing about the GPU. A self-test marked ``hopper`` (crash isolation on a real GPU) stays, and so
    does every test of a file named on the command line."""
    if state(config).subject.kernel != "real" or config.getoption("--fp8-self-tests") or _named_files(config):
        return
    keep, drop = [], []
    for item in items:
        own = item.get_closest_marker("selftest") and not item.get_closest_marker("hopper")
        (drop if own else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
    # the self-tests that stay (a real crash under xdist: subprocesses that import vLLM) take longest:
    # first, so that xdist runs them beside the rest instead of after it
    items[:] = sorted(keep, key=lambda item: item.get_closest_marker("selftest") is None)


def pytest_report_header(config: pytest.Config) -> list[str]:
    if STATE not in config.stash:
        return []
    st = state(config)
    n = settings.get_profile(st.scope).max_examples
    lines = [f"fp8-verify: profile {st.profile!r} for its own tests ({n} examples per property)"]
    if st.subject.kernel != "real":
        return lines
    if config.getoption("--fp8-self-tests") or _named_files(config):
        return [
            *lines,
            "fp8-verify: self-tests run on the real kernel too (--self-tests, or their files named)",
        ]
    return [
        *lines,
        "fp8-verify: the self-tests that do not touch the real kernel are deselected here (the CPU CI runs "
        "them; --self-tests runs them here)",
    ]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    _deselect_self_tests(config, items)
    st = state(config)
    s = st.subject
    for item in items:
        params = (getattr(item, "callspec", None) and item.callspec.params) or {}
        spec = None
        if "gemm" in params and params["gemm"] in st.registry:
            spec = st.registry.get(params["gemm"]).spec
            item.user_properties.append((PATH_KEY, params["gemm"]))
        if item.get_closest_marker("hopper") and s.kernel != "real":
            why = s.error or s.kernel_reason
            item.add_marker(pytest.mark.skip(reason=f"needs the real SM90 kernel: {why}"))
            continue
        if not s.available:
            continue
        expected = marks.findings_for(item, spec, s.vllm_version, st.compile_backend)
        if expected:
            marks.expect(item, expected, s.vllm_version)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if isolation.worker_id() or STATE not in config.stash:
        return
    st = state(config)
    results = st.results.results(st.subject.kernel if st.subject.available else None)
    if not results:
        return
    terminalreporter.write_sep("=", "fp8-verify summary")
    terminalreporter.write_line(st.subject.describe())
    for line in summary.text_summary(results, st.registry.names()):
        terminalreporter.write_line(line)
    for line in summary.coverage_summary(results, st.registry.names()):
        terminalreporter.write_line(line)
    for r in results:
        if r.get("repro"):
            terminalreporter.write_line(
                f"{r['test']}: repro {r['repro']} (fp8-verify repro FILE)"
                + (f", error map {r['error_map']}" if r.get("error_map") else "")
            )
    report_path = config.getoption("--fp8-report")
    if report_path:
        seen = sorted({r["finding"] for r in results if r.get("finding")})
        doc = jsonreport.document(
            st.subject,
            st.profile,
            results,
            [findings.get(f).to_dict() for f in seen],
            st.results.seconds(),
            summary.coverage(results),
            complete=exitstatus != pytest.ExitCode.INTERRUPTED,
        )
        jsonreport.write(report_path, doc)
        terminalreporter.write_line(f"fp8-verify report: {report_path}")
    md = summary.markdown_summary(results, st.subject, st.registry.names())
    for target in filter(None, (config.getoption("--fp8-summary-md"), os.environ.get("GITHUB_STEP_SUMMARY"))):
        with open(Path(target), "a") as fh:
            fh.write(md)
