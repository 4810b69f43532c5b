"""The CPU double of ``torch.ops._C.per_token_group_fp8_quant``, vLLM's activation quantization kernel:
same name, same schema, the same checks and the kernel's exact arithmetic (:mod:`fp8_verify.numerics.
quant`) written where the kernel writes.

What the kernel does (vLLM 0.23.0, ``csrc/libtorch_stable/quantization/w8a8/fp8/per_token_group_quant.cu``,
``per_token_group_quant_8bit``), and so the double:

* checks, without messages (stable-ABI ``STD_TORCH_CHECK``): ``input`` and ``output_q`` contiguous,
  ``input.numel() % group_size == 0``, ``output_s.dim() == 2``; input dtype float, half or bfloat16,
  ``output_q`` an 8-bit float;
* groups are consecutive runs of ``group_size`` elements of the flat input (``global_group_id``);
* the scale of group ``g`` goes to ``output_s`` by the kernel's own addressing, not by the tensor's
  strides: column-major (``stride(0) < stride(1)``) at ``(g % size(1)) * stride(1) + g / size(1)``
  -- TMA-aligned pitches included -- and otherwise at flat offset ``g`` (the tensor is assumed packed);
* ``dummy_is_scale_transposed`` and ``dummy_is_tma_aligned`` are ignored (they are for a fusion pass).

Registered only where vLLM's ``_C`` did not load (no GPU), for CPU tensors.
``tests/test_hopper.py::test_quant_double_conforms`` holds it to the real kernel.
"""

from __future__ import annotations

import torch

from ..numerics.quant import quantize_groups

SCHEMA = (
    "per_token_group_fp8_quant(Tensor input, Tensor! output_q, Tensor! output_s, int group_size, "
    "float eps, float fp8_min, float fp8_max, bool scale_ue8m0, bool dummy_is_scale_transposed, "
    "bool dummy_is_tma_aligned) -> ()"
)
SRC = "/workspace/csrc/libtorch_stable/quantization/w8a8/fp8/per_token_group_quant.cu"
FLOATS = (torch.float32, torch.float16, torch.bfloat16)

_lib: torch.library.Library | None = None


def _check(cond: bool) -> None:
    """A message-less ``STD_TORCH_CHECK`` of ``per_token_group_quant_8bit``: the caller sees only where."""
    if not cond:
        raise RuntimeError(f"per_token_group_quant_8bit, {SRC}, ")


def _scale_slots(output_s: torch.Tensor, groups: int) -> torch.Tensor:
    """The storage offsets (from ``output_s``'s first element) where the kernel writes each group's scale."""
    g = torch.arange(groups, dtype=torch.int64)
    if output_s.stride(0) < output_s.stride(1):  # column-major: TMA-aligned pitches too
        rows = output_s.size(1)
        return (g % rows) * output_s.stride(1) + g // rows
    return g


def per_token_group_fp8_quant_cpu(
    x: torch.Tensor,
    output_q: torch.Tensor,
    output_s: torch.Tensor,
    group_size: int,
    eps: float,
    fp8_min: float,
    fp8_max: float,
    scale_ue8m0: bool,
    dummy_is_scale_transposed: bool = False,
    dummy_is_tma_aligned: bool = False,
) -> None:
    """The op's CPU kernel: the checks, then :func:`~fp8_verify.numerics.quant.quantize_groups` on the
    flat groups, written where the kernel writes."""
    _check(x.is_contiguous())
    _check(output_q.is_contiguous())
    groups = x.numel() // group_size
    _check(x.numel() % group_size == 0)
    _check(output_s.dim() == 2)
    if x.dtype not in FLOATS or output_q.dtype != torch.float8_e4m3fn:
        raise RuntimeError(f"per_token_group_quant_8bit not implemented for {x.dtype} -> {output_q.dtype}")
    if (fp8_min, fp8_max) != (-448.0, 448.0):
        raise NotImplementedError(f"fp8-verify's double models e4m3fn's range only, got {fp8_min, fp8_max}")
    q, s = quantize_groups(x.reshape(groups, group_size), group_size, eps, scale_ue8m0)
    output_q.view(-1).copy_(q.view(-1))
    flat = output_s.as_strided((output_s.untyped_storage().nbytes() // 4,), (1,), 0)
    flat[output_s.storage_offset() + _scale_slots(output_s, groups)] = s.view(-1)


def op_exists() -> bool:
    return hasattr(torch.ops._C, "per_token_group_fp8_quant")


def install() -> None:
    """Register the double for CPU tensors (defining the op if vLLM's ``_C`` did not load). Idempotent."""
    global _lib
    if _lib is not None:
        return
    lib = torch.library.Library("_C", "FRAGMENT")
    if not op_exists():
        lib.define(SCHEMA)
    lib.impl("per_token_group_fp8_quant", per_token_group_fp8_quant_cpu, "CPU")
    _lib = lib
