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
def test_bad_input_is_one_line(args, env, words, monkeypatch, capsys):
    """In this process (every input is checked before vLLM or pytest starts, so ``main`` returns before
    doing anything else); the process as a whole is checked once, below."""
    from fp8_verify.cli import main

    for name in [v for v in os.environ if v.startswith("FP8_VERIFY_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code = main(args)
    err = capsys.readouterr().err
    one_line_usage_error(subprocess.CompletedProcess(args, code, "", err), words)


def test_bad_input_ends_the_process_in_one_line():
    """The same as a process: ``python -m fp8_verify`` with a bad ``--path`` exits 2 with our one line."""
    one_line_usage_error(
        fp8_verify("check", "--path", "x=nope_module:gemm"), "cannot import nope_module:gemm"
    )


@pytest.mark.parametrize(
    "chosen", ["tests/test_structure.py", "test_structure.py", "test_structure.py::test_no_import_cycle"]
)
def test_named_test_files_are_found(chosen):
    """``check FILE`` finds a test file of the suite as given or by name (a node id too), and passes the
    other arguments on as they are."""
    from fp8_verify.cli import _selection

    chosen_files, rest = _selection(ROOT / "tests", [chosen, "-k", "x.py", "-q"])
    file, sep, node = chosen.partition("::")
    assert [Path(c.partition("::")[0]).resolve() for c in chosen_files] == [ROOT / "tests" / Path(file).name]
    assert chosen_files[0].endswith(sep + node) and rest == ["-k", "x.py", "-q"]


def test_named_test_files_narrow_the_run():
    """``check FILE::TEST`` runs that test of the suite (found by its file's name), not the whole suite
    beside it."""
    r = fp8_verify(
        "check", "--dry-run", "--collect-only", "-q", "test_structure.py::test_no_import_cycle", cwd=ROOT
    )
    ids = [line for line in r.stdout.splitlines() if "::" in line]
    assert r.returncode == 0 and ids == ["tests/test_structure.py::test_no_import_cycle"], (
        r.stdout[-2000:] + r.stderr[-2000:]
    )


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
        [
            sys.executable,
            "-m",
            "fp8_verify",
            "check",
            "--dry-run",
            "-q",
            "test_structure.py::test_no_import_cycle",
        ],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0 and "1 passed" in r.stdout, r.stdout[-2000:] + r.stderr[-2000:]


def test_a_broken_gemm_given_with_path_fails_clearly(tmp_path):
    """``--path`` adds a user's GEMM as a path; one that drops its last K-block fails the within-bound
    property on it with the what-where-how-much message. (Only that item runs: the registry's paths are
    the rest of the suite's business.)"""
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
    args = ["check", "--profile", "dev", "--path", "broken=broken_gemm:gemm", "-q", "test_paths.py"]
    r = fp8_verify(*args, "-k", "test_within_bound and broken", "-p", "no:randomly", env=env, cwd=ROOT)
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


@pytest.mark.parametrize(
    ("args", "cores", "added"),
    [
        ([], 2, ["-n", "2"]),
        (["-q"], 16, ["-n", "4"]),  # at most 4: each worker imports vLLM
        ([], 1, []),
        (["-n", "0"], 8, []),  # the user's -n, whatever it is
        (["-n3"], 8, []),
        (["-p", "no:xdist"], 8, []),
        (["--pdb"], 8, []),
        (["--collect-only"], 8, []),
    ],
)
def test_a_whole_suite_run_on_the_double_uses_every_core(args, cores, added, monkeypatch, capsys):
    """On the CPU double each property runs on one core: ``check`` spreads the suite over one xdist
    worker per core unless told otherwise (``-n``, ``-p no:xdist``, a debugger, collection only)."""
    from fp8_verify import cli

    monkeypatch.setattr(cli.os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    assert cli._default_workers(args) == [*args, *added]
    assert ("xdist workers" in capsys.readouterr().err) == bool(added)
