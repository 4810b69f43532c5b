"""The wheel carries the suite: built the standard way and installed into a fresh environment (its heavy
dependencies -- torch, vLLM -- borrowed from this one, fp8-verify only from the wheel), ``fp8-verify env``
and a short ``fp8-verify check`` run from a folder that is not a checkout. It adds no top-level package
but ``fp8_verify``: the strategies travel as ``fp8_verify.strategies`` (a package named ``strategies``
would collide with any other of that name)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

pytestmark = [pytest.mark.cpu, pytest.mark.selftest]
ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(
    not (ROOT / "pyproject.toml").is_file(), reason="needs a checkout to build the wheel from"
)
def test_wheel_runs_the_suite(tmp_path):
    # from a copy: setuptools packs whatever an earlier build left in build/lib (a package since renamed)
    src = tmp_path / "src"
    junk = shutil.ignore_patterns(
        ".*", "build", "dist", "*.egg-info", "__pycache__", "*-out", "fp8-verify-report*"
    )
    shutil.copytree(ROOT, src, symlinks=True, ignore=junk)
    dist = tmp_path / "dist"
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(src)]
    made = subprocess.run(build, capture_output=True, text=True)
    if made.returncode and ("No matching distribution" in made.stderr or "Could not find" in made.stderr):
        pytest.skip("no package index reachable to fetch the build backend (an offline machine)")
    assert made.returncode == 0, made.stderr[-2000:]
    wheel = next(dist.glob("fp8_verify-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if "/" in n and ".dist-info/" not in n}
    assert top == {"fp8_verify"}, sorted(top)
    assert "fp8_verify/strategies/__init__.py" in names and "fp8_verify/properties/test_paths.py" in names
    env = tmp_path / "env"
    venv.create(env, with_pip=False)
    site = next((env / "lib").glob("python*/site-packages"))
    # torch, vLLM, pytest, hypothesis from this process's import path -- but not the checkout, nor the
    # editable fp8-verify, whose finder lives in a .pth file that a plain path entry does not run.
    borrowed = [p for p in sys.path if p and os.path.isdir(p) and Path(p).resolve() != ROOT.resolve()]
    (site / "borrowed.pth").write_text("\n".join(borrowed) + "\n")
    drop = ("PYTHONPATH", "FP8_VERIFY_MUTANT")
    clean = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("PYTEST_XDIST")}
    # --ignore-installed: a borrowed path may hold another fp8-verify (a checkout's egg-info, an editable
    # install); pip must neither count it as satisfying the wheel nor uninstall it.
    pip = [sys.executable, "-m", "pip", "--python", str(env / "bin" / "python")]
    put = subprocess.run(
        [*pip, "install", "--no-deps", "--ignore-installed", "-q", str(wheel)],
        env=clean,
        capture_output=True,
        text=True,
    )
    assert put.returncode == 0, put.stderr[-2000:]
    work = tmp_path / "elsewhere"
    work.mkdir()
    probe = (
        "import importlib.util, fp8_verify, fp8_verify.strategies as s; "
        "print(fp8_verify.__file__, s.problem_specs.__module__, importlib.util.find_spec('strategies'))"
    )
    where = subprocess.run(
        [str(env / "bin" / "python"), "-c", probe], cwd=work, env=clean, capture_output=True, text=True
    )
    assert where.returncode == 0, where.stderr[-2000:]
    assert str(site) in where.stdout, f"fp8_verify imported from {where.stdout}, not from the wheel"
    assert where.stdout.split()[1:] == ["fp8_verify.strategies.problems", "None"], where.stdout
    exe = env / "bin" / "fp8-verify"
    out = subprocess.PIPE
    info = subprocess.Popen([str(exe), "env"], cwd=work, env=clean, stdout=out, stderr=out, text=True)
    r = subprocess.run(  # beside `env`: each imports vLLM, which takes most of their time
        [
            str(exe),
            "check",
            "--profile",
            "dev",
            "-q",
            "-n",
            "0",
            "-k",
            "test_opcheck or test_bound_constants",
        ],
        cwd=work,
        env=clean,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0 and " passed" in r.stdout, r.stdout[-3000:] + r.stderr[-2000:]
    said, err = info.communicate(timeout=600)
    assert info.returncode == 0 and "paths:" in said, said + err
