"""What Hypothesis draws: a :class:`ProblemSpec` names the shape and the regimes of one problem; the
numbers come later from a generator seeded by it (:mod:`fp8_verify.problem.build`), so that shrinking
works on a handful of readable fields.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

VALUE_REGIMES = ("quantized", "random", "extreme", "subnormal", "sparse")
SCALE_REGIMES = ("fp32", "ue8m0", "narrow", "wide", "pow2", "tiny", "huge")
QUANTIZED_SCALES = ("fp32", "ue8m0")
SCALE_LOG2 = {"wide": (-30, 30), "pow2": (-20, 20), "tiny": (-70, -60), "huge": (30, 45)}


@dataclass(frozen=True)
class ProblemSpec:
    """Everything needed to rebuild a problem bit for bit (on any device of one type: see ``build``)."""

    m: int
    n: int
    k: int
    block: tuple[int, int] = (128, 128)
    out_dtype: str = "bfloat16"
    values: str = "quantized"
    scales: str = "fp32"
    row_spread: int = 0  # decades of magnitude across rows (quantized regime)
    seed: int = 0

    def __post_init__(self) -> None:
        errs = []
        for name in ("m", "n", "k"):
            if getattr(self, name) < 1:
                errs.append(f"{name}={getattr(self, name)} must be >= 1")
        if len(self.block) != 2 or min(self.block) < 1:
            errs.append(f"block={self.block} must be two positive ints (bn, bk)")
        if self.out_dtype not in ("bfloat16", "float16"):
            errs.append(f"out_dtype={self.out_dtype!r} must be 'bfloat16' or 'float16'")
        if self.values not in VALUE_REGIMES:
            errs.append(f"values={self.values!r} not in {VALUE_REGIMES}")
        if self.scales not in SCALE_REGIMES:
            errs.append(f"scales={self.scales!r} not in {SCALE_REGIMES}")
        elif (self.values == "quantized") != (self.scales in QUANTIZED_SCALES):
            errs.append(
                f"scales={self.scales!r} does not go with values={self.values!r} "
                f"(quantized data takes {QUANTIZED_SCALES})"
            )
        if errs:
            raise ValueError("invalid ProblemSpec: " + "; ".join(errs))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["block"] = list(self.block)
        return d
