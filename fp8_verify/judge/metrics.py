"""The one-number accuracy metrics upstream projects check FP8 GEMMs with, as anchors beside the suite's
per-element verdict (docs/sensitivity.md compares what each catches):

* vLLM's ``tests/kernels/quantization/test_block_fp8.py``: ``mean|out - ref| / mean|ref| < 1e-3``, the
  reference rounded to the output dtype;
* DeepGEMM's ``calc_diff``: ``1 - 2 sum(x y) / sum(x x + y y) < 1e-3``.
"""

from __future__ import annotations

import torch

THRESHOLD = 1e-3  # both upstream tests use it


def vllm_rel_diff(out: torch.Tensor, ref: torch.Tensor) -> float:
    """``mean|out - ref| / mean|ref|`` in fp32, as vLLM's test computes it (``ref`` as given: the test
    rounds its reference to the output dtype first)."""
    o, r = out.float(), ref.float()
    return float(torch.mean(torch.abs(o - r)) / torch.mean(torch.abs(r)))


def calc_diff(x: torch.Tensor, y: torch.Tensor) -> float:
    """DeepGEMM's ``calc_diff``: one minus the cosine-like similarity, in float64."""
    x, y = x.double(), y.double()
    denominator = (x * x + y * y).sum()
    if float(denominator) == 0.0:
        return 0.0
    return float(1 - 2 * (x * y).sum() / denominator)
