"""Self-tests of ``fp8-verify matrix`` (fp8_verify/tools/matrix.py) that run in seconds on any machine: a
release whose environment cannot be installed is a red row with pip's reason and the matrix goes on with
the next; an environment made by hand is used as it is. pip and the suite are played by a fake ``python``
in a planted environment (no download, no suite run)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import pytest

from fp8_verify.tools import matrix

pytestmark = [pytest.mark.cpu, pytest.mark.selftest]

# What pip 23.2 printed for ``pip install vllm==0.34.0`` here (abridged): the pin is not on the index.
PIP_SAID = """\
WARNING: Location 'file:///opt/pypi/simple/flashinfer-python/' is ignored: it is neither a file nor a \
directory.
ERROR: Ignored the following versions that require a different python version: 0.52.0 Requires-Python \
>=3.6,<3.9
ERROR: Could not find a version that satisfies the requirement flashinfer-python==0.7.3 (from vllm) \
(from versions: 0.7.2, 0.7.2.post1, 0.7.4)
ERROR: No matching distribution found for flashinfer-python==0.7.3
"""

# A stand-in for an environment's python: ``-c`` answers the installed vLLM, ``-m pip install vllm==X``
# installs X (or fails as pip does for 0.34.0), ``-m fp8_verify check`` writes a one-row report.
FAKE_PYTHON = """\
#!{python}
import json, pathlib, sys

here = pathlib.Path(__file__).parent.parent
args = sys.argv[1:]
with open(here / "calls", "a") as fh:
    fh.write(" ".join(args) + "\\n")
installed = here / "installed"
if args[0] == "-c":
    print(installed.read_text() if installed.exists() else "")
elif args[:3] == ["-m", "pip", "install"]:
    want = args[-1].split("==")[1]
    if want == "0.34.0":
        sys.stderr.write({pip_said!r})
        sys.exit(1)
    installed.write_text(want)
elif args[:3] == ["-m", "fp8_verify", "check"]:
    row = {{"property": "test_within_bound", "test": "t", "path": "p1", "kernel": "double",
           "outcome": "passed", "examples": 15, "max_error_over_bound": 0.5, "finding": None}}
    report = {{"vllm_version": installed.read_text(), "torch_version": "2.14.0", "device": "CPU",
              "kernel": "double", "profile": "dev", "results": [row]}}
    pathlib.Path(args[args.index("--report") + 1]).write_text(json.dumps(report))
"""


def _plant_env(folder: Path, installed: str | None = None) -> Path:
    """A fake virtual environment at ``folder`` (bin/python as above), holding vLLM ``installed``."""
    py = folder / "bin" / "python"
    py.parent.mkdir(parents=True)
    py.write_text(FAKE_PYTHON.format(python=sys.executable, pip_said=PIP_SAID))
    py.chmod(0o755)
    if installed:
        (folder / "installed").write_text(installed)
    return folder


def _matrix(argv: list[str], extra: tuple[str, ...] = ()) -> int:
    p = argparse.ArgumentParser()
    matrix.add_arguments(p)
    return matrix.main(p.parse_args(argv), list(extra))


def test_pip_reason_is_its_last_error_lines():
    reason = matrix.pip_reason(PIP_SAID)
    assert reason.endswith("No matching distribution found for flashinfer-python==0.7.3"), reason
    assert "requirement flashinfer-python==0.7.3 (from vllm)" in reason
    assert "from versions" not in reason and "different python" not in reason and "WARNING" not in reason
    build = (
        "Collecting x\n  error: subprocess-exited-with-error\nnote: This error originates from a subprocess\n"
    )
    assert matrix.pip_reason(build + "WARNING: w\n") == (
        "error: subprocess-exited-with-error / note: This error originates from a subprocess"
    )
    assert matrix.pip_reason("") == "nothing said"


def test_a_release_that_does_not_install_is_a_red_row_and_the_next_runs(tmp_path, monkeypatch):
    """vLLM 0.34.0's install fails (its flashinfer pin is not on the index): its row is red with pip's
    reason, 0.33.0 after it still installs and runs, the table is written, and the exit status is 1."""
    cache = tmp_path / "cache"
    base = _plant_env(cache / "base-torch2.14.0")
    (base / matrix._READY).touch()  # its tools are in
    monkeypatch.setattr(matrix, "CACHE", cache)
    monkeypatch.setattr(matrix, "_torch_pin", lambda release, log: "2.14.0")
    out = tmp_path / "out"

    assert _matrix(["--vllm", "0.34.0", "0.33.0", "--out", str(out)], extra=("--", "-x")) == 1

    doc = json.loads((out / "matrix.json").read_text())
    rows = {e["vllm"]: e for e in doc["releases"]}
    assert list(rows) == ["0.33.0", "0.34.0"]
    red = rows["0.34.0"]
    assert red["unexpected_failures"] == 1 and red["results"][0]["outcome"] == "error"
    assert "could not install vLLM 0.34.0" in red["did_not_run"]
    assert "No matching distribution found for flashinfer-python==0.7.3" in red["did_not_run"]
    assert str(out / "vllm-0.34.0.log") in red["did_not_run"]
    ran = rows["0.33.0"]
    assert ran["unexpected_failures"] == 0 and ran["results"][0]["examples"] == 15
    text = (out / "matrix.md").read_text()
    assert "* vLLM 0.34.0 did not run: could not install vLLM 0.34.0:" in text
    assert "No matching distribution found for flashinfer-python==0.7.3" in text
    assert "| 0.33.0 (double) | 0.34.0 (not run) |" in text
    calls = (base / "calls").read_text()
    assert "pip install -q vllm==0.34.0" in calls and "pip install -q vllm==0.33.0" in calls
    assert calls.count("fp8_verify check") == 1  # 0.33.0's; 0.34.0's suite never started
    assert " -q -x" in calls and " -- " not in calls  # pytest's options after ``--`` reach pytest as options
    assert (out / "matrix.png").is_file() or importlib.util.find_spec("matplotlib") is None


def test_a_release_whose_pin_is_not_found_is_a_red_row(tmp_path, monkeypatch):
    """Even the torch-pin look-up failing (no such release) is a row with pip's reason, not a traceback."""

    def no_such_release(release, log):
        raise matrix.InstallError(f"could not find vLLM {release}: {matrix.pip_reason(PIP_SAID)}")

    monkeypatch.setattr(matrix, "_torch_pin", no_such_release)
    out = tmp_path / "out"
    assert _matrix(["--vllm", "9.9.9", "--out", str(out)]) == 1
    (row,) = json.loads((out / "matrix.json").read_text())["releases"]
    assert row["vllm"] == "9.9.9" and "could not find vLLM 9.9.9: " in row["did_not_run"]


def test_an_existing_environment_is_used_as_it_is(tmp_path, monkeypatch):
    """``--env X.Y.Z=DIR`` runs the suite with DIR's python and installs nothing there; an environment
    holding another release is a red row that says which; a folder with no python is a usage error."""
    monkeypatch.setattr(matrix, "_torch_pin", lambda *a: pytest.fail("no pin look-up for --env"))
    env = _plant_env(tmp_path / "vllm-0.34.0", installed="0.34.0")
    out = tmp_path / "out"
    assert _matrix(["--env", f"0.34.0={env}", "--out", str(out)]) == 0
    (row,) = json.loads((out / "matrix.json").read_text())["releases"]
    assert (row["vllm"], row["unexpected_failures"], row["results"][0]["outcome"]) == ("0.34.0", 0, "passed")
    calls = (env / "calls").read_text()
    assert "pip" not in calls and "fp8_verify check" in calls

    assert _matrix(["--vllm", "0.33.0", "--env", f"0.33.0={env}", "--out", str(out)]) == 1
    (row,) = json.loads((out / "matrix.json").read_text())["releases"]
    assert row["did_not_run"].startswith(f"{env} holds vLLM 0.34.0, not 0.33.0")

    for bad in (f"0.34.0={tmp_path}", str(env), f"x={env}"):
        with pytest.raises(SystemExit) as e:
            _matrix(["--env", bad, "--out", str(out)])
        assert e.value.code == 2
