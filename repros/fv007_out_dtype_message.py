"""FV-007: asking for a float32 output fails a bare ``assert`` with no message.

Needs: torch and vLLM 0.23.0 (an SM90 GPU for the kernel; the assert fires before it).
Exit status 1 while the error does not name the problem.
"""

import sys

import torch
import vllm.model_executor.kernels.linear.scaled_mm.cutlass  # noqa: F401  registers the ops
from _blockfp8 import problem

a, b, a_s, b_s, _ = problem()
try:
    torch.ops.vllm.dynamic_padded_cutlass(a, b, a_s, b_s, [128, 128], torch.float32)
except AssertionError as e:
    print(f"AssertionError({str(e)!r})")
    sys.exit(0 if "dtype" in str(e) else 1)
sys.exit(0)
