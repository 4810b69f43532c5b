"""FV-011: vLLM's Triton block-FP8 GEMM checks its inputs with bare ``assert`` statements.

``w8a8_triton_block_scaled_mm`` (``model_executor/layers/quantization/utils/fp8_utils.py``, the block-FP8
GEMM of GPUs without the CUTLASS kernel) asserts ``A.shape[:-1] == As.shape[:-1] and A.is_contiguous()``
and ``triton.cdiv(K, block_k) == As.shape[-1]`` without a message: a sliced or row-strided activation, or
activation scales one K-group short, end in an ``AssertionError`` with no text. Expected: an error that
names the argument and the rule (or, for a strided A, a result: the kernel takes strides). Needs: torch
and vLLM 0.22.0-0.33.0; the asserts fire before the kernel, so a GPU is used only if present. Exit status
1 while an error does not name the problem.
"""

import sys

import torch
from _blockfp8 import problem
from vllm.model_executor.layers.quantization.utils.fp8_utils import w8a8_triton_block_scaled_mm

a, b, a_s, b_s, _ = problem(device="cuda" if torch.cuda.is_available() else "cpu")
wide = torch.zeros(a.shape[0], a.shape[1] + 128, dtype=torch.uint8, device=a.device)
wide[:, : a.shape[1]] = a.view(torch.uint8)
cases = {
    "A sliced from a wider buffer": (wide.view(a.dtype)[:, : a.shape[1]], a_s),
    "A every other row": (
        torch.cat([a, a]).view(2, *a.shape).transpose(0, 1).reshape(-1, a.shape[1])[::2],
        a_s,
    ),
    "activation scales one K-group short": (a, a_s[:, :-1]),
}
unclear = 0
for name, (x, x_s) in cases.items():
    try:
        out = w8a8_triton_block_scaled_mm(x, b, x_s, b_s, [128, 128], torch.bfloat16)
        print(f"{name}: returned {tuple(out.shape)}")
    except AssertionError as e:
        print(f"{name}: AssertionError({str(e)!r})")
        unclear += not str(e).strip()
sys.exit(1 if unclear else 0)
