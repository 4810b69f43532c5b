"""The CPU double of ``torch.ops._C.cutlass_scaled_mm``: same name, same schema, same preconditions as
the installed release's SM90 kernel.

Registered only where the real kernel cannot run (no SM90 GPU, or vLLM's ``_C`` library not loaded), so
that every line of vLLM's Python above the op -- ``_custom_ops.cutlass_scaled_mm``, ``_padded_cutlass``,
``_dynamic_padded_cutlass``, the ``torch.ops.vllm.*`` registrations, their fake implementations and the
``torch.cond`` under ``torch.compile`` -- runs unchanged on CPU tensors.

What it models, and where that was learned (vLLM 0.23.0 sources under
``csrc/quantization/w8a8/cutlass/``, then checked against the real op on an H100, see
``tests/test_hopper.py::test_double_conforms`` and ``docs/contract.md``):

* ``scaled_mm_entry.cu`` -- ``a``, ``b``, ``out`` 2-D and conformal; ``a`` and ``out`` row-major
  (``stride(1) == 1``), ``b`` column-major (``stride(0) == 1``); ``out.stride(0) % 16 == 0`` and
  ``b.stride(1) % 16 == 0``; a bias is 1-D, contiguous, of length N.
* ``c3x/scaled_mm_helper.hpp`` -- scales are fp32. When ``a_scales.numel()`` is 1 or M *and*
  ``b_scales.numel()`` is 1 or N the per-tensor/per-token/per-channel kernel runs (scales must be
  contiguous; a bias is allowed). Otherwise the block-wise kernel: 2-D scales of shapes
  ``[M, ceil(K/128)]`` and ``[ceil(K/128), ceil(N/128)]`` (group shapes 1x128 and 128x128 only), no bias.
* ``c3x/scaled_mm_blockwise_sm90_fp8_dispatch.cuh`` -- out dtype bf16 or fp16; before 0.24.0
  ``M % 4 == 0`` ("m must be divisible by 4": the TMA load of the M-major activation scales needs a
  16-byte pitch; this is why vLLM padded M), from 0.24.0 any M (swap_ab;
  :data:`~fp8_verify.subject.releases.KERNEL_NEEDS_M4`); M = 0 fails inside CUTLASS ("Error Internal").
* What the kernel *reads*, measured on an H100 (vLLM 0.23.0, stable-ABI build): the source's
  "a_scales must be M major" / "b_scales must be K major" checks are not in this build, and the kernel
  ignores the strides it is given -- A is read packed (row pitch K), activation scales packed M-major
  (pitch M), weight scales packed K-major, and A's bytes as e4m3 whatever their dtype. The double reads
  memory the same way (:func:`_as_kernel_reads`), so it reproduces those silent wrong answers
  (FINDINGS.md FV-003..FV-005) instead of hiding them.

Numerics: the SM90 kernel's own, bit for bit (:mod:`fp8_verify.numerics`): per 128-wide K-block four
chained wgmma K-slices as Hopper's tensor cores compute them (MMA-Sim's model), promoted with one fp32 fma
by ``fp32(s_a * s_b)``, then rounded to the output dtype; per-token scales (K <= 128 and N <= 128 with
block scales) take the other kernel's epilogue, ``s_a * (s_b * acc)``. ``tests/test_hopper.py::
test_double_conforms`` holds it to the real kernel's bits.
"""

from __future__ import annotations

import torch

from ..numerics import sm90_blockwise_gemm, sm90_scaled_gemm, uses_blockwise_kernel
from ..problem import cdiv
from .releases import PACKED_OPERANDS_CHECKED, MRule, kernel_m_rule

SCHEMA = (
    "cutlass_scaled_mm(Tensor! out, Tensor a, Tensor b, Tensor a_scales, Tensor b_scales, Tensor? bias) -> ()"
)
GROUP = 128

_lib: torch.library.Library | None = None
_m_rule: MRule = MRule.MULTIPLE_OF_4  # the installed release's (install() sets it)
_packed_checked = False  # the installed release rejects non-packed operands (install() sets it)


SRC = "/workspace/csrc/libtorch_stable/quantization/w8a8/cutlass/"


def _check(cond: bool, where: str, msg: str = "") -> None:
    """Raise as the stable-ABI build's ``STD_TORCH_CHECK`` does: ``"<function>, <file:line>, <msg>"``.

    Seen on an H100: checks written without a message carry only the location (``msg`` empty), which
    is what callers of vLLM 0.23.0 get (FINDINGS.md FV-008). Line numbers are the ones observed there;
    locations not observed name the file alone."""
    if not cond:
        func, loc = where.split(" ", 1)
        raise RuntimeError(f"{func}, {SRC}{loc}, {msg}")


def _is_contiguous_vector(t: torch.Tensor) -> bool:
    return t.is_contiguous() and (t.dim() == 1 or (t.dim() == 2 and min(t.shape) == 1))


def check_preconditions(out, a, b, a_scales, b_scales, bias) -> bool:
    """Raise RuntimeError where the SM90 op does, with its text; return True for the block-wise kernel."""
    entry = "cutlass_scaled_mm scaled_mm_entry.cu"
    _check(a.dim() == 2 and b.dim() == 2 and out.dim() == 2, entry)
    _check(out.size(0) == a.size(0) and a.size(1) == b.size(0) and b.size(1) == out.size(1), entry)
    _check(a.stride(1) == 1 and out.stride(1) == 1, entry)
    _check(b.stride(0) == 1, "cutlass_scaled_mm scaled_mm_entry.cu:203")
    _check(out.stride(0) % 16 == 0 and b.stride(1) % 16 == 0, entry)
    if bias is not None:
        _check(bias.numel() == b.size(1) and bias.is_contiguous() and bias.dim() == 1, entry)
    if _packed_checked:  # 0.33.0: check_c3x_scaled_mm_operands, scaled_mm_entry.cu
        for t, name, dim in ((a, "A", 0), (b, "B", 1), (out, "output", 0)):
            _check(
                t.size(dim) <= 1 or t.stride(dim) == t.size(1 - dim),
                entry,
                f"CUTLASS 3.x scaled_mm requires packed operands; {name} is not packed",
            )
            _check(
                t.data_ptr() % 16 == 0,
                entry,
                f"CUTLASS 3.x scaled_mm requires 16-byte-aligned pointers; {name} is misaligned",
            )
    helper = "dispatch_scaled_mm c3x/scaled_mm_helper.hpp"
    _check(a_scales.dtype == torch.float32, helper + ":15")
    _check(b_scales.dtype == torch.float32, helper)
    m, k, n = a.size(0), a.size(1), b.size(1)
    if not uses_blockwise_kernel(m, n, a_scales.numel(), b_scales.numel()):
        _check(a_scales.is_contiguous() and b_scales.is_contiguous(), helper)
        _check(a.dtype == torch.float8_e4m3fn, helper)
        return False
    _check(a_scales.dim() == 2, helper, "a scale must be 2d tensor.")
    _check(b_scales.dim() == 2, helper, "b scale must be 2d tensor.")
    _check(
        m == a_scales.size(0) and cdiv(k, GROUP) == a_scales.size(1),
        helper + ":44",
        "a_scale_group_shape must be [1, 128].",
    )
    _check(
        cdiv(k, GROUP) == b_scales.size(0) and cdiv(n, GROUP) == b_scales.size(1),
        helper + ":48",
        "b_scale_group_shape must be [128, 128].",
    )
    _check(bias is None, helper + ":54", "Bias not yet supported blockwise scaled_mm")
    _check(
        out.dtype in (torch.bfloat16, torch.float16),
        "cutlass_scaled_mm_blockwise_sm90_fp8 c3x/scaled_mm_blockwise_sm90_fp8.cu:17",
    )
    # Seen on an H100 with vLLM 0.23.0: the stable-ABI build has no "a_scales must be M major" /
    # "b_scales must be K major" checks (the layouts are assumed, see _as_kernel_reads).
    _check(
        _m_rule.admits(m),
        "cutlass_gemm_caller_blockwise c3x/scaled_mm_blockwise_sm90_fp8_dispatch.cuh:125",
        "m must be divisible by 4",
    )
    # CUTLASS cannot build the TMA descriptor for an empty A
    _check(m > 0, "cutlass_gemm_caller c3x/cutlass_gemm_caller.cuh:61", "Error Internal")
    return True


def _packed(t: torch.Tensor, shape: tuple[int, int], strides: tuple[int, int]) -> torch.Tensor:
    """``t``'s memory read from its first element with the given packed strides, as a TMA descriptor
    built from sizes alone reads it (strides the caller gave are ignored)."""
    flat = t.as_strided((t.untyped_storage().nbytes() // t.element_size(),), (1,), 0)
    return flat.as_strided(shape, strides, t.storage_offset())


def _as_kernel_reads(a, b, a_scales, b_scales):
    """What the SM90 block-wise kernel reads (learned on an H100, ``docs/contract.md``): A as a packed
    row-major [M, K] of e4m3 bytes (its row stride is ignored; any 1-byte dtype is reinterpreted), B as
    packed column-major [K, N], activation scales as packed M-major [M, kb] and weight scales as packed
    K-major [kb, nb], whatever strides the tensors carry."""
    m, k, n = a.size(0), a.size(1), b.size(1)
    kb, nb = a_scales.size(1), b_scales.size(1)
    a8 = _packed(a.view(torch.uint8), (m, k), (k, 1)).view(torch.float8_e4m3fn)
    b8 = _packed(b.view(torch.uint8), (k, n), (1, k)).view(torch.float8_e4m3fn)
    sa = _packed(a_scales, (m, kb), (1, m))
    sb = _packed(b_scales, (kb, nb), (1, kb))
    return a8, b8, sa, sb


def scaled_mm_cpu(out, a, b, a_scales, b_scales, bias) -> None:
    """The op's CPU kernel: the preconditions, then the SM90 kernel's exact arithmetic
    (:mod:`fp8_verify.numerics`) on the memory the kernel reads."""
    blockwise = check_preconditions(out, a, b, a_scales, b_scales, bias)
    if not blockwise:
        d = sm90_scaled_gemm(a, b.t(), a_scales, b_scales, torch.float32 if bias is not None else out.dtype)
        out.copy_(d if bias is None else (d + bias.float()).to(out.dtype))
        return
    a8, b8, sa, sb = _as_kernel_reads(a, b, a_scales, b_scales)
    out.copy_(sm90_blockwise_gemm(a8, b8.t(), sa, sb.t(), out.dtype))


#: The CUDA 13 build's answers to vLLM's capability queries (``scaled_mm_entry.cu``, ``cutlass_scaled_mm_
#: supports_*``: block-FP8 and group GEMMs from SM90, FP8 GEMMs from SM89), asked at import by
#: ``w8a8_utils`` (``CUTLASS_BLOCK_FP8_SUPPORTED``) to decide whether the CUTLASS block kernel class runs.
CAPABILITY_QUERIES = {
    "cutlass_scaled_mm_supports_block_fp8": lambda c: c >= 90,
    "cutlass_scaled_mm_supports_fp8": lambda c: c >= 89,
    "cutlass_group_gemm_supported": lambda c: c >= 90,
}


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


def follow(release: str | None) -> None:
    """Make :func:`scaled_mm_cpu` follow ``release``'s kernel contract (its M rule, the packed-operand
    check) without registering it: what the double's conformance test needs beside the real kernel."""
    global _m_rule, _packed_checked
    _m_rule = kernel_m_rule(release)
    _packed_checked = release in PACKED_OPERANDS_CHECKED


def install(release: str | None) -> None:
    """Register the CPU double under ``_C::cutlass_scaled_mm`` (defining the op if vLLM's ``_C`` did not
    load), following ``release``'s kernel contract. Idempotent. Only the CPU kernel is added: CUDA
    dispatch, if present, is untouched."""
    global _lib
    follow(release)
    if _lib is not None:
        return
    lib = torch.library.Library("_C", "FRAGMENT")
    if not op_exists():
        lib.define(SCHEMA)
    lib.impl("cutlass_scaled_mm", scaled_mm_cpu, "CPU")
    for name, answer in CAPABILITY_QUERIES.items():
        if not hasattr(torch.ops._C, name):  # vLLM's _C did not load: answer as its SM90 build does
            lib.define(f"{name}(int cuda_device_capability) -> bool")
            lib.impl(name, answer, "CompositeExplicitAutograd")
    _lib = lib


def installed() -> bool:
    return _lib is not None
