"""Which kernel schedule a problem gets on the installed release: the classes a run's coverage summary counts
(docs/kernel.md, section 7, has the rule with its sources).

* route: vLLM's ``_custom_ops.cutlass_scaled_mm`` sends N or K not a multiple of 16 to a Triton fallback;
  the dispatch (``c3x/scaled_mm_helper.hpp``) sends block scales of M and 1 elements (K <= 128 and
  N <= 128) to the per-token kernel; everything else runs the block-wise kernel;
* swap_ab: from 0.24.0 the block-wise kernel swaps A and B for M % 4 != 0
  (``scaled_mm_blockwise_sm90_fp8_dispatch.cuh``);
* waves: output tiles over the persistent grid -- 128 x 128 tiles, N tiles rounded up to the 1 x 2
  cluster; swapped: 128 x 16 tiles over (N, M) -- 1, 2, or 3 and more; no release uses stream-K;
* partial tiles: N % 128, K % 128 (a zero-filled last K-block);
* M mod 4.
"""

from __future__ import annotations

from ..problem import cdiv
from .releases import kernel_m_rule

H100_SMS = 132  # the grid when no GPU is here to ask


def classes(m: int, n: int, k: int, release: str | None, sm_count: int = H100_SMS) -> list[str]:
    """The schedule classes of an (M, N, K) problem, e.g. ``["block-wise", "1 wave", "M%4=1"]``."""
    out = [f"M%4={m % 4}"]
    if n % 16 or k % 16:
        return ["Triton fallback", *out]
    if k <= 128 and n <= 128:
        return ["per-token kernel", *out]
    swap = m % 4 != 0 and not kernel_m_rule(release).aligned
    # swapped: 128 x 16 tiles over (N, M); else 128 x 128 tiles, N tiles rounded up to the 1 x 2 cluster
    tiles = cdiv(n, 128) * cdiv(m, 16) if swap else cdiv(m, 128) * 2 * cdiv(cdiv(n, 128), 2)
    waves = cdiv(tiles, min(sm_count, tiles))
    wave = "1 wave" if waves == 1 else ("2 waves" if waves == 2 else "3+ waves")
    out = ["block-wise", *(["swap_ab"] if swap else []), wave, *out]
    if n % 128:
        out.append("partial N tile")
    if k % 128:
        out.append("partial K block")
    return out
