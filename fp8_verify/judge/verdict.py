"""Compare a path's output with the oracle, element by element, and say what, where and by how much.

The test is per element (``|out - ref| <= bound``), never a mean: a single wrong element, row or block is
a failure. A verdict keeps what a kernel engineer needs: the worst element (index, K/N block, values), how
many elements, rows and output blocks are out of bound, and NaN/inf counts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

from ..problem import BlockScaledProblem
from .bound import Oracle


@dataclass
class Verdict:
    """Outcome of one comparison. ``ok`` is the property; the rest explains it."""

    path: str
    problem: str
    shape: tuple[int, int]
    max_ratio: float  # max |out - ref| / bound over elements (inf for a wrong inf/NaN)
    worst: tuple[int, int] | None = None
    worst_block: tuple[int, int] | None = None  # (row, N-block) of the worst element
    worst_out: float | None = None
    worst_ref: float | None = None
    worst_bound: float | None = None
    bad_elements: int = 0
    bad_rows: list[int] = field(default_factory=list)
    bad_blocks: int = 0
    nan: int = 0
    wrong_inf: int = 0
    attribute: str | None = None  # a shape or dtype mismatch: no element is compared

    @property
    def ok(self) -> bool:
        return self.bad_elements == 0 and self.attribute is None

    def message(self) -> str:
        """A torch.testing-style failure message."""
        if self.attribute is not None:
            return f"{self.path}: {self.attribute} on {self.problem}"
        if self.ok:
            return f"{self.path}: within bound (max |err|/bound = {self.max_ratio:.3g}) on {self.problem}"
        m, n = self.shape
        rows = self.bad_rows[:8]
        more = "" if len(self.bad_rows) <= 8 else f" (+{len(self.bad_rows) - 8} more)"
        lines = [
            f"{self.path}: output not within the FP8 error bound on {self.problem}",
            f"Mismatched elements: {self.bad_elements} / {m * n} "
            f"({100.0 * self.bad_elements / max(1, m * n):.1f}%) in {len(self.bad_rows)} of {m} rows "
            f"and {self.bad_blocks} output blocks (row x N-block)",
            f"Rows out of bound: {rows}{more}",
        ]
        if self.worst is not None:
            lines.append(
                f"Greatest error/bound: {self.max_ratio:.3g} at index {self.worst} "
                f"(N-block {self.worst_block[1]}): out={self.worst_out!r} ref={self.worst_ref!r} "
                f"bound={self.worst_bound:.3g}"
            )
        if self.nan or self.wrong_inf:
            lines.append(f"NaN outputs: {self.nan}; infinities where ref is finite: {self.wrong_inf}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ok"] = self.ok
        return d


def judge(out: torch.Tensor, oracle: Oracle, p: BlockScaledProblem, path: str) -> Verdict:
    """Check ``out`` against ``oracle`` for problem ``p``; never raises on a mismatch."""
    mismatch = attribute_mismatch(out, tuple(oracle.ref.shape), p.out_dtype)
    if mismatch:
        return Verdict(path, p.describe(), tuple(oracle.ref.shape), float("inf"), attribute=mismatch)
    o = out.double()
    ref, bound = oracle.ref, oracle.bound
    fmax = torch.finfo(p.out_dtype).max
    # An infinity is right when the interval [ref - bound, ref + bound] reaches past the largest finite
    # value on its side (under heavy cancellation the interval can straddle zero: either sign).
    inf_ok = (torch.isposinf(o) & (ref + bound > fmax)) | (torch.isneginf(o) & (ref - bound < -fmax))
    # Where the reference itself is not finite (NaN inputs or scales, inf scales) the only right
    # answer is the same non-finite value: NaN for NaN, the same infinity for an infinity.
    ref_nan, ref_inf = torch.isnan(ref), torch.isinf(ref)
    same_nonfinite = (ref_nan & torch.isnan(o)) | (ref_inf & (o == ref))
    inf_ok = inf_ok | same_nonfinite
    err = (o - ref).abs()
    ratio = torch.where(inf_ok, torch.zeros_like(err), err / bound)
    nan = torch.isnan(o) & ~ref_nan
    ratio = torch.where(
        nan | ((ref_nan | ref_inf) & ~same_nonfinite), torch.full_like(ratio, float("inf")), ratio
    )
    bad = ratio > 1.0
    v = Verdict(path, p.describe(), tuple(ref.shape), 0.0)
    v.nan = int(nan.sum())
    v.wrong_inf = int((torch.isinf(o) & ~inf_ok).sum())
    if ref.numel() == 0:
        return v
    flat = int(torch.argmax(torch.nan_to_num(ratio, posinf=float("1e308"))))
    i, j = divmod(flat, ref.shape[1])
    v.max_ratio = float(ratio[i, j])
    v.worst = (i, j)
    v.worst_block = (i, j // p.block[0])
    v.worst_out, v.worst_ref, v.worst_bound = float(o[i, j]), float(ref[i, j]), float(bound[i, j])
    v.bad_elements = int(bad.sum())
    if v.bad_elements:
        v.bad_rows = torch.nonzero(bad.any(dim=1)).flatten().tolist()
        nb = -(-ref.shape[1] // p.block[0])
        padded = torch.nn.functional.pad(bad, (0, nb * p.block[0] - ref.shape[1]))
        v.bad_blocks = int(padded.view(ref.shape[0], nb, p.block[0]).any(dim=2).sum())
    return v


def attribute_mismatch(out: torch.Tensor, shape: tuple[int, ...], dtype: torch.dtype) -> str | None:
    """torch.testing's wording for a tensor whose shape or dtype is not the expected one (checked before
    any value, as ``torch.testing.assert_close`` does), or None."""
    for name, got, want in (("shape", tuple(out.shape), tuple(shape)), ("dtype", out.dtype, dtype)):
        if got != want:
            return f"The values for attribute '{name}' do not match: {got} != {want}."
    return None


def bitwise_diff(x: torch.Tensor, y: torch.Tensor) -> str | None:
    """None if ``x`` and ``y`` are the same bits (NaNs included), else where and how they differ."""
    mismatch = attribute_mismatch(x, tuple(y.shape), y.dtype)
    if mismatch:
        return mismatch
    xi, yi = x.contiguous().view(torch.int16), y.contiguous().view(torch.int16)
    neq = xi != yi
    count = int(neq.sum())
    if count == 0:
        return None
    idx = tuple(int(t) for t in torch.nonzero(neq)[0])
    diff = (x.double() - y.double()).abs()
    return (
        f"{count} / {x.numel()} elements differ in their bits; first at {idx} "
        f"({float(x[idx])!r} vs {float(y[idx])!r}); max |diff| {float(diff.max()):.4g}"
    )
