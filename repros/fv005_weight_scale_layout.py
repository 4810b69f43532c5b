"""FV-005: weight scales that are not packed K-major (as seen by the kernel) are accepted and misread.

vLLM passes ``Bs.T`` to the kernel; a column-major Bs (e.g. a transposed or re-laid-out checkpoint
tensor) makes Bs.T row-major, which the SM90 build of vLLM 0.23.0 accepts and reads as K-major.
Needs: an SM90 GPU, torch and vLLM 0.23.0. Exit status 1 while the defect is present.
"""

import sys

import torch
import vllm.model_executor.kernels.linear.scaled_mm.cutlass  # noqa: F401  registers the ops
from _blockfp8 import problem, report

a, b, a_s, b_s, ref = problem(m=8, n=384, k=512)
op = torch.ops.vllm.dynamic_padded_cutlass
report("row-major Bs   ", op(a, b, a_s, b_s, [128, 128], torch.bfloat16), ref)
rel = report("column-major Bs", op(a, b, a_s, b_s.t().contiguous().t(), [128, 128], torch.bfloat16), ref)
sys.exit(1 if rel > 0.05 else 0)
