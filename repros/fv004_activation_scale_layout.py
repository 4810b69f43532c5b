"""FV-004: activation scales that are not packed M-major are accepted and misread.

vLLM's kernel source has ``TORCH_CHECK(a_scales.stride(0) == 1 ..., "a_scales must be M major")``, but
the SM90 build in vLLM 0.23.0 (libtorch_stable) accepts row-major scales -- e.g. from
per_token_group_quant_fp8(column_major_scales=False), the default -- and reads them as M-major.
torch.ops.vllm.dynamic_padded_cutlass is right for M % 4 != 0 (its padding copies the scales into a
column-major buffer) and wrong for M % 4 == 0 (the bypass hands them over as they are).
Needs: an SM90 GPU, torch and vLLM 0.23.0. Exit status 1 while the defect is present.
"""

import sys

import torch
import vllm.model_executor.kernels.linear.scaled_mm.cutlass  # noqa: F401  registers the ops
from _blockfp8 import problem, report

worst = 0.0
for m in (8, 5):
    a, b, a_s, b_s, ref = problem(m=m)
    op = torch.ops.vllm.dynamic_padded_cutlass
    report(f"M={m} column-major scales", op(a, b, a_s, b_s, [128, 128], torch.bfloat16), ref)
    rel = report(
        f"M={m} row-major scales   ",
        op(a, b, a_s.contiguous(), b_s, [128, 128], torch.bfloat16),
        ref,
    )
    worst = max(worst, rel)
sys.exit(1 if worst > 0.05 else 0)
