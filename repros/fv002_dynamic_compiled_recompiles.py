"""FV-002: under torch.compile, _dynamic_padded_cutlass guards on M % 4, so its torch.cond does not keep
both branches: M = 8 and M = 5 compile two graphs.

Needs: torch and vLLM 0.23.0 (runs on an SM90 GPU; Dynamo's guards do not depend on the backend, so the
"eager" backend is used to step around FV-001). Exit status 1 while the defect is present.
Cause: inside the cond's true branch, _padded_cutlass does ``if dim % pad_multiple == 0`` (a Python
``if`` on the symbolic M), which Dynamo resolves with the example M and guards on.
"""

import sys

import torch
from torch._dynamo.testing import CompileCounterWithBackend
from vllm.model_executor.kernels.linear.scaled_mm.cutlass import _dynamic_padded_cutlass

counter = CompileCounterWithBackend("eager")
f = torch.compile(
    lambda a, b, a_s, b_s: _dynamic_padded_cutlass(a, b, a_s, b_s, [128, 128], torch.bfloat16),
    fullgraph=True,
    backend=counter,
)
N, K = 256, 384
b = torch.randn(N, K, device="cuda").to(torch.float8_e4m3fn)
b_s = torch.rand(N // 128, K // 128, device="cuda")
for M in (8, 5, 12, 7):
    a = torch.randn(M, K, device="cuda").to(torch.float8_e4m3fn)
    a_s = torch.rand(K // 128, M, device="cuda").t()
    torch._dynamo.mark_dynamic(a, 0)
    torch._dynamo.mark_dynamic(a_s, 0)
    f(a, b, a_s, b_s)
print("graphs compiled for M in (8, 5, 12, 7):", counter.frame_count)
sys.exit(1 if counter.frame_count > 1 else 0)
