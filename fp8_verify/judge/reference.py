"""The oracle: dequantize and multiply in float64, on the problem's own device.

Every FP8 e4m3 value and every fp32 scale is exact in float64, and so is each product
``a * s_a * b * s_b`` up to float64 rounding (53 bits against the 4 + 24 + 4 + 24 bits of the factors:
exact but for the last step), so the reference differs from the exact real-number result by at most a few
float64 ulps of ``sum |terms|`` -- nine orders of magnitude under any FP8 error bound.
"""

from __future__ import annotations

import torch

from ..problem import BlockScaledProblem


def expand_scales(scale: torch.Tensor, rows: int, cols: int, block: tuple[int, int]) -> torch.Tensor:
    """Repeat each block scale over its ``block`` of a [rows, cols] matrix (partial blocks cut)."""
    br, bc = block
    return scale.repeat_interleave(br, dim=0)[:rows].repeat_interleave(bc, dim=1)[:, :cols]


def dequantized(p: BlockScaledProblem) -> tuple[torch.Tensor, torch.Tensor]:
    """(A, B) in float64 with every scale applied: the logical operands of the GEMM."""
    bn, bk = p.block
    a = p.a.double().mul_(expand_scales(p.a_scale.double(), p.m, p.k, (1, bk)))
    b = p.b.double().mul_(expand_scales(p.b_scale.double(), p.n, p.k, (bn, bk)))  # in place: one copy less
    return a, b


def reference(p: BlockScaledProblem) -> torch.Tensor:
    """Exact ``A @ B.T`` in float64 ([M, N])."""
    a, b = dequantized(p)
    return a @ b.T


def reference_loop(p: BlockScaledProblem) -> torch.Tensor:
    """Slow, obviously correct reference: one Python loop per output element (self-tests only)."""
    bn, bk = p.block
    a, b = p.a.double().tolist(), p.b.double().tolist()
    sa, sb = p.a_scale.double().tolist(), p.b_scale.double().tolist()
    out = torch.zeros(p.m, p.n, dtype=torch.float64)
    for i in range(p.m):
        for j in range(p.n):
            acc = 0.0
            for k in range(p.k):
                acc += a[i][k] * sa[i][k // bk] * b[j][k] * sb[j // bn][k // bk]
            out[i, j] = acc
    return out.to(p.device)
