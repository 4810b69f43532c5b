"""How each family of subject is judged, so that properties stay the same for all of them.

* A GEMM row's output is judged on its own problem, by its kernel's arithmetic.
* A layer row's output is judged on the GEMM problem the layer *should* have formed: fp8-verify's exact
  emulation of vLLM's quantization (:mod:`fp8_verify.numerics.quant`) applied to the layer's bf16
  activations and checkpoint weights, as vLLM's decisions for the layer say (UE8M0 scales or not, the
  E8M0 weight requantization) -- so the GEMM oracles (bound, bit-exact emulation) judge the composed
  layer, and a wrong quantization anywhere shows as a wrong output.
* A quantization row's output ``(q, scales)`` is judged against the same emulation, bit for bit, and
  against a model-free bound: every ``q * s`` is the e4m3 value nearest to ``x / s`` (saturating), and
  every scale covers its group's absolute maximum without overflow.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..numerics.quant import FP8_MAX, GROUP, quantize_groups, requantize_weight_ue8m0
from ..problem import BlockScaledProblem, column_major
from ..problem.layer import LayerProblem
from ..subject.layer import Decisions
from .verdict import attribute_mismatch


def gemm_view(p, decisions: Decisions | None) -> BlockScaledProblem:
    """The GEMM problem a row's output on ``p`` is judged on (see the module docstring)."""
    if isinstance(p, BlockScaledProblem):
        return p
    if decisions is None:
        raise ValueError(f"a layer problem needs vLLM's decisions to be judged: {p.describe()}")
    a, a_s = quantize_groups(p.x, GROUP, ue8m0=decisions.act_ue8m0)
    w, w_s = p.w, p.w_scale
    if decisions.weight_ue8m0:
        w, w_s = requantize_weight_ue8m0(w, w_s, tuple(p.block))
    origin = {"quantized_from": p.describe(), "by": decisions.kernel_class}
    return BlockScaledProblem(a, column_major(a_s), w, w_s.contiguous(), tuple(p.block), p.out_dtype, origin)


@dataclass
class QuantVerdict:
    """Outcome of judging one quantization: bits against the emulation, and the model-free bound."""

    path: str
    problem: str
    exact: bool = True
    q_mismatched: int = 0
    s_mismatched: int = 0
    layout: str | None = None  # the scales' layout differs from what vLLM decided
    bound_violations: list[str] = field(default_factory=list)
    attribute: str | None = None

    @property
    def ok(self) -> bool:
        bits = not self.exact or (self.q_mismatched == 0 and self.s_mismatched == 0)
        return bits and self.layout is None and not self.bound_violations and self.attribute is None

    def message(self) -> str:
        if self.ok:
            return f"{self.path}: quantization exact and within bound on {self.problem}"
        parts = [f"{self.path}: quantization wrong on {self.problem}"]
        if self.attribute:
            parts.append(self.attribute)
        if self.q_mismatched or self.s_mismatched:
            parts.append(
                f"not vLLM's kernel's bits: {self.q_mismatched} e4m3 values and {self.s_mismatched} scales "
                "differ from the emulation"
            )
        if self.layout:
            parts.append(self.layout)
        parts.extend(self.bound_violations)
        return "\n".join(parts)


def _scale_layout_error(s: torch.Tensor, m: int, decisions: Decisions) -> str | None:
    want = decisions.act_scale_layout
    if want == "row-major":
        ok = s.stride(-1) == 1 or s.shape[-1] == 1
    elif want == "column-major":
        ok = s.stride(0) == 1 and (s.shape[1] == 1 or s.stride(1) == m)
    else:  # column-major TMA-aligned: pitch M rounded up to 4
        ok = s.stride(0) == 1 and (s.shape[1] == 1 or s.stride(1) == -(-m // 4) * 4)
    return None if ok else f"scales have strides {tuple(s.stride())}, not {want} as vLLM decided"


def quant_bound_violations(x: torch.Tensor, q: torch.Tensor, s: torch.Tensor, ue8m0: bool) -> list[str]:
    """Model-free checks of a quantization (no emulation): ``q`` is the e4m3 value nearest to ``x / s``
    (or +/-448 past it), each scale is at least the group's ``amax / 448`` and, for fp32 scales, within
    one fp32 rounding of it; UE8M0 scales are powers of two below twice ``amax / 448``."""
    rows, cols = x.shape
    xf = x.double().reshape(rows, cols // GROUP, GROUP)
    sd = s.double()
    amax = xf.abs().nan_to_num(nan=0.0).amax(dim=-1)
    out = []
    finite = torch.isfinite(amax) & (amax > 0)
    low = finite & (sd * FP8_MAX < amax * (1 - 2**-23))
    if low.any():
        out.append(f"{int(low.sum())} scales below amax / 448 (values would saturate)")
    if ue8m0:
        mant, _ = torch.frexp(sd)
        bad = (mant != 0.5) | (finite & (sd * FP8_MAX >= 2 * amax * (1 + 2**-23)) & (amax / FP8_MAX > 1e-10))
        if bad.any():
            out.append(f"{int(bad.sum())} UE8M0 scales not the power of two at or above amax / 448")
    else:
        high = finite & (amax / FP8_MAX > 1e-10) & (sd * FP8_MAX > amax * (1 + 2**-22))
        if high.any():
            out.append(f"{int(high.sum())} fp32 scales above amax / 448 by more than a rounding")
    target = (xf / sd[..., None]).clamp(-FP8_MAX, FP8_MAX)
    got = q.double().reshape(rows, cols // GROUP, GROUP)
    nearest_gap = _nearest_distance(target, _e4m3_values())
    err = (got - target).abs()
    # x / s is rounded to fp32 before the e4m3 conversion (both kernels of vLLM do so): a value within
    # half an fp32 ulp of an e4m3 midpoint may round to the farther neighbour, off by twice that distance.
    ok = (err <= nearest_gap + target.abs() * 2.0**-22 + 2.0**-149) | ~torch.isfinite(target)
    if not ok.all():
        out.append(f"{int((~ok).sum())} e4m3 values are not the nearest to x / s")
    return out


def _e4m3_values() -> torch.Tensor:
    """Every finite e4m3 value, sorted (float64)."""
    v = torch.arange(256, dtype=torch.int32).to(torch.uint8).view(torch.float8_e4m3fn).double()
    return torch.unique(v[torch.isfinite(v)])


def _nearest_distance(t: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Distance from each element of ``t`` to the nearest value of the sorted ``grid``."""
    flat = t.reshape(-1).nan_to_num(nan=0.0)
    idx = torch.searchsorted(grid.to(flat.device), flat).clamp(1, grid.numel() - 1)
    g = grid.to(flat.device)
    d = torch.minimum((flat - g[idx - 1]).abs(), (g[idx] - flat).abs())
    return d.reshape(t.shape)


def judge_quant(out, p: LayerProblem, decisions: Decisions, path: str, exact: bool = True) -> QuantVerdict:
    """Judge a quantization row's ``(q, scales)`` for the activations of ``p``; never raises."""
    v = QuantVerdict(path, p.describe(), exact=exact)
    if not (isinstance(out, tuple) and len(out) == 2):
        v.attribute = f"expected (q, scales), got {type(out).__name__}"
        return v
    q, s = out
    m, k = p.x.shape
    v.attribute = attribute_mismatch(q, (m, k), torch.float8_e4m3fn) or attribute_mismatch(
        s, (m, k // GROUP), torch.float32
    )
    if v.attribute:
        return v
    v.layout = _scale_layout_error(s, m, decisions)
    eq, es = quantize_groups(p.x, GROUP, ue8m0=decisions.act_ue8m0)
    if exact:
        v.q_mismatched = int((q.contiguous().view(torch.uint8) != eq.to(q.device).view(torch.uint8)).sum())
        same_s = (s.float() == es.to(s.device)) | (torch.isnan(s) & torch.isnan(es.to(s.device)))
        v.s_mismatched = int((~same_s).sum())
    v.bound_violations = quant_bound_violations(p.x, q, s, decisions.act_ue8m0)
    return v
