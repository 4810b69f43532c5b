"""Build a :class:`BlockScaledProblem` from a :class:`ProblemSpec`: the spec names the shape and the
regimes (what Hypothesis draws and shrinks), a ``torch.Generator`` seeded from it draws the numbers.

Value regimes (the e4m3 values of A and B)
  ``quantized``  real-valued data (normal, per-row magnitudes spread over ``row_spread`` decades)
                 quantized the way vLLM does; the scales come from the data (fp32 or UE8M0)
  ``random``     uniformly random finite e4m3 codes (every exponent, subnormals included)
  ``extreme``    mostly +/-448 (the largest e4m3 value) with random signs
  ``subnormal``  e4m3 subnormals only (|x| <= 0.875 * 2**-6)
  ``sparse``     90% zeros, the rest random codes
Scale regimes (for every regime but ``quantized``)
  ``narrow`` U[0.5, 2]; ``wide`` log-uniform over 2**-30..2**30; ``pow2`` 2**randint(-20, 20) (UE8M0);
  ``tiny`` 2**-70..2**-60 (fp32 products of scales go subnormal); ``huge`` 2**30..2**45 (fp16 outputs
  overflow to inf)
"""

from __future__ import annotations

import torch

from .quant import quantize
from .spec import SCALE_LOG2, ProblemSpec
from .tensors import FP8, BlockScaledProblem, cdiv, column_major


def _random_codes(shape: tuple[int, ...], g: torch.Generator, lo: int = 0, hi: int = 0x7F) -> torch.Tensor:
    """Uniform e4m3 codes with magnitude bits in [lo, hi) (0x7F is NaN in e4m3fn, so excluded)."""
    mag = torch.randint(lo, hi, shape, generator=g, dtype=torch.int16, device=g.device)
    sign = torch.randint(0, 2, shape, generator=g, dtype=torch.int16, device=g.device) * 0x80
    return (mag | sign).to(torch.uint8).view(FP8)


def _values(regime: str, shape: tuple[int, int], g: torch.Generator) -> torch.Tensor:
    if regime == "random":
        return _random_codes(shape, g)
    if regime == "subnormal":
        return _random_codes(shape, g, 0, 8)  # exponent field 0
    if regime == "extreme":
        x = _random_codes(shape, g)
        top = torch.rand(shape, generator=g, device=g.device) < 0.8
        big = torch.where(torch.rand(shape, generator=g, device=g.device) < 0.5, -448.0, 448.0).to(FP8)
        return torch.where(top, big.view(torch.uint8), x.view(torch.uint8)).view(FP8)
    if regime == "sparse":
        x = _random_codes(shape, g).view(torch.uint8)
        return (
            torch.where(torch.rand(shape, generator=g, device=g.device) < 0.9, 0, x).to(torch.uint8).view(FP8)
        )
    raise ValueError(regime)


def _scales(regime: str, shape: tuple[int, int], g: torch.Generator) -> torch.Tensor:
    if regime == "narrow":
        return 0.5 + 1.5 * torch.rand(shape, generator=g, device=g.device)
    lo, hi = SCALE_LOG2[regime]
    if regime == "pow2":
        return torch.exp2(torch.randint(lo, hi + 1, shape, generator=g, device=g.device).float())
    return torch.exp2(
        lo + (hi - lo) * torch.rand(shape, generator=g, dtype=torch.float64, device=g.device)
    ).float()


def build(
    spec: ProblemSpec, device: torch.device | str = "cpu", draw_on_device: bool | None = None
) -> BlockScaledProblem:
    """The problem ``spec`` describes, on ``device``. The numbers are drawn where the problem lives
    (``draw_on_device=None``): a spec gives the same bits on every device of one type (torch's CUDA
    generator is Philox, the same on every GPU), and a GPU draws a checkpoint-sized weight in
    milliseconds where the CPU takes seconds -- which was most of an example's time on Hopper.
    ``draw_on_device=False`` draws on the CPU, for the same bits on a GPU and on the CPU double.

    >>> p = build(ProblemSpec(m=5, n=256, k=384, seed=1))
    >>> p.describe()
    'M=5 N=256 K=384 block=[128, 128] out=bfloat16 (M%4=1) values=quantized scales=fp32 row_spread=0 seed=1'
    """
    on_device = torch.device(device).type == "cuda" if draw_on_device is None else draw_on_device
    gen_dev = torch.device(device) if on_device else torch.device("cpu")
    g = torch.Generator(device=gen_dev).manual_seed(spec.seed)
    m, n, k = spec.m, spec.n, spec.k
    bn, bk = spec.block
    dtype = getattr(torch, spec.out_dtype)
    origin = spec.to_dict()
    if spec.values == "quantized":
        x = torch.randn(m, k, generator=g, device=g.device)
        if spec.row_spread:
            x = x * torch.pow(10.0, spec.row_spread * torch.rand(m, 1, generator=g, device=g.device))
        w = torch.randn(n, k, generator=g, device=g.device) * 0.05
        p = quantize(x, w, spec.block, dtype, ue8m0=spec.scales == "ue8m0", origin=origin)
    else:
        a, b = _values(spec.values, (m, k), g), _values(spec.values, (n, k), g)
        a_s = column_major(_scales(spec.scales, (m, cdiv(k, bk)), g))
        b_s = _scales(spec.scales, (cdiv(n, bn), cdiv(k, bk)), g).contiguous()
        p = BlockScaledProblem(a, a_s, b, b_s, tuple(spec.block), dtype, origin)
    return p.to(device)
