"""The GEMM kernels that vLLM's block-FP8 paths end in, and what each one's arithmetic is: declared once,
read by the registry's rows (a row names its kernel), the judges (bit-exact emulation by arithmetic) and
the layer family (vLLM's kernel classes map to these).

An :class:`Arithmetic` says how the kernel forms each output element, as far as fp8-verify's emulation
(:mod:`fp8_verify.numerics`) needs: every kernel here computes a 128-wide K-block's partial sum on
Hopper's tensor cores (four chained wgmma k32 slices from zero) and promotes it to an fp32 accumulator;
they differ in how the two block scales enter the promotion, and in whether vLLM's dispatch sends small
problems elsewhere. Measured on an H100 (vLLM 0.23.0; docs/kernel.md has the evidence and its runs):

* CUTLASS's SM90 block-wise kernel: ``acc = fma(partial, fp32(sa * sb), acc)`` ("fma"); vLLM's
  dispatch sends block scales of M and 1 elements (K <= 128 and N <= 128) to its per-token kernel;
* DeepGEMM's SM90 FP8 GEMM (``fp8_gemm_nt``): the same promotion, no per-token dispatch;
* vLLM's Triton block GEMM (``accumulator += tl.dot(a, b) * a_s[:, None] * b_s[None, :]``):
  ``fma(fp32(partial * sa), sb, acc)`` ("fma_sa_then_sb": the compiler fuses the second multiply with
  the add), no per-token dispatch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

CUTLASS_SM90 = "cutlass-sm90"  # torch.ops._C.cutlass_scaled_mm on SM90
DEEPGEMM = "deepgemm-sm90"  # DeepGEMM's fp8_gemm_nt (vendored in vLLM's wheel, or an installed deep_gemm)
TRITON = "triton"  # vLLM's Triton block-FP8 kernel, w8a8_triton_block_scaled_mm
EXTERNAL = "external"  # a user's callable (--path NAME=module:function): judged by the bound only


@dataclass(frozen=True)
class Arithmetic:
    """How a kernel computes an element: the promotion (a key of
    :data:`fp8_verify.numerics.PROMOTIONS`) and whether vLLM's dispatch sends block scales of M and 1
    elements to the per-token kernel (:func:`fp8_verify.numerics.uses_blockwise_kernel`)."""

    promotion: str = "fma"
    per_token_dispatch: bool = False

    def describe(self) -> str:
        return f"promotion {self.promotion}" + (", per-token dispatch" if self.per_token_dispatch else "")


@dataclass(frozen=True)
class Kernel:
    """One GEMM kernel: its arithmetic (None: not known, judged by the bound only), the output dtypes it
    writes, the multiples of N and K it takes, and vLLM's linear-kernel classes that end in it."""

    name: str
    summary: str
    arithmetic: Arithmetic | None
    out_dtypes: tuple[str, ...] = ("bfloat16", "float16")
    n_multiple: int = 16
    k_multiple: int = 16
    vllm_classes: tuple[str, ...] = ()
    modelled: Callable[[int, int, int], bool] | None = None  # (M, N, K): where the arithmetic holds

    def arithmetic_for(self, m: int, n: int, k: int) -> Arithmetic | None:
        """The arithmetic for an (M, N, K) problem, or None where the kernel computes otherwise."""
        if self.arithmetic is None or (self.modelled is not None and not self.modelled(m, n, k)):
            return None
        return self.arithmetic


#: Below this BLOCK_SIZE_M Triton cannot use Hopper's wgmma (a warpgroup's 64 rows) and emits mma.sync,
#: another instruction whose accumulation fp8-verify does not model.
WGMMA_MIN_BLOCK_M = 64


def triton_block_m(m: int, n: int, k: int) -> int:
    """The BLOCK_SIZE_M vLLM's Triton block GEMM launches with for (M, N, K): its tuned config for the
    device (``get_w8a8_block_fp8_configs``, the entry nearest M, as ``w8a8_triton_block_scaled_mm``
    picks it) or its default of 64."""
    from vllm.model_executor.layers.quantization.utils.fp8_utils import get_w8a8_block_fp8_configs

    configs = get_w8a8_block_fp8_configs(n, k, 128, 128)
    if not configs:
        return 64
    return int(configs[min(configs.keys(), key=lambda x: abs(x - m))]["BLOCK_SIZE_M"])


def triton_uses_wgmma(m: int, n: int, k: int) -> bool:
    """Measured on an H100 (vLLM 0.23.0, docs/kernel.md): with vLLM's default config (BLOCK_SIZE_M 64)
    the Triton GEMM gives the emulation's bits; with a tuned config of BLOCK_SIZE_M 16 or 32 (DeepSeek-V3's
    shapes at small M) it does not."""
    return triton_block_m(m, n, k) >= WGMMA_MIN_BLOCK_M


KERNELS: dict[str, Kernel] = {
    k.name: k
    for k in (
        Kernel(
            CUTLASS_SM90,
            "vLLM's SM90 block-wise CUTLASS kernel (torch.ops._C.cutlass_scaled_mm)",
            Arithmetic("fma", per_token_dispatch=True),
            vllm_classes=("CutlassFp8BlockScaledMMKernel",),
        ),
        Kernel(
            DEEPGEMM,
            "DeepGEMM's SM90 FP8 GEMM (fp8_gemm_nt, through torch.ops.vllm.fp8_gemm_nt_op)",
            Arithmetic("fma"),
            out_dtypes=("bfloat16",),
            n_multiple=64,
            k_multiple=128,
            vllm_classes=("DeepGemmFp8BlockScaledMMKernel",),
        ),
        Kernel(
            TRITON,
            "vLLM's Triton block-FP8 GEMM (w8a8_triton_block_scaled_mm)",
            Arithmetic("fma_sa_then_sb"),
            vllm_classes=("TritonFp8BlockScaledMMKernel",),
            modelled=triton_uses_wgmma,
        ),
        Kernel(EXTERNAL, "a user's GEMM (--path)", None),
    )
}


def kernel(name: str) -> Kernel:
    if name not in KERNELS:
        raise KeyError(f"unknown kernel {name!r}; known: {', '.join(KERNELS)}")
    return KERNELS[name]


def for_vllm_class(cls_name: str) -> Kernel | None:
    """The kernel a vLLM linear-kernel class ends in (None: fp8-verify has no row for it)."""
    return next((k for k in KERNELS.values() if cls_name in k.vllm_classes), None)


#: vLLM's block-FP8 linear-kernel classes fp8-verify does not run, and why (reports, docs/kernel.md).
NOT_RUN: dict[str, str] = {
    "FlashInferFp8DeepGEMMDynamicBlockScaledKernel": (
        "FlashInfer's SM90 block-scale GEMM for M < 32 (it quantizes the bf16 input itself), DeepGEMM "
        "for M >= 32: vLLM's first choice on an H100 where flashinfer-python is installed "
        "(VLLM_BLOCKSCALE_FP8_GEMM_FLASHINFER=1 by default); the Hopper runner has no flashinfer and "
        "fp8-verify no model of FlashInfer's arithmetic"
    ),
    "MarlinFP8ScaledMMLinearKernel": (
        "a weight-only (W8A16) kernel for GPUs without FP8 tensor cores: bf16 activations times "
        "dequantized weights, another arithmetic than an FP8 GEMM; on SM90 CUTLASS always precedes it"
    ),
}
