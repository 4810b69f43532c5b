"""The command line: bad input is one line and exit status 2 (never a traceback, never a test failure),
there is no green run without a subject, and a user's GEMM given with --path gets the properties -- a
broken one fails them with a message that says where."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.cpu, pytest.mark.selftest]
ROOT = Path(__file__).resolve().parent.parent


def fp8_verify(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_XDIST", "FP8_VERIFY_"))}
    base["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "fp8_verify", *args],
        env={**base, **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=900,
    )


def one_line_usage_error(r: subprocess.CompletedProcess, words: str) -> None:
    """Exit 2, no traceback, and one line of ours (``fp8-verify: ...``) naming the problem; other lines
    are the libraries' own import-time logging (torch's deprecations, vLLM 0.33's "Failed to import from
    vllm._C" on a CPU), which differ from release to release."""
    ours = [line for line in r.stderr.splitlines() if line.startswith("fp8-verify:")]
    assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-2000:]
    assert "Traceback" not in r.stderr and len(ours) == 1 and words in ours[0], r.stderr


@pytest.mark.parametrize(
    ("args", "env", "words"),
    [
        (["check", "--path", "x=nope_module:gemm"], {}, "cannot import nope_module:gemm"),
        (["check", "--path", "x=json:dumps"], {}, "does not take vLLM's"),
        (["check", "--path", "no equals sign"], {}, "expected NAME=module:function"),
        (["check"], {"FP8_VERIFY_PROFILE": "zzz"}, "is not a profile"),
        (["check"], {"FP8_VERIFY_MAX_PROBLEM_BYTES": "abc"}, "is not a number of bytes"),
        (["check"], {"FP8_VERIFY_MAX_PROBLEM_MACS": "-5"}, "must be a positive number"),
        (["check", "--profile", "weekly"], {}, "unknown profile"),
        (["mutants", "--only", "no-such-bug"], {}, "unknown mutant"),
        (["check", "--dry-run", "test_nothere.py"], {}, "is not a test file of the suite"),
    ],
    ids=[
        "path-import",
        "path-signature",
        "path-syntax",
        "profile-env",
        "bytes-env",
        "work-env",
        "profile",
        "mutant",
        "test-file",
    ],
)
def test_bad_input_is_one_line(args, env, words):
    one_line_usage_error(fp8_verify(*args, env=env), words)


@pytest.mark.parametrize(
    "chosen", ["tests/test_structure.py", "test_structure.py", "test_structure.py::test_no_import_cycle"]
)
def test_named_test_files_narrow_the_run(chosen):
    """``check FILE`` runs that file of the suite (found as given or by name), not the whole suite beside
    it."""
    r = fp8_verify("check", "--dry-run", "--collect-only", "-q", chosen, cwd=ROOT)
    ids = [line for line in r.stdout.splitlines() if "::" in line]
    assert r.returncode == 0 and ids, r.stdout[-2000:] + r.stderr[-2000:]
    assert all("test_structure.py::" in i for i in ids), ids
    assert len(ids) == (1 if "::" in chosen else len(ids)) and len(ids) < 10, ids


def test_no_green_run_without_vllm(tmp_path):
    """With vLLM unimportable ``check`` stops with one line; ``--dry-run`` runs the self-tests anyway."""
    fake = tmp_path / "site" / "vllm"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('this vLLM is broken on purpose')\n")
    env = {"PYTHONPATH": os.pathsep.join([str(fake.parent), str(ROOT), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run(
        [sys.executable, "-m", "fp8_verify", "check"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
    )
    one_line_usage_error(r, "no subject to test: vLLM is not importable")
    r = subprocess.run(
        [sys.executable, "-m", "fp8_verify", "check", "--dry-run", "-q", "-k", "test_bound_constants"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0 and "1 passed" in r.stdout, r.stdout[-2000:] + r.stderr[-2000:]


def test_a_broken_gemm_given_with_path_fails_clearly(tmp_path):
    """``--path`` adds a user's GEMM as a path; one that drops its last K-block fails the within-bound
    property on it with the what-where-how-much message (and the registry's paths are untouched)."""
    (tmp_path / "broken_gemm.py").write_text(
        "import torch\n\n"
        "def gemm(a, b, a_s, b_s, block, out_dtype):\n"
        "    k = a.shape[1] - a.shape[1] % 128 or a.shape[1]  # forgets a partial last K-block\n"
        "    x = a.float()[:, :k] * a_s.float().repeat_interleave(128, 1)[:, :k]\n"
        "    w = b.float()[:, :k] * b_s.float().repeat_interleave(128, 0)[: b.shape[0]]"
        ".repeat_interleave(128, 1)[:, :k]\n"
        "    return (x @ w.T).to(out_dtype)\n"
    )
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT), os.environ.get("PYTHONPATH", "")])}
    args = ["check", "--profile", "dev", "--path", "broken=broken_gemm:gemm", "-q", "-k", "test_within_bound"]
    r = fp8_verify(*args, "-p", "no:randomly", env=env)
    assert r.returncode == 1, r.stdout[-3000:]
    assert (
        "test_within_bound[broken]" in r.stdout
        and "broken: output not within the FP8 error bound" in r.stdout
    )
    assert "FAILED tests/test_paths.py::test_within_bound[broken]" in r.stdout


@pytest.mark.parametrize(
    ("args", "stealing"),
    [
        (["-n", "4"], True),
        (["-n4"], True),
        (["--numprocesses=2"], True),
        (["-q"], False),
        (["-n", "2", "--dist", "load"], False),
        (["-n", "2", "--dist=loadfile"], False),
    ],
)
def test_xdist_runs_use_work_stealing(args, stealing):
    """``check -n N`` adds xdist's worksteal schedule unless the user chose a ``--dist`` of their own."""
    from fp8_verify.cli import _work_stealing

    out = _work_stealing(args)
    assert (out[-2:] == ["--dist", "worksteal"]) == stealing, out
    assert out[: len(args)] == args
