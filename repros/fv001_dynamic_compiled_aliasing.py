"""FV-001: vLLM 0.23.0's _dynamic_padded_cutlass does not compile with M dynamic.

Needs: an SM90 GPU, torch and vLLM 0.23.0. Exit status 1 while the defect is present, 0 once fixed.
Expected: one compiled graph serving aligned and unaligned M (that is what its torch.cond is for).
Got (H100, torch 2.11.0+cu130): BackendCompilerFailed ... RuntimeError: cond_true might be aliasing
the input or the output!  Both torch.cond branches call cutlass_scaled_mm(), which evaluates
``weight.T`` and ``weight_scale.T`` inside the branch; Dynamo lifts each branch's transposed views as
separate graph inputs that alias each other, and cond's alias check rejects them.
"""

import sys

import torch
from vllm.model_executor.kernels.linear.scaled_mm.cutlass import _dynamic_padded_cutlass

torch.manual_seed(0)
M, N, K = 8, 256, 384
a = torch.randn(M, K, device="cuda").to(torch.float8_e4m3fn)
b = torch.randn(N, K, device="cuda").to(torch.float8_e4m3fn)
a_s = torch.rand(K // 128, M, device="cuda").t()  # [M, K/128], column-major as vLLM makes it
b_s = torch.rand(N // 128, K // 128, device="cuda")
torch._dynamo.mark_dynamic(a, 0)
torch._dynamo.mark_dynamic(a_s, 0)
f = torch.compile(
    lambda a, b, a_s, b_s: _dynamic_padded_cutlass(a, b, a_s, b_s, [128, 128], torch.bfloat16),
    fullgraph=True,
)
try:
    f(a, b, a_s, b_s)
except Exception as e:
    print("DEFECT PRESENT:", type(e).__name__, [ln for ln in str(e).splitlines() if "aliasing" in ln])
    sys.exit(1)
print("compiled and ran: fixed")
