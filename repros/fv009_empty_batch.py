"""FV-009: an empty batch (M = 0) is an internal CUTLASS error, not an empty output.

torch.ops._C.cutlass_scaled_mm with M = 0 prints "Error: Failed to initialize the TMA descriptor"
dumps to stdout and raises ``cutlass_gemm_caller ... Error Internal``; vLLM's wrappers pass M = 0
straight through. Expected: an empty [0, N] result (or a clear error).
Needs: an SM90 GPU, torch and vLLM 0.23.0. Exit status 1 while the defect is present.
"""

import sys

import torch
import vllm.model_executor.kernels.linear.scaled_mm.cutlass  # noqa: F401  registers the ops
from _blockfp8 import problem

a, b, a_s, b_s, _ = problem()
try:
    out = torch.ops.vllm.dynamic_padded_cutlass(a[:0], b, a_s[:0], b_s, [128, 128], torch.bfloat16)
    print("returned", tuple(out.shape))
    sys.exit(0 if tuple(out.shape) == (0, b.shape[0]) else 1)
except RuntimeError as e:
    print(f"RuntimeError({str(e).strip()!r})")
    sys.exit(1)
