"""FV-008: some precondition failures of the SM90 op carry no message.

vLLM 0.23.0's stable-ABI build reports a failed ``STD_TORCH_CHECK`` written without text as just
``"<function>, <file>:<line>, "``: a column-major B (B.T row-major) or float64 scales give errors that do
not say what is wrong. Needs: an SM90 GPU, torch and vLLM 0.23.0. Exit status 1 while present.
"""

import sys

import torch
import vllm.model_executor.kernels.linear.scaled_mm.cutlass  # noqa: F401  registers the ops
from _blockfp8 import problem

a, b, a_s, b_s, _ = problem()
op = torch.ops.vllm.dynamic_padded_cutlass
unclear = 0
for name, args in (
    ("column-major B", (a, b.t().contiguous().t(), a_s, b_s)),
    ("float64 scales", (a, b, a_s.double(), b_s.double())),
):
    try:
        op(*args, [128, 128], torch.bfloat16)
        print(f"{name}: accepted")
    except RuntimeError as e:
        text = str(e).strip()
        print(f"{name}: RuntimeError({text!r})")
        unclear += text.endswith(",")
sys.exit(1 if unclear else 0)
