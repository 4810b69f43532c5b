"""FV-010: N (or K) not a multiple of 16 fails a bare ``assert`` with no message.

``vllm._custom_ops.cutlass_scaled_mm`` sends any B whose dimensions are not multiples of 16 to
``triton_scaled_mm``, a kernel for per-tensor and per-channel scales. With block scales it stops at
``assert scale_a.shape[1] == 1``: an AssertionError with no text, naming neither the shape nor the
scales. Expected: a result, or an error that names the 16-alignment (or block-scale) requirement.
Needs: torch and vLLM 0.23.0 (also seen in 0.22.1 and 0.33.0); the assert fires before any kernel,
so a GPU is used only if present. Exit status 1 while the error does not name the problem.
"""

import sys

import torch
import vllm.model_executor.kernels.linear.scaled_mm.cutlass  # noqa: F401  registers the ops
from _blockfp8 import problem

a, b, a_s, b_s, _ = problem(device="cuda" if torch.cuda.is_available() else "cpu")
b = b[:248].contiguous()  # N = 248: two weight-scale blocks still cover it
try:
    out = torch.ops.vllm.dynamic_padded_cutlass(a, b, a_s, b_s, [128, 128], torch.bfloat16)
    print("returned", tuple(out.shape))
    sys.exit(0)
except AssertionError as e:
    print(f"AssertionError({str(e)!r})")
    sys.exit(0 if "16" in str(e) or "scale" in str(e) else 1)
