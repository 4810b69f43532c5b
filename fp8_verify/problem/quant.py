"""vLLM-style FP8 quantization that produces :class:`~fp8_verify.problem.BlockScaledProblem` inputs.

Mirrors the arithmetic of vLLM's ``per_token_group_quant_fp8`` (activations, 1 x bk groups) and of
block weight quantization (bn x bk blocks): ``scale = max(amax, eps) / 448``, optionally rounded up to a
power of two (UE8M0, ``2**ceil(log2(scale))``, as DeepGEMM-style checkpoints store them), then
``q = clamp(x / scale, -448, 448)`` cast to e4m3. The suite only needs *valid* quantized inputs: the
oracle dequantizes whatever tensors it is given, so a one-ulp difference from vLLM here cannot hide a bug.
"""

from __future__ import annotations

import torch

from .tensors import FP8, FP8_MAX, BlockScaledProblem, cdiv, column_major

EPS = 1e-10


def _scale_from_amax(amax: torch.Tensor, ue8m0: bool) -> torch.Tensor:
    scale = amax.clamp_min(EPS) / FP8_MAX
    if ue8m0:
        scale = torch.exp2(torch.ceil(torch.log2(scale)))
    return scale.float()


def _pad_to(x: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    return torch.nn.functional.pad(x, (0, cols - x.shape[1], 0, rows - x.shape[0]))


def quantize_activation(
    x: torch.Tensor, group: int = 128, ue8m0: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token-group quantization of ``x`` [M, K]: (fp8 [M, K], column-major fp32 [M, ceil(K/group)])."""
    m, k = x.shape
    kb = cdiv(k, group)
    xp = _pad_to(x.float(), m, kb * group).view(m, kb, group)
    scale = _scale_from_amax(xp.abs().amax(dim=-1), ue8m0)  # [M, kb]
    q = (xp / scale[..., None]).clamp(-FP8_MAX, FP8_MAX).view(m, kb * group)[:, :k]
    return q.contiguous().to(FP8), column_major(scale)


def quantize_weight(
    w: torch.Tensor, block: tuple[int, int] = (128, 128), ue8m0: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-block quantization of ``w`` [N, K]: (fp8 [N, K], fp32 [ceil(N/bn), ceil(K/bk)])."""
    n, k = w.shape
    bn, bk = block
    nb, kb = cdiv(n, bn), cdiv(k, bk)
    wp = _pad_to(w.float(), nb * bn, kb * bk).view(nb, bn, kb, bk)
    scale = _scale_from_amax(wp.abs().amax(dim=(1, 3)), ue8m0)  # [nb, kb]
    q = (wp / scale[:, None, :, None]).clamp(-FP8_MAX, FP8_MAX).view(nb * bn, kb * bk)[:n, :k]
    return q.contiguous().to(FP8), scale.contiguous()


def quantize(
    x: torch.Tensor,
    w: torch.Tensor,
    block: tuple[int, int] = (128, 128),
    out_dtype: torch.dtype = torch.bfloat16,
    ue8m0: bool = False,
    origin: dict | None = None,
) -> BlockScaledProblem:
    """Quantize activation ``x`` [M, K] and weight ``w`` [N, K] into a problem, as vLLM would.

    >>> p = quantize(torch.randn(5, 300), torch.randn(256, 300))
    >>> p.a_scale.shape, p.a_scale.stride(), p.b_scale.shape
    (torch.Size([5, 3]), (1, 5), torch.Size([2, 3]))
    """
    a, a_s = quantize_activation(x, block[1], ue8m0)
    b, b_s = quantize_weight(w, block, ue8m0)
    return BlockScaledProblem(a, a_s, b, b_s, tuple(block), out_dtype, dict(origin or {}))
