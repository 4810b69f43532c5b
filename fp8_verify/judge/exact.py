"""The bit-exact judge: a path's output against the emulation of the SM90 kernel's own arithmetic
(:mod:`fp8_verify.numerics`) on the same logical inputs, bit for bit.

Where the kernel's arithmetic can be emulated exactly the target is equality, not a tolerance: a bound
wide enough for every legal rounding (:mod:`.bound`) lets a 2% error or a few lost bits through
(docs/sensitivity.md); equality does not. The bound stays as the model-free guard: it judges paths the
emulation does not model (vLLM's Triton kernel, a user's kernel) and would still catch a gross error if
the emulation itself were wrong. NaN counts as equal to NaN whatever its payload (the hardware's
canonical NaN, 0x7FFF, and torch's CPU 0x7FC0 both mean "not a number").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from ..numerics import sm90_blockwise_gemm, sm90_scaled_gemm, uses_blockwise_kernel
from ..problem import BlockScaledProblem
from ..subject.kernels import CUTLASS_SM90, KERNELS, Arithmetic
from .verdict import attribute_mismatch

CUTLASS = KERNELS[CUTLASS_SM90].arithmetic


def emulate(
    p: BlockScaledProblem, arithmetic: Arithmetic | None = None, rows: int | None = None
) -> torch.Tensor:
    """What a kernel of ``arithmetic`` (default: the SM90 CUTLASS kernel's) computes for ``p``, bit for
    bit: the block-wise GEMM with the kernel's promotion, or -- where vLLM's dispatch sends block scales
    of M and 1 elements to the per-token kernel (K <= 128 and N <= 128; CUTLASS only) -- that kernel.

    ``rows``: ``p`` stacks problems of that many rows each (a batch of problems sharing the weight). The
    block-wise arithmetic computes each row from its own rows of A and As, so one call serves them all;
    the per-token kernel's epilogue order depends on each problem's M (swap_ab), so it runs per problem."""
    arithmetic = arithmetic or CUTLASS
    m = rows or p.m
    per_token = arithmetic.per_token_dispatch and not uses_blockwise_kernel(
        m, p.n, p.a_scale.numel() // (p.m // m), p.b_scale.numel()
    )
    if per_token and m < p.m:
        return torch.cat([emulate(p.with_m(slice(r, r + m)), arithmetic) for r in range(0, p.m, m)])
    if per_token:
        return sm90_scaled_gemm(p.a, p.b, p.a_scale, p.b_scale, p.out_dtype)
    return sm90_blockwise_gemm(p.a, p.b, p.a_scale, p.b_scale, p.out_dtype, promotion=arithmetic.promotion)


def ordered(x: torch.Tensor) -> torch.Tensor:
    """bf16/fp16 bit patterns as integers in value order (adjacent floats differ by 1; +0 and -0 are 0)."""
    v = x.contiguous().view(torch.int16).to(torch.int32)
    return torch.where(v >= 0, v, -(v + 32768))


@dataclass
class ExactVerdict:
    """Outcome of one bit-for-bit comparison; ``ok`` is the property, the rest explains it."""

    path: str
    problem: str
    shape: tuple[int, ...]
    mismatched: int = 0
    rows: int = 0  # rows with a mismatch
    max_ulps: int = 0
    worst: tuple[int, int] | None = None
    worst_out: float | None = None
    worst_expected: float | None = None
    attribute: str | None = None

    @property
    def ok(self) -> bool:
        return self.mismatched == 0 and self.attribute is None

    def message(self) -> str:
        if self.attribute is not None:
            return f"{self.path}: {self.attribute} on {self.problem}"
        if self.ok:
            return f"{self.path}: bit-identical to the SM90 kernel's emulation on {self.problem}"
        total = self.shape[0] * self.shape[1]
        share = 100.0 * self.mismatched / max(1, total)
        return "\n".join(
            [
                f"{self.path}: not bit-identical to the SM90 kernel's emulation on {self.problem}",
                f"Mismatched elements: {self.mismatched} / {total} ({share:.3g}%) in {self.rows} of "
                f"{self.shape[0]} rows",
                f"Greatest difference: {self.max_ulps} ulp(s) at index {self.worst} "
                f"(out={self.worst_out!r}, expected={self.worst_expected!r})",
            ]
        )

    def to_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}


def judge_exact(out: torch.Tensor, expected: torch.Tensor, p: BlockScaledProblem, path: str) -> ExactVerdict:
    """Compare ``out`` with ``expected`` (the emulation) bit for bit, NaN equal to NaN; never raises."""
    v = ExactVerdict(path, p.describe(), tuple(expected.shape))
    v.attribute = attribute_mismatch(out, tuple(expected.shape), expected.dtype)
    if v.attribute is not None or out.numel() == 0:
        return v
    out, expected = out.to(expected.device), expected
    both_nan = torch.isnan(out) & torch.isnan(expected)
    same = (out.contiguous().view(torch.int16) == expected.contiguous().view(torch.int16)) | both_nan
    bad = ~same
    v.mismatched = int(bad.sum())
    if not v.mismatched:
        return v
    v.rows = int(bad.any(dim=1).sum())
    either_nan = torch.isnan(out) | torch.isnan(expected)
    ulps = (ordered(out) - ordered(expected)).abs()
    ulps = torch.where(either_nan & bad, torch.iinfo(torch.int32).max, torch.where(bad, ulps.clamp_min(1), 0))
    flat = int(torch.argmax(ulps))
    i, j = divmod(flat, out.shape[1])
    v.max_ulps, v.worst = int(ulps[i, j]), (i, j)
    v.worst_out, v.worst_expected = float(out[i, j]), float(expected[i, j])
    return v
