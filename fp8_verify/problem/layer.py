"""A layer problem: what a block-FP8 linear layer gets in a served model -- bf16 (or fp16) activations
``x`` [M, K] and the weight as a checkpoint stores it, e4m3 ``w`` [N, K] with fp32 block scales
``w_scale`` [ceil(N/128), ceil(K/128)] (``weight`` and ``weight_scale_inv`` of a DeepSeek-style FP8
checkpoint) -- plus the output dtype.

Activation regimes (``x``)
  ``normal``    N(0, 1) per element, rows spread over ``row_spread`` decades (a served batch mixes scales)
  ``outliers``  normal with a few channels 100x larger (the activation outliers of LLMs)
  ``sparse``    90% zeros; some whole 128-groups zero (the quantization's eps floor)
  ``tiny``      magnitudes around 1e-6 (scales far below 1, above vLLM's eps of 1e-10: its floor matters)
Weight regimes: ``fp32`` scales (most FP8 checkpoints), ``ue8m0`` (power-of-two scales, as DeepSeek-V3.1+
checkpoints store them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch

from .quant import quantize_weight
from .tensors import cdiv

ACT_REGIMES = ("normal", "outliers", "sparse", "tiny")
WEIGHT_REGIMES = ("fp32", "ue8m0")
ACT_DTYPES = ("bfloat16", "float16")


@dataclass(frozen=True)
class LayerSpec:
    """Everything needed to rebuild a layer problem bit for bit (the numbers come from ``seed``)."""

    m: int
    n: int
    k: int
    out_dtype: str = "bfloat16"
    act: str = "normal"
    act_dtype: str = "bfloat16"
    weights: str = "fp32"
    row_spread: int = 0
    seed: int = 0
    block: tuple[int, int] = (128, 128)

    def __post_init__(self) -> None:
        errs = [f"{d}={getattr(self, d)} must be >= 1" for d in ("m", "n", "k") if getattr(self, d) < 1]
        if self.out_dtype not in ("bfloat16", "float16"):
            errs.append(f"out_dtype={self.out_dtype!r} must be 'bfloat16' or 'float16'")
        if self.act not in ACT_REGIMES:
            errs.append(f"act={self.act!r} not in {ACT_REGIMES}")
        if self.act_dtype not in ACT_DTYPES:
            errs.append(f"act_dtype={self.act_dtype!r} not in {ACT_DTYPES}")
        if self.weights not in WEIGHT_REGIMES:
            errs.append(f"weights={self.weights!r} not in {WEIGHT_REGIMES}")
        if errs:
            raise ValueError("invalid LayerSpec: " + "; ".join(errs))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["block"] = list(self.block)
        return d


@dataclass(frozen=True)
class LayerProblem:
    """The tensors of one layer call plus how they were made (``origin``)."""

    x: torch.Tensor
    w: torch.Tensor
    w_scale: torch.Tensor
    block: tuple[int, int] = (128, 128)
    out_dtype: torch.dtype = torch.bfloat16
    origin: Mapping[str, Any] = field(default_factory=dict)

    family = "layer"

    @property
    def m(self) -> int:
        return self.x.shape[0]

    @property
    def n(self) -> int:
        return self.w.shape[0]

    @property
    def k(self) -> int:
        return self.x.shape[1]

    @property
    def device(self) -> torch.device:
        return self.x.device

    def args(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(x, w, w_scale)``: the positional tensors of a layer row's callable."""
        return self.x, self.w, self.w_scale

    def with_m(self, rows: slice) -> LayerProblem:
        return replace(self, x=self.x[rows].contiguous())

    def to(self, device: torch.device | str) -> LayerProblem:
        return replace(self, x=self.x.to(device), w=self.w.to(device), w_scale=self.w_scale.to(device))

    def flops(self) -> int:
        return 2 * self.m * self.n * self.k

    def describe(self) -> str:
        o = ", ".join(
            f"{k}={v}" for k, v in self.origin.items() if k not in ("m", "n", "k", "block", "out_dtype")
        )
        dt = str(self.out_dtype).removeprefix("torch.")
        return f"layer M={self.m} N={self.n} K={self.k} out={dt} (M%4={self.m % 4}){' ' + o if o else ''}"


def _activations(spec: LayerSpec, g: torch.Generator) -> torch.Tensor:
    m, k = spec.m, spec.k
    x = torch.randn(m, k, generator=g, device=g.device)
    if spec.row_spread:
        x = x * torch.pow(10.0, spec.row_spread * torch.rand(m, 1, generator=g, device=g.device))
    if spec.act == "outliers":
        cols = torch.randint(0, k, (max(1, k // 64),), generator=g, device=g.device)
        x[:, cols] *= 100.0
    elif spec.act == "sparse":
        x = torch.where(torch.rand(m, k, generator=g, device=g.device) < 0.9, 0.0, x)
        groups = cdiv(k, 128)
        dead = torch.rand(m, groups, generator=g, device=g.device) < 0.25
        x = x * (~dead).repeat_interleave(128, dim=1)[:, :k]
    elif spec.act == "tiny":
        x = x * 1e-6
    return x.to(getattr(torch, spec.act_dtype))


def build_layer(
    spec: LayerSpec, device: torch.device | str = "cpu", draw_on_device: bool | None = None
) -> LayerProblem:
    """The layer problem ``spec`` describes, on ``device`` (numbers drawn there unless
    ``draw_on_device=False``, as :func:`fp8_verify.problem.build` does).

    >>> build_layer(LayerSpec(m=3, n=128, k=256, seed=1)).describe()  # doctest: +ELLIPSIS
    'layer M=3 N=128 K=256 out=bfloat16 (M%4=3) act=normal...'
    """
    on_device = torch.device(device).type == "cuda" if draw_on_device is None else draw_on_device
    gen_dev = torch.device(device) if on_device else torch.device("cpu")
    g = torch.Generator(device=gen_dev).manual_seed(spec.seed)
    x = _activations(spec, g)
    w_real = torch.randn(spec.n, spec.k, generator=g, device=g.device) * 0.05
    w, w_scale = quantize_weight(w_real, spec.block, ue8m0=spec.weights == "ue8m0")
    p = LayerProblem(x, w, w_scale, tuple(spec.block), getattr(torch, spec.out_dtype), spec.to_dict())
    return p.to(device)
