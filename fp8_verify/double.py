"""A CPU double of ``torch.ops._C.cutlass_scaled_mm``: same name, same schema, same preconditions.

Registered only where the real kernel cannot run (no SM90 GPU, or vLLM's ``_C`` library not loaded), so
that every line of vLLM's Python above the op -- ``_custom_ops.cutlass_scaled_mm``, ``_padded_cutlass``,
``_dynamic_padded_cutlass``, the ``torch.ops.vllm.*`` registrations, their fake implementations and the
``torch.cond`` under ``torch.compile`` -- runs unchanged on CPU tensors.

What it models, and where that was learned (vLLM 0.23.0 sources under
``csrc/quantization/w8a8/cutlass/``, then checked against the real op on an H100, see
``tests/test_double.py`` and ``docs/contract.md``):

* ``scaled_mm_entry.cu`` -- ``a``, ``b``, ``out`` 2-D and conformal; ``a`` and ``out`` row-major
  (``stride(1) == 1``), ``b`` column-major (``stride(0) == 1``); ``out.stride(0) % 16 == 0`` and
  ``b.stride(1) % 16 == 0``; a bias is 1-D, contiguous, of length N.
* ``c3x/scaled_mm_helper.hpp`` -- scales are fp32. When ``a_scales.numel()`` is 1 or M *and*
  ``b_scales.numel()`` is 1 or N the per-tensor/per-token/per-channel kernel runs (scales must be
  contiguous; a bias is allowed). Otherwise the block-wise kernel: 2-D scales of shapes
  ``[M, ceil(K/128)]`` and ``[ceil(K/128), ceil(N/128)]`` (group shapes 1x128 and 128x128 only), no bias.
* ``c3x/scaled_mm_blockwise_sm90_fp8_dispatch.cuh`` -- ``a_scales`` M-major (``stride(0) == 1``) and
  ``b_scales`` K-major (``stride(0) == 1``), or contiguous vectors; out dtype bf16 or fp16.
* The SM90 block-wise kernel's TMA load of the M-major activation scales needs a 16-byte aligned row
  pitch, i.e. ``M % 4 == 0`` (CUTLASS ``can_implement``); this is why vLLM pads M. Modelled as an error
  whose text matches the real one.

Numerics: per 128-wide K-block the fp8 products are summed in fp32, scaled by ``s_a * s_b`` in fp32 and
accumulated in fp32, then rounded once to the output dtype -- the ideal of what the tensor cores
approximate; its error is far inside :mod:`fp8_verify.bound`.
"""

from __future__ import annotations

import torch

SCHEMA = (
    "cutlass_scaled_mm(Tensor! out, Tensor a, Tensor b, Tensor a_scales, Tensor b_scales, "
    "Tensor? bias) -> ()"
)
GROUP = 128

_lib: torch.library.Library | None = None


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise RuntimeError(msg)


def _expected(cond: str) -> str:
    return f"Expected {cond} to be true, but got false."


def _is_contiguous_vector(t: torch.Tensor) -> bool:
    return t.is_contiguous() and (t.dim() == 1 or (t.dim() == 2 and min(t.shape) == 1))


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def check_preconditions(out, a, b, a_scales, b_scales, bias) -> bool:
    """Raise RuntimeError as the SM90 op would; return True for the block-wise kernel."""
    _check(a.dim() == 2 and b.dim() == 2 and out.dim() == 2,
           _expected("a.dim() == 2 && b.dim() == 2 && c.dim() == 2"))
    _check(out.size(0) == a.size(0) and a.size(1) == b.size(0) and b.size(1) == out.size(1),
           _expected("c.size(0) == a.size(0) && a.size(1) == b.size(0) && b.size(1) == c.size(1)"))
    _check(a.stride(1) == 1 and out.stride(1) == 1, _expected("a.stride(1) == 1 && c.stride(1) == 1"))
    _check(b.stride(0) == 1, _expected("b.stride(0) == 1"))
    _check(out.stride(0) % 16 == 0 and b.stride(1) % 16 == 0,
           _expected("c.stride(0) % 16 == 0 && b.stride(1) % 16 == 0"))
    if bias is not None:
        _check(bias.numel() == b.size(1) and bias.is_contiguous() and bias.dim() == 1,
               _expected("bias->numel() == b.size(1) && bias->is_contiguous() && bias->dim() == 1"))
    _check(a_scales.dtype == torch.float32, _expected("a_scales.dtype() == torch::kFloat32"))
    _check(b_scales.dtype == torch.float32, _expected("b_scales.dtype() == torch::kFloat32"))
    m, k, n = a.size(0), a.size(1), b.size(1)
    if a_scales.numel() in (1, m) and b_scales.numel() in (1, n):
        _check(a_scales.is_contiguous() and b_scales.is_contiguous(),
               _expected("a_scales.is_contiguous() && b_scales.is_contiguous()"))
        _check(a.dtype == torch.float8_e4m3fn, _expected("a.dtype() == torch::kInt8"))
        return False
    _check(a_scales.dim() == 2, "a scale must be 2d tensor.")
    _check(b_scales.dim() == 2, "b scale must be 2d tensor.")
    _check(m == a_scales.size(0) and _cdiv(k, GROUP) == a_scales.size(1),
           "a_scale_group_shape must be [1, 128].")
    _check(_cdiv(k, GROUP) == b_scales.size(0) and _cdiv(n, GROUP) == b_scales.size(1),
           "b_scale_group_shape must be [128, 128].")
    _check(bias is None, "Bias not yet supported blockwise scaled_mm")
    _check(out.dtype in (torch.bfloat16, torch.float16), _expected("out.dtype() == torch::kFloat16"))
    _check(a_scales.stride(0) == 1 or _is_contiguous_vector(a_scales), "a_scales must be M major")
    _check(b_scales.stride(0) == 1 or _is_contiguous_vector(b_scales), "b_scales must be K major")
    _check(m % 4 == 0, "Error Misaligned Operand")  # CUTLASS can_implement: TMA row pitch of a_scales
    return True


def _scaled_mm_cpu(out, a, b, a_scales, b_scales, bias) -> None:
    blockwise = check_preconditions(out, a, b, a_scales, b_scales, bias)
    m, k, n = a.size(0), a.size(1), b.size(1)
    af, bf = a.float(), b.float()  # fp8 values are exact in fp32
    if not blockwise:
        acc = (af @ bf) * a_scales.reshape(-1, 1).float() * b_scales.reshape(1, -1).float()
        if bias is not None:
            acc = acc + bias.float()
        out.copy_(acc.to(out.dtype))
        return
    acc = torch.zeros(m, n, dtype=torch.float32)
    col_scale = b_scales.float().repeat_interleave(GROUP, dim=1)[:, :n]  # [kb, N]
    for kb in range(_cdiv(k, GROUP)):
        ks = slice(kb * GROUP, min(k, (kb + 1) * GROUP))
        partial = af[:, ks] @ bf[ks, :]
        acc += partial * (a_scales[:, kb : kb + 1].float() * col_scale[kb : kb + 1, :])
    out.copy_(acc.to(out.dtype))


def op_exists() -> bool:
    return hasattr(torch.ops._C, "cutlass_scaled_mm")


def real_kernel_usable() -> tuple[bool, str]:
    """Whether ``torch.ops._C.cutlass_scaled_mm`` can run here on an SM90 GPU, and if not why."""
    if not torch.cuda.is_available():
        return False, "no CUDA GPU"
    major, minor = torch.cuda.get_device_capability()
    if (major, minor) != (9, 0):
        return False, f"GPU is sm_{major}{minor}, not SM90 (Hopper)"
    if not op_exists():
        return False, "vLLM's compiled _C ops did not load (torch.ops._C.cutlass_scaled_mm missing)"
    return True, "real SM90 kernel"


def install() -> None:
    """Register the CPU double under ``_C::cutlass_scaled_mm`` (defining the op if vLLM's ``_C`` did not
    load). Idempotent. Only the CPU kernel is added: CUDA dispatch, if present, is untouched."""
    global _lib
    if _lib is not None:
        return
    lib = torch.library.Library("_C", "FRAGMENT")
    if not op_exists():
        lib.define(SCHEMA)
    lib.impl("cutlass_scaled_mm", _scaled_mm_cpu, "CPU")
    _lib = lib


def installed() -> bool:
    return _lib is not None
