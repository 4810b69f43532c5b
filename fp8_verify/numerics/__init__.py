"""Bit-exact numerics of Hopper's FP8 tensor-core GEMM: a wgmma K-slice model and the SM90 block-scaled GEMM.

``wgmma`` models one ``wgmma ... .f32.e4m3.e4m3`` K-slice as MMA-Sim (arXiv:2511.10909) does, fast and
exactly; ``sm90`` builds vLLM's CUTLASS block-scaled GEMM from it (promotion to fp32 every 128 K with
one fma per block). See docs/numerics.md.
"""

from .sm90 import (
    PROMOTIONS,
    block_scale,
    fma32,
    kblock_nan,
    kblock_partial_exact,
    kblock_partial_wgmma,
    promote_fma,
    promote_fma_sa_then_sb,
    promote_mul_add,
    promote_mul_mul_add,
    round_output,
    sm90_blockwise_gemm,
    sm90_scaled_gemm,
    uses_blockwise_kernel,
)
from .wgmma import (
    E4M3Operand,
    Scratch,
    prepare_e4m3,
    truncate_f32,
    wgmma_dpa,
    wgmma_slice,
    wgmma_tile,
)

__all__ = [
    "PROMOTIONS",
    "E4M3Operand",
    "Scratch",
    "block_scale",
    "fma32",
    "kblock_nan",
    "kblock_partial_exact",
    "kblock_partial_wgmma",
    "prepare_e4m3",
    "promote_fma",
    "promote_fma_sa_then_sb",
    "promote_mul_add",
    "promote_mul_mul_add",
    "round_output",
    "sm90_blockwise_gemm",
    "sm90_scaled_gemm",
    "truncate_f32",
    "uses_blockwise_kernel",
    "wgmma_dpa",
    "wgmma_slice",
    "wgmma_tile",
]
