"""Where problems live: a user's kernel given with --path gets CUDA tensors on any CUDA GPU, while vLLM's
rows follow vLLM's kernels (the GPU where the real SM90 kernel runs, else the CPU doubles)."""

from __future__ import annotations

import pytest
import torch

from fp8_verify.subject.registry import CUTLASS_SM90, GEMM, as_path, default
from fp8_verify.subject.vllm import load
from fp8_verify.suite.properties import device

pytestmark = [pytest.mark.cpu, pytest.mark.selftest]


def test_a_users_kernel_gets_cuda_tensors_on_a_gpu_that_is_not_hopper(monkeypatch):
    if load().kernel != "double":
        pytest.skip("the real SM90 kernel runs here: every row's problems live on its GPU")
    mine = as_path(lambda a, b, a_s, b_s, block, out_dtype: a, name="mine")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # an A100 or a B200, say
    assert device(mine) == torch.device("cuda")
    cutlass = default().get(default().select(kernel=CUTLASS_SM90, family=GEMM, compiled=False)[0].name)
    assert device(cutlass) == torch.device("cpu")  # vLLM's SM90 kernel: the CPU double here
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device(mine) == torch.device("cpu")
