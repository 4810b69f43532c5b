"""A block-scaled FP8 GEMM problem, held in the layouts vLLM's CUTLASS path expects.

``out[i, j] = sum_k (a[i, k] * a_scale[i, k // bk]) * (b[j, k] * b_scale[j // bn, k // bk])``

* ``a``       [M, K]  float8_e4m3fn, row-major (the quantized activation)
* ``a_scale`` [M, ceil(K/bk)] float32, column-major (stride ``(1, M)``): one scale per 1 x bk group
* ``b``       [N, K]  float8_e4m3fn, row-major (the weight; vLLM passes ``b.T`` to the kernel)
* ``b_scale`` [ceil(N/bn), ceil(K/bk)] float32, row-major: one scale per bn x bk block

Partial last blocks (K % bk, N % bn) are part of the model: a partial block has a scale like a whole one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import torch

FP8 = torch.float8_e4m3fn
FP8_MAX = 448.0
OUT_DTYPES = (torch.bfloat16, torch.float16)  # what vLLM's block-FP8 paths produce (the strategies draw)
# ... and what a problem may ask for: a path that takes float32 (the Triton GEMM) is judged in it too.
JUDGED_OUT_DTYPES = (*OUT_DTYPES, torch.float32)


def cdiv(a: int, b: int) -> int:
    """Ceiling division, as the kernel's ``ceil_div``."""
    return -(-a // b)


def column_major(t: torch.Tensor) -> torch.Tensor:
    """The same values as ``t`` (2-D) with strides ``(1, rows)``: the activation-scale layout."""
    return t.t().contiguous().t()


@dataclass(frozen=True)
class BlockScaledProblem:
    """Tensors of one block-scaled GEMM plus how they were made (``origin``, for reports and repros)."""

    a: torch.Tensor
    a_scale: torch.Tensor
    b: torch.Tensor
    b_scale: torch.Tensor
    block: tuple[int, int] = (128, 128)
    out_dtype: torch.dtype = torch.bfloat16
    origin: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems = self.shape_errors()
        if problems:
            raise ValueError("inconsistent BlockScaledProblem: " + "; ".join(problems))

    def shape_errors(self) -> list[str]:
        """What is inconsistent between the tensors (empty when the problem is well formed)."""
        errs = []
        bn, bk = self.block
        if self.a.dim() != 2 or self.b.dim() != 2:
            return [f"a and b must be 2-D, got {tuple(self.a.shape)} and {tuple(self.b.shape)}"]
        m, k = self.a.shape
        n, kb_ = self.b.shape
        if kb_ != k:
            errs.append(f"a is [M={m}, K={k}] but b is [N={n}, K={kb_}]")
        if tuple(self.a_scale.shape) != (m, cdiv(k, bk)):
            errs.append(f"a_scale is {tuple(self.a_scale.shape)}, expected {(m, cdiv(k, bk))}")
        if tuple(self.b_scale.shape) != (cdiv(n, bn), cdiv(k, bk)):
            errs.append(f"b_scale is {tuple(self.b_scale.shape)}, expected {(cdiv(n, bn), cdiv(k, bk))}")
        if self.out_dtype not in JUDGED_OUT_DTYPES:
            errs.append(f"out_dtype {self.out_dtype} is not one of {JUDGED_OUT_DTYPES}")
        return errs

    @property
    def m(self) -> int:
        return self.a.shape[0]

    @property
    def n(self) -> int:
        return self.b.shape[0]

    @property
    def k(self) -> int:
        return self.a.shape[1]

    @property
    def device(self) -> torch.device:
        return self.a.device

    def to(self, device: torch.device | str) -> BlockScaledProblem:
        """Move to ``device`` keeping each tensor's layout (``Tensor.to`` keeps strides)."""
        return replace(
            self,
            a=self.a.to(device),
            a_scale=self.a_scale.to(device),
            b=self.b.to(device),
            b_scale=self.b_scale.to(device),
        )

    def with_m(self, rows: slice) -> BlockScaledProblem:
        """The sub-problem made of some rows of ``a`` (activation scales follow, kept column-major)."""
        return replace(self, a=self.a[rows].contiguous(), a_scale=column_major(self.a_scale[rows]))

    def args(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(a, b, a_scale, b_scale)``: the positional tensors of vLLM's block-scaled entry points."""
        return self.a, self.b, self.a_scale, self.b_scale

    def flops(self) -> int:
        return 2 * self.m * self.n * self.k

    def describe(self) -> str:
        """One line naming the problem: dims, block, dtype and how it was drawn."""
        o = ", ".join(
            f"{k}={v}" for k, v in self.origin.items() if k not in ("m", "n", "k", "block", "out_dtype")
        )
        dt = str(self.out_dtype).removeprefix("torch.")
        return (
            f"M={self.m} N={self.n} K={self.k} block={list(self.block)} out={dt} "
            f"(M%4={self.m % 4}){' ' + o if o else ''}"
        )
