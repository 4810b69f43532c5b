"""Self-tests of the calibration tooling that runs on any machine: pooling runs of several seeds."""

from __future__ import annotations

import pytest

from fp8_verify.calibrate import merge

pytestmark = pytest.mark.cpu


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
            "dynamic_eager": {
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
    d = m["per_path"]["dynamic_eager"]
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
