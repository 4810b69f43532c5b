"""What changed in which vLLM release, declared once: every skip reason, M rule, CPU-kernel contract
and finding range reads these spans instead of comparing version strings of its own.

Learned from each release's own source (``pip download --no-deps vllm==X``; ``docs/releases.md`` has
the table with file and line references) and, where it runs, from the real kernel on an H100.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from packaging.version import InvalidVersion, Version


def version(text: str | None) -> Version | None:
    """``text`` as a comparable version (local parts such as ``+cu130`` dropped), None if unparsable."""
    if not text:
        return None
    try:
        return Version(Version(text).base_version)
    except InvalidVersion:
        return None


@dataclass(frozen=True)
class Span:
    """The releases from ``first`` (inclusive) to ``until`` (exclusive; None: still so in the newest).

    >>> "0.23.0" in Span("0.23.0", "0.24.0"), "0.24.0" in Span("0.23.0", "0.24.0")
    (True, False)
    """

    first: str | None
    until: str | None = None

    def __contains__(self, release: object) -> bool:
        v = version(release) if isinstance(release, str) else None
        if v is None:
            return False
        if self.first is not None and v < Version(self.first):
            return False
        return self.until is None or v < Version(self.until)

    def describe(self) -> str:
        """``0.23.x`` style text for reasons and reports."""
        if self.first and self.until:
            return f"vLLM {self.first} up to (not including) {self.until}"
        if self.first:
            return f"vLLM {self.first} and later"
        return f"vLLM before {self.until}"


class MRule(enum.Enum):
    """Which token counts M a kernel takes directly (the rest it rejects)."""

    ANY = "any M"
    MULTIPLE_OF_4 = "M % 4 == 0"

    @property
    def aligned(self) -> bool | None:
        """The ``aligned`` argument of :func:`strategies.m_dims` that draws only admitted M."""
        return True if self is MRule.MULTIPLE_OF_4 else None

    def admits(self, m: int) -> bool:
        return self is MRule.ANY or m % 4 == 0


# -- the facts ------------------------------------------------------------------------------------

#: The SM90 block-wise CUTLASS kernel checks ``m % 4 == 0`` ("m must be divisible by 4": the TMA load
#: of the M-major activation scales needs a 16-byte pitch). PR #44572 (0.24.0) handles M % 4 != 0 in
#: the kernel instead, by swapping A and B (swap_ab).
KERNEL_NEEDS_M4 = Span(None, "0.24.0")

#: ``torch.ops.vllm.padded_cutlass`` (pads M to a multiple of 4 before the kernel): removed by PR #44572.
PADDED_CUTLASS = Span(None, "0.24.0")

#: ``torch.ops.vllm.dynamic_padded_cutlass`` / ``_dynamic_padded_cutlass``: PR #43706 (0.23.0),
#: removed by PR #44572 (0.24.0).
DYNAMIC_PADDED_CUTLASS = Span("0.23.0", "0.24.0")


#: The C++ entry rejects A, B or the output when not packed ("CUTLASS 3.x scaled_mm requires packed
#: operands; A is not packed") or not 16-byte aligned (PR #55537, 0.33.0): before it, the SM90 kernel read
#: any row stride as packed (FINDINGS.md FV-003).
PACKED_OPERANDS_CHECKED = Span("0.33.0")

#: Releases whose own torch pin (2.11.0) matches the Hopper runner's: they run on the real kernel there;
#: later ones pin torch 2.13 (0.27-0.32) or 2.14 (0.33) and run on the CPU double only.
TORCH_2_11 = Span(None, "0.27.0")


def kernel_m_rule(release: str | None) -> MRule:
    """The M rule of the SM90 block-wise kernel that ``release`` ships."""
    return MRule.MULTIPLE_OF_4 if release in KERNEL_NEEDS_M4 else MRule.ANY
