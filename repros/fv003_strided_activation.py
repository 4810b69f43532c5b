"""FV-003: the SM90 block-wise CUTLASS kernel ignores the row stride of A (and B).

An activation that is a column slice of a wider buffer (a.stride(0) = K + 128) passes every check of
torch.ops._C.cutlass_scaled_mm (it only requires a.stride(1) == 1) and the kernel reads it as if packed.
Needs: an SM90 GPU, torch and vLLM 0.23.0. Exit status 1 while the defect is present.
"""

import sys

import torch
import vllm.model_executor.kernels.linear.scaled_mm.cutlass as cutlass
from _blockfp8 import problem, report

a, b, a_s, b_s, ref = problem()
M, K = a.shape
wide = torch.zeros(M, K + 128, dtype=torch.uint8, device="cuda")
wide[:, :K] = a.view(torch.uint8)
a_sliced = wide.view(torch.float8_e4m3fn)[:, :K]  # same values, row stride K + 128
good = report("contiguous A", cutlass.cutlass_scaled_mm(a, b, a_s, b_s, [128, 128], torch.bfloat16), ref)
bad = report(
    "sliced A    ",
    cutlass.cutlass_scaled_mm(a_sliced, b, a_s, b_s, [128, 128], torch.bfloat16),
    ref,
)
print("same inputs, no error raised" if bad > 0.05 else "fixed or rejected")
sys.exit(1 if bad > 0.05 else 0)
