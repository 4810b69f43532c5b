"""Self-tests of the tooling (fp8_verify/tools) that run on any machine: every planted bug plants and
reverts cleanly, the mutants' options are checked, and calibration runs of several seeds pool."""

from __future__ import annotations

import os

import pytest

from fp8_verify.subject.vllm import load
from fp8_verify.tools.calibrate import merge
from fp8_verify.tools.mutants import catalogue

pytestmark = [pytest.mark.cpu, pytest.mark.selftest]


def _summary(seed: int, examples: int, ratio: float, fails: int = 0, device: str = "H100") -> dict:
    return {
        "vllm_version": "0.23.0",
        "torch_version": "2.11.0",
        "device": device,
        "bins": [0.1, 1.0],
        "examples": examples,
        "seconds": 10.0 * seed,
        "seed": seed,
        "per_path": {
            "some_path": {
                "examples": examples,
                "max_ratio": ratio,
                "worst": {"seed": seed},
                "histogram": [examples, 1, fails],
            }
        },
        "failures": [{"seed": seed}] * fails,
        "failure_count": fails,
    }


def test_merge_adds_counts_and_keeps_the_worst():
    m = merge([_summary(1, 100, 0.5), _summary(2, 50, 0.9, fails=2)])
    d = m["per_path"]["some_path"]
    assert (m["examples"], d["examples"], d["histogram"]) == (150, 150, [150, 2, 2])
    assert (d["max_ratio"], d["worst"]) == (0.9, {"seed": 2})
    assert (m["failure_count"], len(m["failures"]), m["seed"]) == (2, 2, [1, 2])


@pytest.mark.parametrize(
    "runs, match",
    [
        ([_summary(1, 10, 0.5), _summary(1, 10, 0.5)], "seeds .* repeat"),
        ([_summary(1, 10, 0.5), _summary(2, 10, 0.5, device="H200")], "differ in device"),
        ([], "no summaries"),
    ],
)
def test_merge_refuses_what_would_mislead(runs, match):
    with pytest.raises(ValueError, match=match):
        merge(runs)


@pytest.mark.parametrize("mutant_id", list(catalogue.CATALOGUE))
def test_catalogue_plants_and_reverts(mutant_id):
    """Every mutant plants in this vLLM and its undo restores the subject exactly (code objects and the
    op wrapper). Skipped inside a mutant run, and where the mutant's code is not in this release."""
    if os.environ.get("FP8_VERIFY_MUTANT"):
        pytest.skip("a mutant is planted in this process")
    if not load().available:
        pytest.skip(load().error)
    from vllm import _custom_ops as ops

    try:
        mod = catalogue._cutlass_module()
    except catalogue.MutantError as e:
        if catalogue.CATALOGUE[mutant_id].category != "kernel":
            pytest.skip(str(e))
        mod = None
    names = [
        n for n in ("_padded_cutlass", "_dynamic_padded_cutlass", "_padded_cutlass_fake") if hasattr(mod, n)
    ]
    before = {n: getattr(mod, n).__code__ for n in names}
    kernel = ops.cutlass_scaled_mm
    try:
        undo = catalogue.apply(mutant_id)
    except catalogue.MutantError as e:  # the code it edits is not in this release
        pytest.skip(str(e))
    try:
        changed = [n for n in names if getattr(mod, n).__code__ is not before[n]]
        changed += ["ops.cutlass_scaled_mm"] if ops.cutlass_scaled_mm is not kernel else []
        assert len(changed) == 1, f"{mutant_id} changed {changed}, expected exactly one thing"
    finally:
        undo()
    assert all(getattr(mod, n).__code__ is before[n] for n in names)
    assert ops.cutlass_scaled_mm is kernel
    assert catalogue.active() is None


@pytest.mark.parametrize(
    ("argv", "jobs"), [([], 1), (["--jobs", "4"], 4), (["--jobs", "0"], None), (["--jobs=x"], None)]
)
def test_mutants_jobs_option(argv, jobs, capsys):
    """``fp8-verify mutants --jobs N``: default 1, and anything but a whole number >= 1 is a one-line
    usage error (exit status 2), not a traceback."""
    from fp8_verify.cli import parser

    if jobs is not None:
        assert parser().parse_known_args(["mutants", *argv])[0].jobs == jobs
        return
    with pytest.raises(SystemExit) as e:
        parser().parse_known_args(["mutants", *argv])
    assert e.value.code == 2
    assert "--jobs: must be a whole number >= 1" in capsys.readouterr().err


def test_findings_md_is_current():
    """FINDINGS.md holds the table the findings generate (one fact, one place)."""
    from pathlib import Path

    from fp8_verify.tools.findings_table import table

    doc = Path(__file__).resolve().parent.parent / "FINDINGS.md"
    if not doc.is_file():
        pytest.skip("FINDINGS.md is not shipped with the installed suite")
    assert table() in doc.read_text(), "FINDINGS.md is stale: python -m fp8_verify.tools.findings_table"


def test_baselines_run_the_production_path():
    """The upstream-style baselines go through the path vLLM's linear layer takes on this release (the
    padding op its source calls, or the kernel itself from 0.24), not just any path that takes every M:
    a bug in that op's routing must reach them."""
    from fp8_verify.subject.vllm import load
    from fp8_verify.tools.baselines import production_path
    from fp8_verify.tools.bench.paths import production_op

    if not load().available:
        pytest.skip(f"vLLM is not usable here: {load().error}")
    op, gemm = production_op(), production_path()
    assert (gemm.spec.op == op) if op else (gemm.spec.op is None and not gemm.spec.pads_m), (op, gemm.name)


def test_matrix_keeps_a_release_that_did_not_run():
    """A release whose suite could not run (vLLM does not import in its environment) stays in the matrix
    as a red row with the reason, beside the releases that ran; findings carry first bad / first fixed."""
    from fp8_verify.tools.matrix import _not_run, document, markdown

    ran = {
        "vllm_version": "0.23.0",
        "torch_version": "2.11.0",
        "device": "CPU",
        "kernel": "double",
        "profile": "dev",
        "results": [
            {"property": "test_within_bound", "path": "p1", "outcome": "passed", "examples": 10},
            {
                "property": "test_x",
                "path": "p2",
                "outcome": "xfailed",
                "examples": 1,
                "finding": "FV-003",
            },
        ],
    }
    doc = document([_not_run("0.30.0", "fp8-verify: no subject to test: RuntimeError: nms"), ran])
    rows = {e["vllm"]: e for e in doc["releases"]}
    assert rows["0.30.0"]["unexpected_failures"] == 1 and rows["0.23.0"]["unexpected_failures"] == 0
    assert rows["0.23.0"]["findings_present"] == ["FV-003"]
    text = markdown(doc, "t")
    assert "vLLM 0.30.0 did not run: fp8-verify: no subject to test" in text and "FV-003" in text
    assert {f["id"] for f in doc["findings"]} >= {"FV-001", "FV-011"}
    assert all("first_bad" in f and "first_fixed" in f for f in doc["findings"])
