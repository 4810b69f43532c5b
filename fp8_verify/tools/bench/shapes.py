"""What the bench measures by default: which model weight shapes (the table itself is the suite's,
:mod:`fp8_verify.strategies.shapes`) and which token counts M."""

from __future__ import annotations

from fp8_verify.strategies.shapes import SHAPES, Shape

QUICK_SHAPES = ("dsv3.fused_qkv_a_proj", "dsv3.o_proj", "dsv3.mlp.gate_up_proj", "qwen3-8b.qkv_proj")
DRY_SHAPES: tuple[Shape, ...] = (  # tiny, for the CPU double; one with a partial last N block
    Shape("tiny.aligned", "dry-run", "tiny", 256, 384, "made up"),
    Shape("tiny.partial_n", "dry-run", "tiny", 320, 256, "made up", "N = 2.5 blocks"),
)
# 1..5 and 7, then each power of two from 8 to 8192 and the M just below it: both alignment classes
# (M % 4) at every scale, 27 values.
M_FULL = tuple(sorted({1, 2, 3, 4, 5, 7} | {2**i + d for i in range(3, 14) for d in (-1, 0)}))
M_QUICK = (1, 3, 4, 16, 127, 128, 1023, 1024, 4095, 4096)
M_DRY = (1, 3, 4, 8, 13, 16)


def pool(dry_run: bool) -> tuple[Shape, ...]:
    """The shapes ``--shapes`` picks from: the tiny ones for a dry run, the models' otherwise."""
    return DRY_SHAPES if dry_run else SHAPES


def list_shapes() -> int:
    """``--list-shapes``: the table, with partial weight blocks flagged."""
    w = max(26, 1 + max(len(s.id) for s in SHAPES))
    print(f"{'id':<{w}} {'N':>6} {'K':>6}  {'N%128':>5}  model / source")
    for s in SHAPES:
        flag = "" if s.n % 128 == 0 and s.k % 128 == 0 else "  <- partial block"
        print(f"{s.id:<{w}} {s.n:>6} {s.k:>6}  {s.n % 128:>5}  {s.model}: {s.source}{flag}")
        if s.note:
            print(f"{'':<{w + 19}}{s.note}")
    print(f"quick: {', '.join(QUICK_SHAPES)}; M: {M_FULL} (quick {M_QUICK})")
    return 0
