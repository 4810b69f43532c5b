"""FV-014: DeepGEMM's GEMM, as vLLM calls it, rejects wrong inputs with a C++ condition as the only text.

``torch.ops.vllm.fp8_gemm_nt_op`` (``model_executor/kernels/linear/scaled_mm/deep_gemm.py``, what
``DeepGemmFp8BlockScaledMMKernel`` runs) hands its arguments to DeepGEMM's ``fp8_gemm_nt``, whose host
checks (``DG_HOST_ASSERT``) raise ``RuntimeError("Assertion error (<file>:<line>): <condition>")``. An e5m2
or fp16 activation gets ``ab.scalar_type() == kPackedFP4 and arch_major == 10`` -- about FP4 and Blackwell,
not the e4m3 the SM90 kernel needs; activation scales one K-group short, or scales of another block
shape, get ``sf.size(-1) == ceil_div(k, gran_k * (...))``; a K not a multiple of 16 passes them all
and fails making the TMA descriptor: ``CUDA driver error (...runtime_utils.hpp:143): 1
(CUDA_ERROR_INVALID_VALUE, invalid argument)`` (seen on an H100 in the ci profile, vLLM 0.23.0).
Expected: an error that names the argument and
the rule. Needs: torch and vLLM 0.23.0 with its vendored DeepGEMM on an SM90 GPU (on a CPU fp8-verify's
double of DeepGEMM, which carries the same texts, stands in: fp8_verify.subject.cpu_deepgemm). Exit 1
while an error names no argument.
"""

import sys

import torch

if torch.cuda.is_available():
    import vllm.model_executor.kernels.linear.scaled_mm.deep_gemm  # noqa: F401  registers the op
else:
    from fp8_verify.subject.vllm import load

    load()  # the CPU doubles under vLLM (the platform stand-in, DeepGEMM's double)
    import vllm.model_executor.kernels.linear.scaled_mm.deep_gemm  # noqa: F401

from _blockfp8 import problem  # noqa: E402

a, b, a_s, b_s, _ = problem(device="cuda" if torch.cuda.is_available() else "cpu")
cases = {
    "e5m2 activation": (a.float().to(torch.float8_e5m2), a_s),
    "fp16 activation": (a.to(torch.float16), a_s),
    "activation scales one K-group short": (a, a_s[:, :-1]),
}
k = a.shape[1] - 8  # K not a multiple of 16: every host check passes, the TMA descriptor fails
short_b = b[:, :k].contiguous()
unclear = 0
for name, (x, x_s) in cases.items():
    out = torch.empty(x.shape[0], b.shape[0], dtype=torch.bfloat16, device=x.device)
    try:
        torch.ops.vllm.fp8_gemm_nt_op(x, x_s, b, b_s, out, False)
        print(f"{name}: computed")
    except RuntimeError as e:
        text = str(e).strip().splitlines()[0]
        print(f"{name}: {text}")
        unclear += "Assertion error" in text and not any(
            w in text.lower() for w in ("dtype", "e4m3", "shape")
        )
out = torch.empty(a.shape[0], b.shape[0], dtype=torch.bfloat16, device=a.device)
try:
    torch.ops.vllm.fp8_gemm_nt_op(a[:, :k].contiguous(), a_s, short_b, b_s, out, False)
    print(f"K = {k}: computed")
except RuntimeError as e:
    text = str(e).strip().splitlines()[0]
    print(f"K = {k}: {text}")
    unclear += "CUDA driver error" in text
sys.exit(1 if unclear else 0)
