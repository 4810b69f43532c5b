"""FV-006: the block-wise path does not check the activation dtype.

float8_e5m2 activations (same values as the e4m3 ones) are accepted and their bytes read as e4m3.
Needs: an SM90 GPU, torch and vLLM 0.23.0. Exit status 1 while the defect is present.
"""

import sys

import torch
import vllm.model_executor.kernels.linear.scaled_mm.cutlass  # noqa: F401  registers the ops
from _blockfp8 import problem, report

a, b, a_s, b_s, _ = problem()
a5 = a.float().to(torch.float8_e5m2)  # the values e5m2 can hold
ref = (a5.double() * a_s.double().repeat_interleave(128, 1)) @ (
    b.double() * b_s.double().repeat_interleave(128, 0).repeat_interleave(128, 1)
).T
op = torch.ops.vllm.dynamic_padded_cutlass
try:
    rel = report("e5m2 activation", op(a5, b, a_s, b_s, [128, 128], torch.bfloat16), ref)
except RuntimeError as e:
    print("rejected:", e)
    sys.exit(0)
sys.exit(1 if rel > 0.05 else 0)
