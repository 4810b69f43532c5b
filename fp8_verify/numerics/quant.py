"""vLLM's FP8 quantization, bit for bit: the activation quantization a block-FP8 layer runs before its GEMM
and the UE8M0 weight requantization DeepGEMM's layers run at load.

Activations (``torch.ops._C.per_token_group_fp8_quant``, ``csrc/libtorch_stable/quantization/w8a8/fp8/
per_token_group_quant.cu`` in vLLM 0.23.0; ``QuantFP8.forward_cuda`` reaches it, and vLLM turns
``+quant_fp8`` on for every block-quantized model, ``vllm/config/vllm.py``), per group of 128 elements
of a row:

1. ``absmax = fmaxf(eps, max |x|)`` in fp32 -- ``fmaxf`` ignores NaN, so a NaN element does not reach the
   scale (``eps`` = 1e-10 from ``per_token_group_quant_fp8``);
2. ``s = absmax / 448`` (IEEE fp32 division: vLLM builds without fast math);
3. UE8M0 scales (DeepGEMM's layers, ``VLLM_USE_DEEP_GEMM_E8M0``): ``s = exp2f(ceilf(log2f(max(s,
   1e-10))))``, the power of two at or above ``s``. For bf16 and fp16 inputs ``s`` is never within
   log2f's error of a power of two without being one (its significand is ``m / 1.75`` for an 8- or
   11-bit ``m``), so the exact ceiling of log2 is the kernel's;
4. ``q = fminf(fmaxf(x / s, -448), 448)`` then ``__nv_fp8_e4m3(q)``: round to nearest even, saturating.
   ``fmaxf(NaN, -448)`` is -448, so a NaN element becomes -448 (not NaN); ``x / s`` is one fp32 rounding
   and the e4m3 conversion a second.

Weights (``requant_weight_ue8m0_inplace`` in ``fp8_utils.py``, run by ``deepgemm_post_process_fp8_weight
_block`` when E8M0 is used): dequantize ``w * s`` in fp32, then ``per_block_cast_to_fp8(..., use_ue8m0=
True)``: per 128 x 128 block ``amax = max(max |w|, 1e-4)``, ``s' = 2^ceil(log2(amax / 448))``,
``q = e4m3(w * (1 / s'))`` (exact: ``s'`` is a power of two).

``tests/test_hopper.py`` holds these to vLLM's kernels on an H100; on the CPU they are the doubles'
arithmetic (:mod:`fp8_verify.subject.cpu_quant`).
"""

from __future__ import annotations

import torch

FP8 = torch.float8_e4m3fn
FP8_MAX = 448.0
GROUP = 128
EPS = 1e-10  # per_token_group_quant_fp8's default
WEIGHT_AMAX_MIN = 1e-4  # per_block_cast_to_fp8's clamp
UE8M0_FLOOR = 1e-10  # the kernel's fmaxf(fabsf(y_s), 1e-10f) before log2f


def ceil_pow2(s: torch.Tensor) -> torch.Tensor:
    """The smallest power of two >= ``s`` (fp32, ``s`` > 0 finite; inf stays inf), exactly: what
    ``exp2(ceil(log2(s)))`` means, without log2's rounding."""
    mant, exp = torch.frexp(s)  # s = mant * 2**exp, mant in [0.5, 1)
    up = torch.where(mant == 0.5, exp - 1, exp)
    return torch.where(torch.isfinite(s), torch.ldexp(torch.ones_like(s), up), s).float()


def to_e4m3(q: torch.Tensor) -> torch.Tensor:
    """fp32 ``q`` (within +/-448 or NaN) to e4m3, round to nearest even (``__nv_fp8_e4m3``)."""
    return q.to(FP8)


def group_scales(x: torch.Tensor, group: int = GROUP, eps: float = EPS, ue8m0: bool = False) -> torch.Tensor:
    """Steps 1-3: fp32 scales [rows, cols / group] of ``x`` [rows, cols] (``cols % group == 0``)."""
    rows, cols = x.shape
    g = x.float().reshape(rows, cols // group, group).abs()
    g = torch.where(torch.isnan(g), torch.zeros_like(g), g)  # fmaxf ignores NaN
    absmax = torch.clamp_min(g.amax(dim=-1), eps)
    s = absmax / FP8_MAX
    if ue8m0:
        s = ceil_pow2(torch.clamp_min(s, UE8M0_FLOOR))
    return s


def quantize_groups(
    x: torch.Tensor, group: int = GROUP, eps: float = EPS, ue8m0: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """vLLM's per-token-group FP8 quantization of ``x`` [rows, cols]: (e4m3 [rows, cols], fp32 scales
    [rows, cols / group], row-major). Bit for bit vLLM's CUDA kernel (see the module docstring)."""
    rows, cols = x.shape
    if cols % group:
        raise ValueError(f"the last dimension {cols} must be divisible by the group size {group}")
    s = group_scales(x, group, eps, ue8m0)
    g = x.float().reshape(rows, cols // group, group)
    q = torch.fmin(torch.fmax(g / s[..., None], torch.tensor(-FP8_MAX)), torch.tensor(FP8_MAX))
    return to_e4m3(q.reshape(rows, cols)), s


def requantize_weight_ue8m0(
    w: torch.Tensor, s: torch.Tensor, block: tuple[int, int] = (128, 128)
) -> tuple[torch.Tensor, torch.Tensor]:
    """DeepGEMM's E8M0 weight requantization of e4m3 ``w`` [N, K] with fp32 block scales ``s``
    [ceil(N/bn), ceil(K/bk)]: (e4m3 [N, K], fp32 power-of-two scales of the same shape)."""
    n, k = w.shape
    bn, bk = block
    s_full = s.float().repeat_interleave(bn, dim=0)[:n].repeat_interleave(bk, dim=1)[:, :k]
    dq = w.float() * s_full
    nb, kb = -(-n // bn), -(-k // bk)
    padded = torch.zeros(nb * bn, kb * bk, dtype=torch.float32, device=w.device)
    padded[:n, :k] = dq
    view = padded.view(nb, bn, kb, bk)
    amax = view.abs().amax(dim=(1, 3), keepdim=True).clamp(min=WEIGHT_AMAX_MIN)
    sf = ceil_pow2(amax / FP8_MAX)
    q = to_e4m3(view * (1.0 / sf)).view(nb * bn, kb * bk)[:n, :k].contiguous()
    return q, sf.view(nb, kb)
