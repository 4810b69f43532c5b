"""Independent implementations of the same block-scaled GEMM, used as second opinions beside the
float64 reference: PyTorch's own block-wise scaled mm (cuBLASLt on SM90).

PyTorch's block-wise recipe does not take vLLM's scale layouts as they are. Its checks
(``torch/_meta_registrations.py``, ``scaled_mm`` v2, recipe 1x128 x 128x128) ask for

* activation scales ``[M, K/128]`` with strides ``(1, M)`` -- vLLM's M-major layout, and
* weight scales ``[L4, N/128]`` with strides ``(1, L4)``, where ``L4 = round_up(K/128, 4)``: the K-blocks
  of each N-block padded to a multiple of 4 (cuBLASLt's leading-dimension rule).

Passing vLLM's ``Bs.T`` (``[K/128, N/128]``, strides ``(1, K/128)``) reads the wrong memory for every
N-block after the first unless K/128 is a multiple of 4. So :func:`torch_block_scaled_mm` repacks the
weight scales; only layouts change, never values.
"""

from __future__ import annotations

import torch

from ..problem import BlockScaledProblem, cdiv


def padded_b_scale(b_scale: torch.Tensor, multiple: int = 4) -> torch.Tensor:
    """``b_scale`` ``[nb, kb]`` as the ``[round_up(kb, multiple), nb]`` K-major tensor cuBLASLt's
    128x128 block scaling reads; the padding blocks hold 1.0 and multiply only zero-padded K.

    >>> padded_b_scale(torch.arange(6.0).view(2, 3)).stride()
    (1, 4)
    """
    nb, kb = b_scale.shape
    l4 = cdiv(kb, multiple) * multiple
    buf = torch.ones(nb, l4, dtype=b_scale.dtype, device=b_scale.device)
    buf[:, :kb] = b_scale
    return buf.t()


def torch_block_scaled_mm(p: BlockScaledProblem) -> torch.Tensor:
    """``p`` through ``torch.nn.functional.scaled_mm`` (1x128 activation, 128x128 weight recipe).

    Needs N and K multiples of 128 (the recipe's shape rule), M a multiple of 4 (cuBLASLt finds no
    algorithm otherwise: CUBLAS_STATUS_NOT_SUPPORTED on an H100) and an SM90 GPU; raises
    ``NotImplementedError`` if this torch has no ``scaled_mm`` v2 API.
    """
    try:
        from torch.nn.functional import ScalingType, SwizzleType, scaled_mm
    except ImportError as e:
        raise NotImplementedError(f"torch {torch.__version__} has no torch.nn.functional.scaled_mm") from e
    if p.k % 128 or p.n % 128 or p.m % 4 or tuple(p.block) != (128, 128):
        raise ValueError(
            f"torch's block-wise recipe needs N, K % 128 == 0, M % 4 == 0, block [128, 128]: {p.describe()}"
        )
    return scaled_mm(
        p.a,
        p.b.t(),
        scale_a=p.a_scale,
        scale_recipe_a=ScalingType.BlockWise1x128,
        scale_b=padded_b_scale(p.b_scale),
        scale_recipe_b=ScalingType.BlockWise128x128,
        swizzle_a=SwizzleType.NO_SWIZZLE,
        swizzle_b=SwizzleType.NO_SWIZZLE,
        output_dtype=p.out_dtype,
    )


def torch_scaled_mm_gemm(a, b, a_scale, b_scale, block, out_dtype) -> torch.Tensor:
    """:func:`torch_block_scaled_mm` with vLLM's signature, to run PyTorch's block-wise ``scaled_mm`` as a
    path on every problem vLLM's paths take: ``fp8-verify check --path
    torch=fp8_verify.judge.oracles:torch_scaled_mm_gemm``.

    M is zero-padded to a multiple of 4 and N, K to multiples of 128 -- exactly: the padding's products
    are zero, and the scales' shapes ``ceil(K/128)``, ``ceil(N/128)`` do not change -- and the [M, N]
    corner returned. On an H100 (vLLM 0.23.0) without the padding every N or K off 128 failed."""
    m, k = a.shape
    n = b.shape[0]
    mp, np_, kp = cdiv(m, 4) * 4, cdiv(n, 128) * 128, cdiv(k, 128) * 128
    if (mp, np_, kp) != (m, n, k):
        a = _zero_padded(a, mp, kp)
        b = _zero_padded(b, np_, kp)
        sa = torch.ones(a_scale.shape[1], mp, dtype=a_scale.dtype, device=a_scale.device).t()  # M-major
        sa[:m] = a_scale
        a_scale = sa
    out = torch_block_scaled_mm(BlockScaledProblem(a, a_scale, b, b_scale, tuple(block), out_dtype))
    return out[:m, :n].contiguous()


def _zero_padded(t: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    out = torch.zeros(rows, cols, dtype=t.dtype, device=t.device)
    out[: t.shape[0], : t.shape[1]] = t
    return out
