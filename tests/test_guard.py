"""Self-tests of the native-build guard (fp8_verify.suite.guard): no test module builds MMA-Sim's C++
extension at collection, a stale build lock fails the tests that need it in one line within seconds, and
a wait on a live lock is bounded -- a run once waited 32 minutes on a lock an interrupted build left."""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from fp8_verify.suite import guard

pytestmark = [pytest.mark.cpu, pytest.mark.selftest]
TESTS = Path(__file__).resolve().parent


def _plant_lock(root: Path, age_s: float) -> Path:
    lock = root / guard.MMASIM_EXTENSION / "lock"
    lock.parent.mkdir(parents=True)
    lock.touch()
    then = time.time() - age_s
    os.utime(lock, (then, then))
    return lock


def test_no_test_module_imports_mmasim_at_collection():
    """MMA-Sim's import builds (or waits for) a C++ extension: only a fixture may import it, never a test
    module's top level, which every run -- ``--mutant`` runs included -- executes at collection."""
    top_level = {}
    for f in TESTS.glob("*.py"):
        for node in ast.parse(f.read_text()).body:  # module level only (lazy imports are fine)
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            if isinstance(node, ast.Try):
                names = [a.name for n in ast.walk(node) if isinstance(n, ast.Import) for a in n.names]
                names += [n.module or "" for n in ast.walk(node) if isinstance(n, ast.ImportFrom)]
            if any(n.split(".")[0] == "mmasim" for n in names):
                top_level[f.name] = node.lineno
    assert not top_level, f"mmasim imported at module level (line): {top_level}"


def test_extension_dir_follows_torch(monkeypatch, tmp_path):
    """The lock is looked for where torch builds: ``$TORCH_EXTENSIONS_DIR/<name>``, else torch's cache."""
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    assert guard.extension_dir("x") == tmp_path / "x"
    monkeypatch.delenv("TORCH_EXTENSIONS_DIR")
    from torch.utils.cpp_extension import get_default_build_root

    where = guard.extension_dir("mmasim_fma_cpu")
    assert where.name == "mmasim_fma_cpu" and where.parent.parent == Path(get_default_build_root())
    assert where.parent.name.startswith(f"py{sys.version_info.major}{sys.version_info.minor}")


def test_a_stale_lock_fails_the_mmasim_tests_in_seconds(tmp_path):
    """A lock older than the limit (an interrupted build's) fails the tests that need MMA-Sim at once, in
    one line that names the lock; run in a fresh process, where MMA-Sim is not imported yet (without the
    guard this waits for ever: the subprocess' timeout fails the test)."""
    if importlib.util.find_spec("mmasim") is None:
        pytest.skip("mmasim is not installed: there is nothing to build")
    lock = _plant_lock(tmp_path, age_s=3600)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_XDIST", "FP8_VERIFY_"))}
    path = os.pathsep.join(filter(None, [str(TESTS.parent), os.environ.get("PYTHONPATH")]))
    env |= {"TORCH_EXTENSIONS_DIR": str(tmp_path), "PYTHONPATH": path}
    cmd = [sys.executable, "-m", "pytest", "--noconftest", "-p", "no:cacheprovider", "-q", "-x"]
    cmd += ["-c", os.devnull, "--rootdir", str(tmp_path), "-k", "test_wgmma_edge_cases_match_mmasim"]
    start = time.monotonic()
    r = subprocess.run(
        [*cmd, str(TESTS / "test_numerics.py")], env=env, capture_output=True, text=True, timeout=90
    )
    took = time.monotonic() - start
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr[-2000:]
    said = [line for line in r.stdout.splitlines() if "fp8-verify: the build of the native extension" in line]
    assert said and str(lock) in said[0] and "remove the file" in said[0], r.stdout[-3000:]
    assert took < 60, f"{took:.0f} s"
    assert lock.exists()  # reported, never removed behind the user's back


def test_a_held_lock_is_waited_on_for_the_limit_only(tmp_path):
    """Torch's own JIT build path (``cpp_extension.load``), with a fresh lock another process holds: the
    wait gives up after the limit with the one-line error, instead of polling for ever."""
    import inspect

    from torch.utils import cpp_extension
    from torch.utils.cpp_extension import load

    if "FileBaton" not in inspect.getsource(cpp_extension._jit_compile):
        pytest.skip(
            f"torch {torch.__version__} builds under an OS-level advisory lock (filelock), which a crashed "
            "build releases: a stale lock file no longer blocks its JIT builds"
        )
    (tmp_path / "probe.cpp").write_text('extern "C" int probe() { return 1; }\n')
    build = tmp_path / "build"
    build.mkdir()
    (build / "lock").touch()
    start = time.monotonic()
    with (
        pytest.raises(guard.NativeBuildError, match=r"held \d+ s, over the 1 s limit"),
        guard.bounded_build_wait(1.0),
    ):
        load("fp8_verify_probe", [str(tmp_path / "probe.cpp")], build_directory=str(build))
    assert time.monotonic() - start < 20


def test_a_released_lock_ends_the_wait(tmp_path, monkeypatch):
    """A live build (another xdist worker's) releases its lock within the limit: the waiter goes on."""
    from torch.utils.file_baton import FileBaton

    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))

    lock = _plant_lock(tmp_path, age_s=0)
    threading.Timer(0.3, lock.unlink).start()
    with guard.bounded_build_wait(30.0):
        FileBaton(str(lock)).wait()
    guard.check_lock(guard.MMASIM_EXTENSION, 30.0)  # no lock: nothing to say


def test_wait_limit_is_validated(monkeypatch):
    monkeypatch.setenv(guard.WAIT_ENV, "2.5")
    assert guard.wait_limit() == 2.5
    for bad in ("0", "-1", "soon"):
        monkeypatch.setenv(guard.WAIT_ENV, bad)
        with pytest.raises(guard.UsageError, match=guard.WAIT_ENV):
            guard.wait_limit()
