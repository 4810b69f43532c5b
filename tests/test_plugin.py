"""Self-tests of the pytest plugin: crash isolation after a sticky CUDA error (simulated anywhere, real on
Hopper), the JSON report."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fp8_verify.subject.vllm import load
from fp8_verify.suite.isolation import CrashIsolation, is_sticky_cuda_error

pytest_plugins = ["pytester"]
pytestmark = [pytest.mark.cpu, pytest.mark.selftest]
ROOT = Path(__file__).resolve().parent.parent


def _fresh_project_env(monkeypatch) -> None:
    """What a pytest run in a project of its own sees: this checkout importable, and none of the
    environment of an xdist worker we may be running in (a subprocess that inherits
    ``PYTEST_XDIST_WORKER`` takes itself for a worker and writes no report)."""
    paths = [str(ROOT), os.environ.get("PYTHONPATH")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, paths)))
    for name in [v for v in os.environ if v.startswith("PYTEST_XDIST")]:
        monkeypatch.delenv(name)


# A pytester project's conftest that loads the plugin on a stand-in subject: for the self-tests of the
# plugin's own machinery (profiles, shards, reports, databases), where vLLM plays no part -- importing it
# cost each such subprocess several seconds.
NO_VLLM = (
    'pytest_plugins = ["fp8_verify.plugin"]\n'
    "import fp8_verify.suite.plugin as P\n"
    "from fp8_verify.subject.vllm import Subject\n"
    "P.load = lambda: Subject(None, error='vLLM is not needed by this test (--fp8-dry-run)')\n"
)

SETTINGS_SEEN = """
import json
from hypothesis import given, strategies as st

def _ran(name):
    with open(f"ran-{name}.txt", "a") as fh:
        fh.write("x")

@given(st.integers())
def test_users_own(x):
    _ran("users_own")

@given(x=st.integers())
def test_fp8_property(x, fp8_record):
    _ran("fp8_property")
"""

SETTINGS_SPY = """
import json
import pytest

@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item):  # the settings Hypothesis runs the test with (its pytest plugin reads them so)
    s = item.obj._hypothesis_internal_use_settings
    seen = {"derandomize": s.derandomize, "database": s.database is not None}
    seen["deadline"] = s.deadline is not None
    with open(f"settings-{item.name}.json", "w") as fh:
        json.dump(seen, fh)
"""


@given(st.integers())
def _a_suite_property(x: int) -> None:  # defined in one of the suite's own files, so under its profile
    pass


def test_suite_modules_get_the_profile_and_nothing_else_does(request):
    """The suite's own test modules import under fp8-verify's profile (its ``@given`` tests carry it); the
    session's Hypothesis default stays what it was (a project's tests never see the profile)."""
    from hypothesis import settings

    from fp8_verify.suite.options import SCOPE_PREFIX
    from fp8_verify.suite.plugin import state

    scope = state(request.config).scope
    ours = _a_suite_property._hypothesis_internal_use_settings
    assert ours.max_examples == settings.get_profile(scope).max_examples
    assert ours.deadline is None
    assert not settings.get_current_profile_name().startswith(SCOPE_PREFIX)


@pytest.mark.parametrize("ci", [False, True], ids=["local", "CI"])
def test_a_projects_own_tests_keep_their_hypothesis_settings(pytester, monkeypatch, ci):
    """With ``-p fp8_verify.plugin`` a project's own ``@given`` tests run as Hypothesis would run them
    without it (100 examples; the example database on, unless ``$CI`` makes Hypothesis itself use its
    ``ci`` profile), while a test that takes fp8-verify's fixture gets fp8-verify's profile (dev: 15
    examples on the CPU double; ci: 40, derandomized, no database)."""
    _fresh_project_env(monkeypatch)
    from hypothesis._settings import _CI_VARS  # what makes Hypothesis load its ci profile by itself

    for name in (*_CI_VARS, "FP8_VERIFY_PROFILE", "FP8_VERIFY_EXAMPLE_DB"):
        monkeypatch.delenv(name, raising=False)
    if ci:
        monkeypatch.setenv("CI", "true")
    pytester.makeconftest(NO_VLLM + SETTINGS_SPY)
    pytester.makepyfile(test_mixed=SETTINGS_SEEN)
    pytester.runpytest_subprocess("-p", "no:cacheprovider", "--fp8-dry-run").assert_outcomes(passed=2)
    ran = {f.stem.removeprefix("ran-"): len(f.read_text()) for f in pytester.path.glob("ran-*.txt")}
    seen = {
        f.stem.removeprefix("settings-"): json.loads(f.read_text()) for f in pytester.path.glob("settings-*")
    }
    hypothesis_own = {"derandomize": ci, "database": not ci, "deadline": not ci}  # its default / its ci
    assert ran["users_own"] == 100 and seen["test_users_own"] == hypothesis_own, (ran, seen)
    fp8 = {"derandomize": ci, "database": not ci, "deadline": False}
    assert ran["fp8_property"] == (40 if ci else 15) and seen["test_fp8_property"] == fp8, (ran, seen)


def test_sticky_errors_are_recognised():
    assert is_sticky_cuda_error(RuntimeError("CUDA error: an illegal memory access was encountered"))
    assert is_sticky_cuda_error(RuntimeError("CUDA error: device-side assert triggered"))
    assert not is_sticky_cuda_error(RuntimeError("m must be divisible by 4"))


def test_plugin_in_a_fresh_project(pytester, monkeypatch):
    """The plugin loads from a conftest in another project, marks and skips Hopper tests with a
    reason, and writes a JSON report with one entry per test."""
    _fresh_project_env(monkeypatch)
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
    r = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--fp8-report", "r.json", "-rs", "--strict-markers"
    )
    report = json.loads((pytester.path / "r.json").read_text())
    if report["kernel"] == "real":  # on Hopper every test needs the (now poisoned) GPU:
        r.assert_outcomes(failed=1, skipped=1)  # without xdist the rest is skipped, naming the test
        r.stdout.fnmatch_lines(["*CUDA context poisoned by*test_a_crashes*"])
    else:  # elsewhere the hopper test is skipped, with the reason
        r.assert_outcomes(passed=1, skipped=1)
        r.stdout.fnmatch_lines(["*needs the real SM90 kernel*"])
    assert {x["property"] for x in report["results"]} == {"test_a_crashes", "test_b_cpu_still_runs"}


CRASH_CASES = {
    # A sticky error's text without a GPU: the plugin is told every test needs the GPU (and runs on no
    # subject: vLLM plays no part, and importing it in the controller and the workers cost ~25 s).
    "simulated": (
        NO_VLLM + "P.State.needs_gpu = lambda self, item: True\n",
        'raise RuntimeError("CUDA error: an illegal memory access was encountered")',
        "pass",
    ),
    # A real one: an out-of-range index trips a device-side assert, which poisons the CUDA context. The
    # subject is a stub on the real GPU: vLLM plays no part in crash isolation, and importing it in the
    # controller and in each worker it replaces made this the GPU run's longest test (101 s on an H100).
    "real": (
        "import torch\nimport fp8_verify.suite.plugin as P\nfrom fp8_verify.subject.vllm import Subject\n"
        "P.load = lambda: Subject('stub', kernel='real', kernel_reason='no vLLM: not needed here', "
        "device=torch.device('cuda'))\n",
        "import torch\n    torch.zeros(2, device='cuda')[torch.tensor([5], device='cuda')]\n"
        "    torch.cuda.synchronize()",
        "import torch\n    assert torch.ones(3, device='cuda').sum().item() == 3",
    ),
}


@pytest.mark.parametrize(
    "kind", ["simulated", pytest.param("real", marks=pytest.mark.hopper)], ids=["simulated", "real-cuda"]
)
def test_sticky_error_isolated_under_xdist(kind, pytester, monkeypatch):
    """Under xdist, a test that poisons the CUDA context fails with its own error; the worker is then
    replaced and the later GPU tests run and pass in a fresh one. The JSON report keeps the first
    test's own error as the reason and says its worker was restarted."""
    _fresh_project_env(monkeypatch)
    conf, crash, after = CRASH_CASES[kind]
    pytester.makeconftest('pytest_plugins = ["fp8_verify.plugin"]\n' + conf)
    marks = "@pytest.mark.hopper\n" if kind == "real" else ""
    pytester.makepyfile(
        "import pytest\n\n"
        f"{marks}def test_a_poisons():\n    {crash}\n\n"
        f"{marks}def test_b_after():\n    {after}\n\n"
        f"{marks}def test_c_after():\n    {after}\n"
    )
    dry = ["--fp8-dry-run"] if kind == "simulated" else []
    r = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", "1", "--fp8-report", "r.json", *dry)
    rows = {x["property"]: x for x in json.loads((pytester.path / "r.json").read_text())["results"]}
    assert {k: v["outcome"] for k, v in rows.items()} == {
        "test_a_poisons": "failed",
        "test_b_after": "passed",
        "test_c_after": "passed",
    }, r.stdout.str()[-3000:]
    assert rows["test_a_poisons"].get("worker_restarted"), rows["test_a_poisons"]
    assert (
        "CUDA error" in rows["test_a_poisons"]["reason"] or "Accelerator" in rows["test_a_poisons"]["reason"]
    )
    r.stdout.fnmatch_lines(["*fp8-verify ended the worker on purpose*"])


def test_poison_skips_later_gpu_tests(monkeypatch):
    """After a sticky CUDA error, later GPU tests are skipped naming the test that poisoned the
    context (without xdist; under xdist the worker exits and a fresh one carries on)."""
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    iso = CrashIsolation(needs_gpu=lambda item: True)
    iso.poisoned_by = "tests/x.py::test_crash"

    class Item:
        name = "test_next"

    with pytest.raises(pytest.skip.Exception, match=r"poisoned by tests/x\.py::test_crash"):
        iso.pytest_runtest_setup(Item())


EXAMPLE = Path(__file__).resolve().parent.parent / "docs" / "examples" / "test_block_fp8_property.py"


# The project's own Hypothesis settings for the example (the plugin leaves a project's tests to them): a
# few examples (this checks the example's wiring; the suite's properties check the kernel, 40 examples
# each on the CPU double, where one example of this example takes up to 4 s), derandomized, no deadline
# (an example on the double takes longer than Hypothesis' default 200 ms) and no shrinking (the planted
# bug's first counterexample says enough).
EXAMPLE_SETTINGS = (
    "from hypothesis import Phase, settings\n"
    "settings.register_profile('example', max_examples=10, derandomize=True, deadline=None,\n"
    "                          phases=[Phase.explicit, Phase.reuse, Phase.generate])\n"
    "settings.load_profile('example')\n"
)
# The same example with a bug planted in the kernel, in the same process (one vLLM import, not two).
EXAMPLE_PLANTED = """
import pytest
from fp8_verify.tools.mutants.catalogue import apply, revert

import test_example


def test_the_example_catches_a_planted_bug():
    apply("kernel-partials-12-bits")
    try:
        with pytest.raises(AssertionError, match="not bit-identical to the SM90 kernel's emulation"):
            test_example.test_w8a8_block_fp8_cutlass_matmul()
    finally:
        revert()
"""


@pytest.mark.skipif(not EXAMPLE.is_file(), reason="the docs/ example is not shipped with the installed suite")
def test_upstream_style_example(pytester, monkeypatch):
    """The worked example (a vLLM-style test rewritten as a property, docs/public-api.md) runs in a project
    of its own with the opt-in plugin and the public API -- and fails once a bug is planted in the kernel:
    partial sums one bit less precise, which the FP8 bound and vLLM's metric let through."""
    _fresh_project_env(monkeypatch)
    pytester.makeconftest(EXAMPLE_SETTINGS)
    pytester.makepyfile(test_example=EXAMPLE.read_text(), test_planted=EXAMPLE_PLANTED)
    r = pytester.runpytest_subprocess("-p", "fp8_verify.plugin", "-p", "no:cacheprovider", "-v")
    r.assert_outcomes(passed=2)
    r.stdout.fnmatch_lines(["*test_example.py::test_w8a8_block_fp8_cutlass_matmul PASSED*"])


def test_counterexample_travels_through_a_shared_database(pytester, monkeypatch, tmp_path):
    """A counterexample found by one run (a nightly, say) is replayed by another (CI on another host)
    through ``$FP8_VERIFY_EXAMPLE_DB``: two processes share a directory database. The second runs one
    example of its own, the simplest (x = 0, which passes), so it fails exactly when the first saved a
    failure -- and passes with an empty database."""
    _fresh_project_env(monkeypatch)
    pytester.makeconftest(NO_VLLM)
    pytester.makepyfile(
        """
        from hypothesis import given, strategies as st

        @given(x=st.integers(0, 1000))
        def test_small(x, fp8_record):  # fp8-verify's fixture: its profile (and database) apply
            assert x < 500
        """
    )
    args = ("-p", "no:cacheprovider", "--fp8-dry-run")
    monkeypatch.setenv("FP8_VERIFY_EXAMPLE_DB", str(tmp_path / "shared"))
    monkeypatch.setenv("FP8_VERIFY_PROFILE", "nightly")
    pytester.runpytest_subprocess(*args).assert_outcomes(failed=1)  # finds x = 500 and saves it
    monkeypatch.setenv("FP8_VERIFY_PROFILE", "ci")
    replay = pytester.runpytest_subprocess(*args, "--fp8-examples", "1")
    replay.assert_outcomes(failed=1)  # the ci profile reads the shared database...
    replay.stdout.fnmatch_lines(["*x=500*"])
    monkeypatch.setenv("FP8_VERIFY_EXAMPLE_DB", str(tmp_path / "empty"))
    # ...and with an empty one runs only its own example, which passes
    pytester.runpytest_subprocess(*args, "--fp8-examples", "1").assert_outcomes(passed=1)


def test_finding_xfail_holds_only_for_its_own_failure(pytester, monkeypatch):
    """A finding's xfail is strict about *how* the property fails: FV-002's cell xfails when it fails the
    way FV-002 says, fails the run when it fails another way, and fails the run when it passes (the
    defect would be fixed: the finding's range must say so)."""
    from fp8_verify.subject.compiled import default_backend
    from fp8_verify.suite.findings import FINDINGS

    s = load()
    if not FINDINGS["FV-002"].applies(s.vllm_version, default_backend(s.kernel == "real")):
        pytest.skip(f"FV-002 is not in vLLM {s.vllm_version}")
    _fresh_project_env(monkeypatch)
    pytester.makeconftest('pytest_plugins = ["fp8_verify.plugin"]')
    cell = (
        "import pytest\n\n"
        '@pytest.mark.paths(traces="_dynamic_padded_cutlass", dynamic_m=True)\n'
        "def test_one_graph_for_every_m(gemm):\n    {body}\n"
    )
    pytester.makepyfile(
        test_same=cell.format(
            body='raise AssertionError("3 graphs for M in [1, 5]; 1 expected '
            '(a guard on M or M % 4 recompiles)")'
        ),
        test_other=cell.format(body='raise ValueError("a new bug")'),
        test_passes=cell.format(body="pass"),
    )
    r = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rxXf")
    r.assert_outcomes(xfailed=1, failed=2)
    r.stdout.fnmatch_lines(["*XFAIL*test_same.py*FV-002*"])
    r.stdout.fnmatch_lines(["*expected the failure of FV-002*"])
    r.stdout.fnmatch_lines(["*XPASS(strict)*FV-002 expected on vLLM*"])


def test_a_stopped_run_keeps_its_report(pytester, monkeypatch):
    """SIGTERM (``timeout``, a CI job's time limit) ends the run as Ctrl-C does: the tests that ran are in
    the summary and in the JSON report, marked incomplete, instead of nothing at all."""
    import signal
    import subprocess
    import sys
    import time

    _fresh_project_env(monkeypatch)
    pytester.makeconftest(NO_VLLM)
    pytester.makepyfile(
        """
        import pathlib, time

        def test_a_quick():
            pass

        def test_b_slow():
            pathlib.Path("started").touch()
            time.sleep(300)
        """
    )
    run = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--fp8-report", "r.json", "--fp8-dry-run"],
        cwd=pytester.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 300
    while not (pytester.path / "started").exists() and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    run.send_signal(signal.SIGTERM)
    run.send_signal(signal.SIGTERM)  # as GNU timeout does: the process, then its group
    out, _ = run.communicate(timeout=120)
    assert "the run was stopped" in out, out[-3000:]
    report = json.loads((pytester.path / "r.json").read_text())
    outcomes = {x["property"]: x["outcome"] for x in report["results"]}
    assert report["complete"] is False and outcomes.get("test_a_quick") == "passed", (report, out[-2000:])


def test_workers_share_the_host(monkeypatch):
    """An xdist worker takes its share of the cores (torch's intra-op threads) and, where workers share a
    GPU, of the GPU's memory: the problem budget reads the share the worker was given."""
    import torch

    from fp8_verify.problem.budget import GPU_SHARE_ENV, gpu_share
    from fp8_verify.suite.isolation import share_cpu_threads

    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw3")
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "1024")
    before = torch.get_num_threads()
    try:
        share_cpu_threads()
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    monkeypatch.setenv(GPU_SHARE_ENV, "0.125")
    assert gpu_share() == 0.125
    for bad in ("0", "2", "lots"):
        monkeypatch.setenv(GPU_SHARE_ENV, bad)
        assert gpu_share() == 1.0


def test_example_counts_follow_the_kernel():
    """Where the real kernel runs an example costs milliseconds, on the double it costs its emulation:
    the profiles' counts differ by kernel, and ``--fp8-examples`` overrides both."""
    from fp8_verify.suite.options import PROFILES, max_examples

    for profile in PROFILES:
        assert max_examples(profile, real=True) >= 5 * max_examples(profile, real=False)
    assert max_examples("ci", real=True) >= 1000  # >= 1,000 per path for the within-bound property
    assert max_examples("ci", real=False, override=7) == max_examples("ci", real=True, override=7) == 7


@pytest.mark.parametrize(
    ("kernel", "args", "flag", "kept"),
    [
        ("real", ["tests"], False, ["gpu_selftest", "property"]),  # the GPU self-test first
        ("real", ["tests"], True, ["property", "selftest", "gpu_selftest"]),
        ("real", ["tests/test_cli.py"], False, ["property", "selftest", "gpu_selftest"]),
        ("double", ["tests"], False, ["property", "selftest", "gpu_selftest"]),
    ],
)
def test_self_tests_leave_the_real_kernel_run(kernel, args, flag, kept):
    """Where the real kernel runs, fp8-verify's own tests that do not touch it are deselected (and said
    to be), unless asked for or their file is named; the ones that touch the GPU stay and run first."""
    from types import SimpleNamespace

    import fp8_verify.suite.plugin as P

    class Item:
        def __init__(self, name: str, *marks: str) -> None:
            self.name, self.marks = name, marks

        def get_closest_marker(self, mark: str):
            return mark if mark in self.marks else None

    deselected: list = []
    config = SimpleNamespace(
        stash={P.STATE: SimpleNamespace(subject=SimpleNamespace(kernel=kernel))},
        args=args,
        getoption=lambda name: flag if name == "--fp8-self-tests" else None,
        hook=SimpleNamespace(pytest_deselected=lambda items: deselected.extend(items)),
    )
    items = [Item("property"), Item("selftest", "selftest"), Item("gpu_selftest", "selftest", "hopper")]
    P._deselect_self_tests(config, items)
    assert [i.name for i in items] == kept
    assert [i.name for i in deselected] == (["selftest"] if len(kept) == 2 else [])


SHARDED = """
import json, os
import pytest
from hypothesis import given, strategies as st

@pytest.mark.sharded
@given(x=st.integers(0, 10**9))
def test_draws(x, fp8_record, request):
    fp8_record.example()
    with open(f"drawn-{os.getpid()}-{request.node.name}.txt", "a") as fh:
        fh.write(f"{x}\\n")
"""


@pytest.mark.parametrize("profile", ["ci", "dev"])
def test_one_property_split_over_shards(pytester, monkeypatch, profile):
    """``--fp8-shards 3`` runs a sharded property as 3 items of a third of its examples each, drawn from
    seeds of their own (the ci profile derandomizes per item), and the report joins them into one row;
    with a pinned seed every shard would draw the same examples, so that is refused in one line."""
    _fresh_project_env(monkeypatch)
    monkeypatch.setenv("FP8_VERIFY_PROFILE", profile)
    pytester.makeconftest(NO_VLLM)
    pytester.makepyfile(test_sharded=SHARDED)
    args = ("-p", "no:cacheprovider", "--fp8-dry-run", "--fp8-examples", "9", "--fp8-report", "r.json")
    pytester.runpytest_subprocess(*args, "--fp8-shards", "3").assert_outcomes(passed=3)
    drawn = {f.name.rpartition("-")[2]: f.read_text().split() for f in pytester.path.glob("drawn-*.txt")}
    assert sorted(drawn) == [f"test_draws[shard{i}of3].txt" for i in (1, 2, 3)], drawn
    assert [len(v) for v in drawn.values()] == [3, 3, 3]
    assert len({frozenset(v) for v in drawn.values()}) == 3, drawn  # no two shards drew alike
    (row,) = json.loads((pytester.path / "r.json").read_text())["results"]
    assert (row["test"], row["examples"], row["shards"]) == ("test_sharded.py::test_draws", 9, 3)

    pinned = pytester.runpytest_subprocess(*args, "--fp8-shards", "3", "--hypothesis-seed", "1")
    assert pinned.ret == pytest.ExitCode.USAGE_ERROR
    pinned.stderr.fnmatch_lines(["*--fp8-shards splits a property's examples*pinned seed*"])


def test_shard_rows_join_worst_first():
    """A property's shards make one report row: examples and seconds add up, the worst outcome and the
    worst error/bound win, with the failing shard's reason."""
    from fp8_verify.suite.shards import merge

    def row(i: int, outcome: str, ratio: float | None, reason: str | None = None) -> dict:
        return {
            "test": f"t.py::p[bypass-shard{i}of3]",
            "outcome": outcome,
            "examples": 5,
            "max_error_over_bound": ratio,
            "reason": reason,
            "seconds": 1.5,
            "coverage": {"1 wave": i},
        }

    joined = merge([row(1, "passed", 0.5), row(2, "failed", 3.0, "out of bound"), row(3, "passed", None)])
    assert joined["test"] == "t.py::p[bypass]" and joined["outcome"] == "failed"
    assert joined["reason"] == "out of bound" and joined["max_error_over_bound"] == 3.0
    assert (joined["examples"], joined["seconds"], joined["shards"]) == (15, 4.5, 3)
    assert joined["coverage"] == {"1 wave": 6}
    assert merge([row(1, "xfailed", 2.0), row(2, "passed", 0.1)])["outcome"] == "xfailed"
