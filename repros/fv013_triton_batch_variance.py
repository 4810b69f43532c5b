"""FV-013: vLLM's Triton block-FP8 GEMM gives a row other bits in a small batch than in a large one.

``w8a8_triton_block_scaled_mm`` (``model_executor/layers/quantization/utils/fp8_utils.py``) launches the
tuned config for (N, K, device) whose M is nearest the batch (``get_w8a8_block_fp8_configs``). For
DeepSeek-V3's kv_a_proj shape (N = 576, K = 7168) on an H100 those configs have BLOCK_SIZE_M 16 for up
to 128 rows and 64 above. The first rows of a 512-row batch, computed alone in a batch of 1 to 128, come
out with other bits; in a batch of 256 they are the same. Expected: a row's output does not depend on the
batch it is served in (the SM90 CUTLASS and DeepGEMM kernels hold this; vLLM has a batch-invariant mode,
VLLM_BATCH_INVARIANT, for the reason). Needs: an H100 (the configs are per device), torch and vLLM
0.22.0-0.34.0. Exit status 1 while a small batch differs, 2 without a CUDA GPU.

Seen 2026-12-06 on an NVIDIA H100 80GB HBM3 with vLLM 0.23.0 (docs/reports/gpu-2026-12-06/triton-study.log,
the same computation): batches of 1, 4, 16, 32, 64 and 128 rows differed in 35, 132, 618, 1216, 2434 and
4946 elements from the same rows in a batch of 512; a batch of 256 was equal.
"""

import sys

import torch

if not torch.cuda.is_available():
    print("needs a CUDA GPU (the tuned configs are chosen by device name)")
    sys.exit(2)

from vllm.model_executor.layers.quantization.utils.fp8_utils import w8a8_triton_block_scaled_mm  # noqa: E402

g = torch.Generator(device="cpu").manual_seed(7)
m, n, k = 512, 576, 7168
a = torch.randn(m, k, generator=g).clamp(-448, 448).to(torch.float8_e4m3fn).cuda()
b = (torch.randn(n, k, generator=g) * 8).clamp(-448, 448).to(torch.float8_e4m3fn).cuda()
a_s = (torch.rand(m, k // 128, generator=g) + 0.5).cuda()
b_s = (torch.rand(n // 128 + (n % 128 > 0), k // 128, generator=g) + 0.5).cuda()
full = w8a8_triton_block_scaled_mm(a, b, a_s, b_s, [128, 128], torch.bfloat16)
varies = 0
for rows in (1, 4, 16, 32, 64, 128, 256):
    sub = w8a8_triton_block_scaled_mm(a[:rows], b, a_s[:rows].contiguous(), b_s, [128, 128], torch.bfloat16)
    differ = int((sub.view(torch.int16) != full[:rows].view(torch.int16)).sum())
    print(f"first {rows:3d} rows alone vs in a batch of {m}: {differ} elements differ")
    varies += differ > 0
sys.exit(1 if varies else 0)
