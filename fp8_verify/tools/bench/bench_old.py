"""``fp8-verify bench``: time vLLM's block-FP8 CUTLASS paths on real model weight shapes.

Why it is built the way it is (docs/benchmark.md has the long form):

* Two timings per path. *graph*: one call per input set captured into a ``torch.cuda.CUDAGraph`` and
  replayed between CUDA events -- what the GPU does, launch overhead excluded (vLLM decodes inside
  CUDA graphs). *eager*: CUDA events around a loop of eager calls -- the same plus the host's launch
  and Python overhead, where that is the bottleneck.
* Several input sets (weights included) rotate so that neither weights nor activations sit in the
  50 MB L2 between calls: in a model every layer reads a different weight.
* Paths are interleaved round-robin in every repetition, so drift (clocks, temperature) hits all of
  them alike; rounds repeat until the interquartile spread of the per-round medians is under the
  target (2%) or a cap is reached; median and spread are reported.
* ``padded``, ``dynamic_eager`` and the compiled ops run the same single kernel as ``bypass`` when
  ``M % 4 == 0`` (``_padded_cutlass`` returns early there, in 0.22.1 and 0.23.0 alike): the
  launch profile and the bitwise comparison with ``bypass`` show it, so any graph-time difference
  there is noise. ``always_pad`` (a labelled reference, not vLLM code) takes the padding branch on
  every M, as ``_padded_cutlass`` did before it had its ``has_pad`` check: the most that skipping
  the padding can save.

Results go to ``--out`` as JSON keyed by the run's label (the vLLM version by default), CSV,
Markdown and PNG; ``--compare A.json B.json`` merges runs made with different vLLM releases. Only
the standard library is imported here at module level: the CLI can add :func:`add_arguments`
cheaply.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import fnmatch
import functools
import itertools
import json
import math
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from .problem import BlockScaledProblem

SCHEMA = "fp8-verify-bench/1"
RESOLVED = 0.01  # a difference counts when above both spreads and this (1%)
BLOCK = (128, 128)

# --------------------------------------------------------------------------------------------------
# Weight shapes (N, K) of FP8 block-quantized models, TP=1, from each checkpoint's config.json.
# Under tensor parallelism t a column-parallel layer has N/t, a row-parallel one K/t.
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    """A linear layer, ``out[M, N] = x[M, K] @ W[N, K].T``; ``source``: its config.json formula."""

    id: str
    model: str
    layer: str
    n: int
    k: int
    source: str
    note: str = ""

    def label(self) -> str:
        return f"{self.id} N={self.n} K={self.k}"


_DS = "deepseek-ai/DeepSeek-V3"
_Q8 = "Qwen/Qwen3-8B-FP8"
_Q32 = "Qwen/Qwen3-32B-FP8"
SHAPES: tuple[Shape, ...] = (
    # DeepSeek-V3 config.json: hidden_size 7168, intermediate_size 18432,
    # moe_intermediate_size 2048, n_shared_experts 1, q_lora_rank 1536, kv_lora_rank 512,
    # qk_nope_head_dim 128, qk_rope_head_dim 64, v_head_dim 128, num_attention_heads 128;
    # quantization_config.weight_block_size [128, 128].
    Shape(
        "dsv3.fused_qkv_a_proj",
        _DS,
        "self_attn.fused_qkv_a_proj",
        2112,
        7168,
        "q_lora_rank + kv_lora_rank + qk_rope_head_dim x hidden_size",
        "what vLLM runs: q_a_proj and kv_a_proj_with_mqa fused (DeepSeekV2FusedQkvAProjLinear); "
        "N = 16.5 blocks, the last N block is partial (kept)",
    ),
    Shape(
        "dsv3.q_b_proj",
        _DS,
        "self_attn.q_b_proj",
        24576,
        1536,
        "num_attention_heads * (qk_nope_head_dim + qk_rope_head_dim) x q_lora_rank",
    ),
    Shape(
        "dsv3.kv_b_proj",
        _DS,
        "self_attn.kv_b_proj",
        32768,
        512,
        "num_attention_heads * (qk_nope_head_dim + v_head_dim) x kv_lora_rank",
        "an FP8 GEMM in prefill only (MLA decode absorbs it into bf16 W_UK/W_UV)",
    ),
    Shape(
        "dsv3.o_proj", _DS, "self_attn.o_proj", 7168, 16384, "hidden_size x num_attention_heads * v_head_dim"
    ),
    Shape(
        "dsv3.mlp.gate_up_proj",
        _DS,
        "mlp.gate_up_proj (dense layers 0-2)",
        36864,
        7168,
        "2 * intermediate_size x hidden_size",
        "first_k_dense_replace = 3 dense layers",
    ),
    Shape(
        "dsv3.mlp.down_proj",
        _DS,
        "mlp.down_proj (dense layers 0-2)",
        7168,
        18432,
        "hidden_size x intermediate_size",
    ),
    Shape(
        "dsv3.shared.gate_up_proj",
        _DS,
        "mlp.shared_experts.gate_up_proj",
        4096,
        7168,
        "2 * moe_intermediate_size * n_shared_experts x hidden_size",
    ),
    Shape(
        "dsv3.shared.down_proj",
        _DS,
        "mlp.shared_experts.down_proj",
        7168,
        2048,
        "hidden_size x moe_intermediate_size * n_shared_experts",
    ),
    # Qwen3-8B(-FP8) config.json: hidden_size 4096, intermediate_size 12288, num_attention_heads 32,
    # num_key_value_heads 8, head_dim 128; quantization_config.weight_block_size [128, 128].
    Shape(
        "qwen3-8b.qkv_proj",
        _Q8,
        "self_attn.qkv_proj",
        6144,
        4096,
        "(num_attention_heads + 2 * num_key_value_heads) * head_dim x hidden_size",
    ),
    Shape(
        "qwen3-8b.o_proj", _Q8, "self_attn.o_proj", 4096, 4096, "hidden_size x num_attention_heads * head_dim"
    ),
    Shape(
        "qwen3-8b.gate_up_proj", _Q8, "mlp.gate_up_proj", 24576, 4096, "2 * intermediate_size x hidden_size"
    ),
    Shape("qwen3-8b.down_proj", _Q8, "mlp.down_proj", 4096, 12288, "hidden_size x intermediate_size"),
    # Qwen3-32B(-FP8) config.json: hidden_size 5120, intermediate_size 25600,
    # num_attention_heads 64, num_key_value_heads 8, head_dim 128;
    # quantization_config.weight_block_size [128, 128].
    Shape(
        "qwen3-32b.qkv_proj",
        _Q32,
        "self_attn.qkv_proj",
        10240,
        5120,
        "(num_attention_heads + 2 * num_key_value_heads) * head_dim x hidden_size",
    ),
    Shape(
        "qwen3-32b.o_proj",
        _Q32,
        "self_attn.o_proj",
        5120,
        8192,
        "hidden_size x num_attention_heads * head_dim",
    ),
    Shape(
        "qwen3-32b.gate_up_proj", _Q32, "mlp.gate_up_proj", 51200, 5120, "2 * intermediate_size x hidden_size"
    ),
    Shape("qwen3-32b.down_proj", _Q32, "mlp.down_proj", 5120, 25600, "hidden_size x intermediate_size"),
    # Checkpoint tensors that vLLM fuses into fused_qkv_a_proj: last, so that --budget-s drops
    # them first.
    Shape(
        "dsv3.q_a_proj",
        _DS,
        "self_attn.q_a_proj",
        1536,
        7168,
        "q_lora_rank x hidden_size",
        "checkpoint tensor; vLLM runs it inside fused_qkv_a_proj",
    ),
    Shape(
        "dsv3.kv_a_proj_with_mqa",
        _DS,
        "self_attn.kv_a_proj_with_mqa",
        576,
        7168,
        "kv_lora_rank + qk_rope_head_dim x hidden_size",
        "checkpoint tensor (vLLM fuses it); N = 4.5 blocks, partial last block kept",
    ),
)
QUICK_SHAPES = ("dsv3.fused_qkv_a_proj", "dsv3.o_proj", "dsv3.mlp.gate_up_proj", "qwen3-8b.qkv_proj")
DRY_SHAPES: tuple[Shape, ...] = (  # tiny, for the CPU double; one with a partial last N block
    Shape("tiny.aligned", "dry-run", "tiny", 256, 384, "made up"),
    Shape("tiny.partial_n", "dry-run", "tiny", 320, 256, "made up", "N = 2.5 blocks"),
)
M_FULL = (
    1,
    2,
    3,
    4,
    5,
    7,
    8,
    15,
    16,
    31,
    32,
    63,
    64,
    127,
    128,
    255,
    256,
    511,
    512,
    1023,
    1024,
    2047,
    2048,
    4095,
    4096,
    8191,
    8192,
)
M_QUICK = (1, 3, 4, 16, 127, 128, 1023, 1024, 4095, 4096)
M_DRY = (1, 3, 4, 8, 13, 16)

# Dense (no sparsity) FP8 tensor-core peaks, TFLOP/s: NVIDIA's datasheet figures "with sparsity",
# halved. Matched against torch.cuda.get_device_name(), first hit wins.
PEAKS: tuple[tuple[str, float, str], ...] = (
    ("H100 PCIe", 1513.0, "H100 PCIe: 3026 sparse / 2"),
    ("H100 NVL", 1671.0, "H100 NVL: 3341 sparse / 2"),
    ("H200", 1979.0, "H200 SXM: 3958 sparse / 2 (same tensor cores and clocks as H100 SXM)"),
    ("H100", 1979.0, "H100 SXM5 (HBM3): 3958 sparse / 2"),
)

# --------------------------------------------------------------------------------------------------
# Options
# --------------------------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """Options error out in one line through the CLI's UsageError (exit status 2, no usage dump)."""

    def error(self, message: str):  # type: ignore[override]
        from .cli import UsageError

        raise UsageError(f"bench: {message}")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Bench options beyond ``--out``/``--quick``; ``cli.parser()`` may add them for ``--help``."""
    g = p.add_argument_group("bench")
    g.add_argument(
        "--dry-run",
        action="store_true",
        help="plumbing smoke test: tiny shapes and few rounds; runs on the CPU double "
        "(numbers mean nothing) or, on a GPU, on the real kernel",
    )
    g.add_argument(
        "--compare",
        nargs="+",
        metavar="RUN.json",
        help="merge bench JSON files (e.g. one per vLLM release) into one table and plot; needs no GPU",
    )
    g.add_argument("--label", help="key of this run in the JSON (default: the vLLM version)")
    g.add_argument("--shapes", help="comma-separated globs on shape ids (see --list-shapes)")
    g.add_argument("--ms", help="comma-separated M values (default: 27 values 1..8192)")
    g.add_argument("--paths", help="comma-separated paths to time (default: every available one)")
    g.add_argument(
        "--budget-s",
        type=float,
        help="start no new (shape, M) point after this many seconds; outputs are written either way",
    )
    g.add_argument(
        "--target-spread",
        type=float,
        default=0.02,
        help="stop when (p75-p25)/median of the per-round medians is below this",
    )
    g.add_argument("--min-rounds", type=int)
    g.add_argument("--max-rounds", type=int)
    g.add_argument("--no-eager", action="store_true", help="skip the eager (launch overhead) timing")
    g.add_argument("--no-plot", action="store_true")
    g.add_argument(
        "--include-dynamic-compiled",
        action="store_true",
        help="try the dynamic_compiled path (skipped by default: FV-001, it fails to "
        "compile with M dynamic in vLLM 0.23.0)",
    )
    g.add_argument("--list-shapes", action="store_true", help="print the shape table and exit")


@dataclass
class Config:
    """Resolved options; stored in the JSON so that a run says how it was measured."""

    out: str
    quick: bool = False
    dry_run: bool = False
    label: str | None = None
    shapes: list[str] = field(default_factory=list)
    ms: list[int] = field(default_factory=list)
    paths: list[str] | None = None
    budget_s: float | None = None
    target_spread: float = 0.02
    min_rounds: int = 5
    max_rounds: int = 25
    max_rounds_eager: int = 12  # host jitter rarely allows 2% on eager calls: cap it sooner
    samples_per_round: int = 3
    sample_s: float = 5e-4  # each timed sample spans at least this much GPU time
    max_point_s: float = 6.0  # per (shape, M) and timing mode
    warmup: int = 3
    rotate_l2_multiple: float = 3.0  # input sets per call span this many L2 sizes
    max_sets: int = 32
    eager: bool = True
    plot: bool = True
    include_dynamic_compiled: bool = False


def _ints(text: str) -> list[int]:
    from .cli import UsageError

    try:
        vals = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"bench: --ms takes comma-separated integers, got {text!r}") from None
    if not vals or min(vals) < 1:
        raise UsageError(f"bench: --ms values must be >= 1, got {text!r}")
    return vals


def _config(args: argparse.Namespace, extra: list[str]) -> tuple[Config, argparse.Namespace]:
    p = _Parser(prog="fp8-verify bench", add_help=False)
    add_arguments(p)
    ns = p.parse_args(extra, namespace=argparse.Namespace(**vars(args)))
    dry = bool(ns.dry_run)
    quick = bool(getattr(ns, "quick", False))
    c = Config(
        out=str(getattr(ns, "out", None) or "bench-out"),
        quick=quick,
        dry_run=dry,
        label=ns.label,
        target_spread=ns.target_spread,
        eager=not ns.no_eager,
        plot=not ns.no_plot,
        budget_s=ns.budget_s,
        include_dynamic_compiled=ns.include_dynamic_compiled,
    )
    pool = DRY_SHAPES if dry else SHAPES
    default = ["*"] if dry or not quick else list(QUICK_SHAPES)
    pats = ns.shapes.split(",") if ns.shapes else default
    c.shapes = [s.id for s in pool if any(fnmatch.fnmatch(s.id, x.strip()) for x in pats)]
    if not c.shapes:
        from .cli import UsageError

        raise UsageError(f"bench: --shapes {ns.shapes!r} matches none of {', '.join(s.id for s in pool)}")
    c.ms = _ints(ns.ms) if ns.ms else list(M_DRY if dry else M_QUICK if quick else M_FULL)
    c.paths = [x.strip() for x in ns.paths.split(",")] if ns.paths else None
    if dry:
        c.min_rounds, c.max_rounds, c.samples_per_round, c.warmup = 2, 3, 2, 1
        c.sample_s, c.max_point_s = 2e-4, 2.0
    elif quick:
        c.min_rounds, c.max_rounds, c.max_rounds_eager = 3, 10, 8
    c.min_rounds = ns.min_rounds or c.min_rounds
    c.max_rounds = max(ns.max_rounds or c.max_rounds, c.min_rounds)
    c.max_rounds_eager = max(min(c.max_rounds_eager, c.max_rounds), c.min_rounds)
    return c, ns


# --------------------------------------------------------------------------------------------------
# Paths
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchPath:
    """A timed path; ``origin``: ``vllm`` (vLLM's code) or ``reference`` (written here)."""

    name: str
    run: Callable[[BlockScaledProblem], torch.Tensor] | None
    what: str
    origin: str = "vllm"
    reason: str | None = None
    aligned_only: bool = False  # timed only where M % 4 == 0
    runs_at_m4: bool = False  # the kernel rejects M % 4 != 0: timed on roundup(M, 4) rows

    @property
    def available(self) -> bool:
        return self.run is not None


BENCH_PATHS = (
    "bypass",
    "padded",
    "dynamic_eager",
    "compiled_op",
    "padded_compiled",
    "always_pad",
    "dynamic_compiled",
)
SHORT = {
    "bypass": "byp",
    "padded": "pad",
    "dynamic_eager": "dyn",
    "compiled_op": "cop",
    "padded_compiled": "pco",
    "always_pad": "alw",
    "dynamic_compiled": "dco",
}


def _round4(m: int) -> int:
    return -(-m // 4) * 4


def _direct_gemm() -> Callable[..., torch.Tensor]:
    """vLLM's ``cutlass_scaled_mm(A, B, As, Bs, block, dtype)`` wrapper, or the same via ``ops``."""
    from .subject import load

    f = load().functions.get("cutlass_scaled_mm")
    if f is not None:
        return f
    from vllm import _custom_ops as ops

    def direct(a, b, a_s, b_s, block, dtype):
        return ops.cutlass_scaled_mm(a, b.T, out_dtype=dtype, scale_a=a_s, scale_b=b_s.T)

    return direct


@functools.cache
def _compiled_padded(block: tuple[int, int], out_dtype: torch.dtype, backend: str):
    import torch

    from .subject import vllm_op

    op = vllm_op("padded_cutlass")
    blk = list(block)

    def body(a, b, a_s, b_s):
        return op(a, b, a_s, b_s, blk, out_dtype)

    body.__name__ = "fp8_verify_bench_padded_compiled"
    return torch.compile(body, fullgraph=True, backend=backend)


def _run_padded_compiled(p: BlockScaledProblem) -> torch.Tensor:
    """``torch.ops.vllm.padded_cutlass`` inside ``torch.compile`` with M dynamic: what a compiled
    vLLM 0.22.x model runs on Hopper (0.23.0 calls ``dynamic_padded_cutlass`` there instead).
    Marked dynamic exactly as the suite's ``compiled_op`` is, so that the two compare fairly."""
    from . import paths

    _mark_dynamic_like_paths(p)
    return _compiled_padded(tuple(p.block), p.out_dtype, paths.compile_backend())(*p.args())


def _mark_dynamic_like_paths(p: BlockScaledProblem) -> None:
    import torch

    from . import paths

    mark = getattr(paths, "mark_dynamic", None)
    if mark is not None:
        mark(*p.args())
    else:  # older fp8_verify.paths: M only
        torch._dynamo.maybe_mark_dynamic(p.a, 0)
        torch._dynamo.maybe_mark_dynamic(p.a_scale, 0)


def _always_pad(direct: Callable[..., torch.Tensor]) -> Callable[[BlockScaledProblem], Any]:
    """Reference, not vLLM code: vLLM's padding branch (zeros + copy of A, ones + copy of the
    M-major scales, GEMM, row slice) taken for every M, as ``_padded_cutlass`` did before it grew
    its ``has_pad`` early return. What skipping the padding can save, at most."""
    import torch

    def run(p: BlockScaledProblem) -> torch.Tensor:
        m, m4 = p.m, _round4(p.m)
        qx = torch.zeros((m4, p.k), device=p.a.device, dtype=p.a.dtype)
        qx[:m].copy_(p.a)
        sx = torch.ones((p.a_scale.shape[1], m4), device=p.a.device, dtype=p.a_scale.dtype)
        sx = sx.permute(1, 0)
        sx[:m].copy_(p.a_scale)
        return direct(qx, p.b, sx, p.b_scale, list(p.block), p.out_dtype)[:m]

    return run


def _production_op() -> str | None:
    """The op ``CutlassFp8BlockScaledMMKernel.apply_block_scaled_mm`` calls on Hopper, read from the
    installed source (so a run of any release says which path its models use)."""
    import inspect

    from .subject import load

    for name in load().modules:
        mod = sys.modules.get(name)
        for obj in vars(mod).values() if mod else ():
            if inspect.isclass(obj) and "apply_block_scaled_mm" in vars(obj) and "Cutlass" in obj.__name__:
                with contextlib.suppress(OSError, TypeError):
                    src = inspect.getsource(obj.apply_block_scaled_mm)
                    for op in ("dynamic_padded_cutlass", "padded_cutlass"):
                        if f"torch.ops.vllm.{op}" in src:
                            return op
    return None


def bench_paths(cfg: Config) -> tuple[dict[str, BenchPath], str | None]:
    """Every bench path (available or with its reason) and the name of the production path."""
    from . import paths
    from .findings import FINDINGS
    from .subject import load, vllm_op

    s = load()
    found = paths.discover()
    out: dict[str, BenchPath] = {}
    what = {
        "bypass": "vLLM's cutlass_scaled_mm wrapper called directly (the kernel alone); at "
        "M % 4 != 0 timed on roundup(M, 4) rows, which the kernel needs",
        "padded": "torch.ops.vllm.padded_cutlass, eager",
        "dynamic_eager": "torch.ops.vllm.dynamic_padded_cutlass, eager",
        "compiled_op": "torch.ops.vllm.dynamic_padded_cutlass inside torch.compile, M dynamic "
        "(what vLLM 0.23.0 models run on Hopper)",
        "dynamic_compiled": "_dynamic_padded_cutlass traced by torch.compile (torch.cond), M dynamic",
    }
    for name in ("bypass", "padded", "dynamic_eager", "compiled_op", "dynamic_compiled"):
        fp = found[name]
        reason = fp.reason
        run = fp.run if fp.available else None  # Path.run is a method: availability is separate
        if name == "dynamic_compiled" and run is not None and not cfg.include_dynamic_compiled:
            f = FINDINGS["FV-001"]
            reason = (
                f"skipped: {f.id}, {f.title} (pass --include-dynamic-compiled to try)"
                if s.vllm_version in f.versions
                else "skipped by default (pass --include-dynamic-compiled to try)"
            )
            run = None
        out[name] = BenchPath(name, run, what[name], reason=reason, runs_at_m4=name == "bypass")
    has_padded = vllm_op("padded_cutlass") is not None
    out["padded_compiled"] = BenchPath(
        "padded_compiled",
        _run_padded_compiled if has_padded else None,
        "torch.ops.vllm.padded_cutlass inside torch.compile, M dynamic (what vLLM 0.22.x models "
        "run on Hopper)",
        reason=None if has_padded else found["padded"].reason,
    )
    out["always_pad"] = BenchPath(
        "always_pad",
        _always_pad(_direct_gemm()) if s.available else None,
        "REFERENCE, not vLLM code: the padding branch of _padded_cutlass taken even at M % 4 == 0 "
        "(as before its has_pad check); aligned M only",
        origin="reference",
        reason=None if s.available else s.error,
        aligned_only=True,
    )
    if cfg.paths is not None:
        from .cli import UsageError

        unknown = [x for x in cfg.paths if x not in out]
        if unknown:
            raise UsageError(f"bench: unknown path(s) {', '.join(unknown)}; known: {', '.join(BENCH_PATHS)}")
        for name, bp in list(out.items()):
            if name not in cfg.paths and name != "bypass" and bp.available:
                out[name] = BenchPath(name, None, bp.what, bp.origin, "not selected (--paths)")
    op = _production_op()
    if op is None:  # source not found: the newest op this vLLM registers
        op = next((o for o in ("dynamic_padded_cutlass", "padded_cutlass") if vllm_op(o)), None)
    prod = {"dynamic_padded_cutlass": "compiled_op", "padded_cutlass": "padded_compiled"}.get(op or "")
    return out, prod


# --------------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------------


class _Clock:
    """CUDA events on the GPU (read after one sync per round); ``perf_counter`` on the CPU."""

    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda

    def mark(self) -> Any:
        if self.cuda:
            import torch

            e = torch.cuda.Event(enable_timing=True)
            e.record()
            return e
        return time.perf_counter()

    def sync(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()

    def seconds(self, a: Any, b: Any) -> float:
        return a.elapsed_time(b) / 1e3 if self.cuda else b - a


@dataclass
class Stat:
    """Per-call time: median of the per-round medians, and their (p75 - p25) / median."""

    median_s: float
    spread: float
    p25_s: float
    p75_s: float
    min_s: float
    rounds: int
    inner: int
    converged: bool
    per_round_s: list[float] = field(default_factory=list)  # for paired ratios between paths


def _spread(xs: list[float]) -> float:
    if len(xs) < 2:
        return math.inf
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return (q[2] - q[0]) / statistics.median(xs)


def _measure(
    fns: dict[str, tuple[Callable[[], object], int]],
    clock: _Clock,
    cfg: Config,
    drain: bool = False,
    max_rounds: int | None = None,
) -> dict[str, Stat]:
    """Time each ``fn`` (one call does ``div`` GEMMs), interleaved round-robin per repetition, until
    every path's spread is under the target after ``min_rounds``, or a cap.

    ``drain`` (eager timing): wait for the GPU before each sample. Otherwise a GPU-bound path leaves
    queued work behind, and the next path's host overhead hides under it."""
    names = list(fns)
    if not names:
        return {}
    for _ in range(cfg.warmup):
        for n in names:
            fns[n][0]()
    clock.sync()
    inner: dict[str, int] = {}
    for n in names:
        a = clock.mark()
        fns[n][0]()
        b = clock.mark()
        clock.sync()
        inner[n] = max(1, min(2000, math.ceil(cfg.sample_s / max(clock.seconds(a, b), 1e-7))))
    rounds: dict[str, list[float]] = {n: [] for n in names}
    t0 = time.perf_counter()
    converged = False
    for r in range(max_rounds or cfg.max_rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        marks: dict[str, list[tuple[Any, Any]]] = {n: [] for n in names}
        for _ in range(cfg.samples_per_round):
            for n in order:
                fn = fns[n][0]
                if drain:
                    clock.sync()
                a = clock.mark()
                for _ in range(inner[n]):
                    fn()
                marks[n].append((a, clock.mark()))
        clock.sync()
        for n in names:
            div = inner[n] * fns[n][1]
            rounds[n].append(statistics.median(clock.seconds(a, b) / div for a, b in marks[n]))
        if r + 1 >= cfg.min_rounds:
            converged = all(_spread(rounds[n]) < cfg.target_spread for n in names)
            if converged or time.perf_counter() - t0 > cfg.max_point_s:
                break
    out = {}
    for n in names:
        xs = rounds[n]
        q = statistics.quantiles(xs, n=4, method="inclusive") if len(xs) > 1 else [xs[0]] * 3
        med = statistics.median(xs)
        out[n] = Stat(
            med,
            _spread(xs) if len(xs) > 1 else math.nan,
            q[0],
            q[2],
            min(xs),
            len(xs),
            inner[n],
            _spread(xs) < cfg.target_spread,
            list(xs),
        )
    return out


# --------------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------------


def _l2_bytes(dev: torch.device) -> int:
    import torch

    if dev.type == "cuda":
        return int(getattr(torch.cuda.get_device_properties(dev), "L2_cache_size", 0) or 50 << 20)
    return 0


def _weights(shape: Shape, count: int, dev: torch.device, g: torch.Generator) -> list[tuple]:
    """``count`` random FP8 weights with fp32 block scales, drawn on the device (fast; timing needs
    no bit-reproducible values, only realistic magnitudes)."""
    import torch

    from .problem import FP8, cdiv

    nb, kb = cdiv(shape.n, BLOCK[0]), cdiv(shape.k, BLOCK[1])
    out = []
    for _ in range(count):
        b = torch.randn(shape.n, shape.k, device=dev, generator=g).to(FP8)
        bs = 0.5 + torch.rand(nb, kb, device=dev, generator=g)
        out.append((b, bs))
    return out


def _activations(
    m: int, k: int, weights: list[tuple], count: int, dev: torch.device, g: torch.Generator
) -> list[BlockScaledProblem]:
    import torch

    from .problem import FP8, BlockScaledProblem, cdiv, column_major

    probs = []
    for i in range(count):
        b, bs = weights[i % len(weights)]
        a = torch.randn(m, k, device=dev, generator=g).to(FP8)
        a_s = column_major(0.5 + torch.rand(m, cdiv(k, BLOCK[1]), device=dev, generator=g))
        probs.append(BlockScaledProblem(a, a_s, b, bs, BLOCK, torch.bfloat16, {"bench": True, "set": i}))
    return probs


def _n_calls(shape: Shape, m: int, l2: int, cfg: Config) -> int:
    """Input sets per timed call sequence: enough bytes to stream ``rotate_l2_multiple`` x L2."""
    if l2 <= 0:
        return 2
    per_call = shape.n * shape.k + m * shape.k + 2 * m * shape.n
    return max(2, min(cfg.max_sets, math.ceil(cfg.rotate_l2_multiple * l2 / per_call)))


# --------------------------------------------------------------------------------------------------
# One (shape, M) point
# --------------------------------------------------------------------------------------------------


def _flops(m: int, shape: Shape) -> float:
    return 2.0 * m * shape.n * shape.k


def _point(
    shape: Shape,
    m: int,
    bps: dict[str, BenchPath],
    weights: list[tuple],
    n_calls: int,
    clock: _Clock,
    cfg: Config,
    g: torch.Generator,
) -> tuple[list[dict], str]:
    """Time every applicable path at one M. Returns CSV-ready rows and a progress line."""
    import torch

    dev = weights[0][0].device
    m4 = _round4(m)
    sets4 = _activations(m4, shape.k, weights, n_calls, dev, g)
    sets = sets4 if m == m4 else [p.with_m(slice(0, m)) for p in sets4]
    todo = [bp for bp in bps.values() if bp.available and not (bp.aligned_only and m % 4)]
    rows: dict[str, dict] = {}
    graph_fns: dict[str, tuple[Callable[[], object], int]] = {}
    eager_fns: dict[str, tuple[Callable[[], object], int]] = {}
    ref = None
    keep: list[Any] = []
    pool = torch.cuda.graph_pool_handle() if clock.cuda else None
    for bp in todo:
        probs = sets4 if bp.runs_at_m4 else sets
        row = {
            "path": bp.name,
            "m_kernel": m4 if (bp.runs_at_m4 or m % 4) else m,
            "n_sets": n_calls,
            "error": "",
        }
        rows[bp.name] = row
        run = bp.run
        assert run is not None
        try:
            out = run(probs[0])
            if clock.cuda and out.device.type != "cuda":
                raise RuntimeError(f"{bp.name} returned a {out.device} tensor on the GPU run")
            if ref is None:  # bypass is first: the reference rows
                ref = out[:m].clone()
            o = out[:m]
            row["bitwise_equal_bypass"] = bool(torch.equal(o, ref))
            row["max_abs_diff_bypass"] = float((o.float() - ref.float()).abs().max().item())
            for p in probs[1:]:
                run(p)  # compiles/warms every set before capture
            eager_fns[bp.name] = (_cycler(run, probs), 1)
            if clock.cuda:
                gr = torch.cuda.CUDAGraph()
                with torch.cuda.graph(gr, pool=pool):
                    for p in probs:
                        run(p)
                keep.append(gr)
                graph_fns[bp.name] = (gr.replay, len(probs))
            else:  # no graphs on the CPU: the plumbing runs, the numbers are host time
                graph_fns[bp.name] = (functools.partial(_all, run, probs), len(probs))
        except Exception as e:  # recorded per path; the run goes on
            row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
            if bp.name == "bypass":
                break
    gstats = _measure(graph_fns, clock, cfg)
    estats = _measure(eager_fns, clock, cfg, drain=True, max_rounds=cfg.max_rounds_eager) if cfg.eager else {}
    del keep
    out_rows = []
    parts = []
    for name, row in rows.items():
        for mode, st in (("graph", gstats.get(name)), ("eager", estats.get(name))):
            if st is None:
                row.update(
                    {
                        f"{mode}_us": None,
                        f"{mode}_spread": None,
                        f"{mode}_rounds": None,
                        f"{mode}_converged": None,
                        f"{mode}_tflops": None,
                    }
                )
                continue
            row.update(
                {
                    f"{mode}_us": st.median_s * 1e6,
                    f"{mode}_spread": st.spread,
                    f"{mode}_p25_us": st.p25_s * 1e6,
                    f"{mode}_p75_us": st.p75_s * 1e6,
                    f"{mode}_min_us": st.min_s * 1e6,
                    f"{mode}_rounds": st.rounds,
                    f"{mode}_inner": st.inner,
                    f"{mode}_converged": st.converged,
                    f"{mode}_tflops": _flops(m, shape) / st.median_s / 1e12,
                    f"{mode}_round_us": [round(x * 1e6, 4) for x in st.per_round_s],
                }
            )
        out_rows.append(row)
        gs = f"{row['graph_us']:.1f}" if row.get("graph_us") is not None else "ERR"
        es = f"/{row['eager_us']:.1f}" if row.get("eager_us") is not None else ""
        at = f"@{row['m_kernel']}" if row["m_kernel"] != m and name == "bypass" else ""
        parts.append(f"{SHORT[name]}{at} {gs}{es}")
    return out_rows, " ".join(parts)


def _cycler(run: Callable, probs: list) -> Callable[[], object]:
    it = itertools.cycle(probs)
    return lambda: run(next(it))


def _all(run: Callable, probs: list) -> None:
    for p in probs:
        run(p)


# --------------------------------------------------------------------------------------------------
# What each path launches (the answer to "where can a difference exist")
# --------------------------------------------------------------------------------------------------

_CPU_OPS = (
    "aten::zeros",
    "aten::ones",
    "aten::copy_",
    "aten::fill_",
    "aten::empty",
    "aten::permute",
    "_C::cutlass_scaled_mm",
    "vllm::padded_cutlass",
    "vllm::dynamic_padded_cutlass",
)


def _inside_double(e: Any) -> bool:
    e = e.cpu_parent
    while e is not None:
        if e.name == "_C::cutlass_scaled_mm":
            return True
        e = e.cpu_parent
    return False


def _short_kernel(name: str) -> str:
    n = name.removeprefix("void ")
    for stop in ("<", "("):
        n = n.split(stop, 1)[0]
    return n[:80]


def launch_profile(
    bps: dict[str, BenchPath], shape: Shape, ms: Iterable[int], dev: torch.device, g: torch.Generator
) -> dict[str, dict[str, Any]]:
    """For each path and M: the device kernels one call launches (GPU) or the aten/vLLM ops it
    runs (CPU double), from ``torch.profiler``. The same list as bypass's means that no kernel-time
    difference is possible."""
    import os
    import warnings

    import torch
    from torch.profiler import ProfilerActivity, profile

    os.environ.setdefault("KINETO_LOG_LEVEL", "5")  # no CUPTI chatter on stderr
    warnings.filterwarnings("ignore", message=".*Profiler clears events.*")
    cuda = dev.type == "cuda"
    weights = _weights(shape, 1, dev, g)
    res: dict[str, dict[str, Any]] = {}
    for m in ms:
        m4 = _round4(m)
        p4 = _activations(m4, shape.k, weights, 1, dev, g)[0]
        p = p4 if m == m4 else p4.with_m(slice(0, m))
        for bp in bps.values():
            if not bp.available or (bp.aligned_only and m % 4):
                continue
            prob = p4 if bp.runs_at_m4 else p
            assert bp.run is not None
            try:
                for _ in range(2):
                    bp.run(prob)
                if cuda:
                    torch.cuda.synchronize()
                acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
                with profile(activities=acts) as prof:
                    bp.run(prob)
                    if cuda:
                        torch.cuda.synchronize()
                if cuda:
                    names = [e.name for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
                else:  # host ops around the op, not those inside the CPU double itself
                    names = [e.name for e in prof.events() if e.name in _CPU_OPS and not _inside_double(e)]
                res.setdefault(bp.name, {})[str(m)] = {
                    "count": len(names),
                    "launches": [_short_kernel(x) for x in names],
                    "cutlass_gemm": any("cutlass" in x.lower() for x in names),
                }
            except Exception as e:
                res.setdefault(bp.name, {})[str(m)] = {"error": f"{type(e).__name__}: {e}"[:300]}
    return res


# --------------------------------------------------------------------------------------------------
# Derived numbers
# --------------------------------------------------------------------------------------------------


def overheads(rows: list[dict]) -> list[dict]:
    """Padding overhead per (shape, M): PR #43706's comparisons and the references bounding them.

    ``M % 4 == 0``: padded, dynamic_eager and the compiled ops vs bypass (same kernel: expect 0),
    always_pad vs bypass (what unconditional padding cost). ``M % 4 != 0``: dynamic_eager vs padded
    (both pad: expect 0), padded vs bypass at roundup(M, 4) (the padding's own cost).

    Paths were timed in the same rounds, so the ratio is taken round by round (paired): clock and
    power drift between rounds cancels. ``resolved``: the paired ratios' interquartile range
    excludes 1 and the median differs from 1 by more than ``RESOLVED``.
    """
    by: dict[tuple[str, int], dict[str, dict]] = {}
    for r in rows:
        by.setdefault((r["shape"], r["m"]), {})[r["path"]] = r
    out = []
    for (sid, m), d in by.items():
        if m % 4 == 0:
            pairs = [
                ("padded", "bypass"),
                ("dynamic_eager", "bypass"),
                ("compiled_op", "bypass"),
                ("padded_compiled", "bypass"),
                ("always_pad", "bypass"),
            ]
        else:
            pairs = [
                ("dynamic_eager", "padded"),
                ("compiled_op", "padded_compiled"),
                ("padded", "bypass"),
                ("compiled_op", "bypass"),
            ]
        for a, b in pairs:
            if a not in d or b not in d:
                continue
            rec = {"shape": sid, "m": m, "m_mod4": m % 4, "metric": f"{a}/{b}-1"}
            for mode in ("graph", "eager"):
                if not d[a].get(f"{mode}_us") or not d[b].get(f"{mode}_us"):
                    rec[mode] = None
                    continue
                xs = _paired(d[a], d[b], mode)
                med = statistics.median(xs)
                q = statistics.quantiles(xs, n=4, method="inclusive") if len(xs) > 1 else [med] * 3
                rec[mode] = med - 1
                rec[f"{mode}_iqr"] = [q[0] - 1, q[2] - 1]
                rec[f"{mode}_resolved"] = (q[0] > 1 or q[2] < 1) and abs(med - 1) > RESOLVED
            out.append(rec)
    return out


def _paired(a: dict, b: dict, mode: str) -> list[float]:
    """Round-by-round ratios of two rows timed together; the ratio of medians otherwise."""
    ra, rb = a.get(f"{mode}_round_us"), b.get(f"{mode}_round_us")
    if ra and rb and len(ra) == len(rb):
        return [x / y for x, y in zip(ra, rb, strict=True)]
    return [a[f"{mode}_us"] / b[f"{mode}_us"]]


def _peak(name: str) -> tuple[float | None, str]:
    for key, tf, why in PEAKS:
        if key in name:
            return tf, why
    return None, f"no FP8 peak known for {name!r}: fraction of peak not reported"


def _nvsmi() -> str | None:
    q = "name,clocks.sm,clocks.max.sm,clocks.mem,power.draw,power.limit,temperature.gpu"
    try:
        r = subprocess.run(
            ["nvidia-smi", f"--query-gpu={q}", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        return r.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


# --------------------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------------------

CSV_FIELDS = (
    "label",
    "vllm",
    "device",
    "shape",
    "model",
    "layer",
    "n",
    "k",
    "m",
    "m_mod4",
    "m_kernel",
    "path",
    "graph_us",
    "graph_spread",
    "graph_rounds",
    "graph_converged",
    "graph_tflops",
    "graph_peak_frac",
    "eager_us",
    "eager_spread",
    "eager_rounds",
    "eager_converged",
    "eager_tflops",
    "eager_peak_frac",
    "n_sets",
    "bitwise_equal_bypass",
    "max_abs_diff_bypass",
    "error",
)


def _tag(label: str) -> str:
    keep = "".join(c if c.isalnum() or c in "._-" else "_" for c in label)
    return f"vllm-{keep}" if keep[:1].isdigit() else keep


def _fmt(x: float | None, nd: int = 1) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def _pct(x: float | None) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:+.1f}%"


def write_csv(path: Path, runs: dict[str, dict]) -> None:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        w.writeheader()
        for run in runs.values():
            for r in run["rows"]:
                w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in CSV_FIELDS})


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return [*out, ""]


def _paths_in(run: dict) -> list[str]:
    seen = {r["path"] for r in run["rows"]}
    return [p for p in BENCH_PATHS if p in seen]


def markdown_run(run: dict) -> str:
    """The run as Markdown: environment, summary, padding overheads, launches, full tables."""
    env = run["env"]
    peak = env.get("peak_tflops")
    prod = run.get("production_path")
    L = [f"## fp8-verify bench: {run['label']}", ""]
    L += [
        f"- vLLM {env['vllm']}, torch {env['torch']}, fp8-verify {env['fp8_verify']}",
        f"- device: {env['device']}; kernel: {env['backend']} ({env['backend_reason']})",
        f"- FP8 dense peak used: {peak} TFLOP/s ({env.get('peak_source')})",
        f"- torch.compile backend: {env.get('compile_backend')}; graphs compiled: {run.get('compile_count')}",
        f"- production path (what CutlassFp8BlockScaledMMKernel calls on Hopper): "
        f"`{prod}` (`{env.get('production_op')}` inside torch.compile)",
        f"- timer: {env['timer']}; target spread {run['config']['target_spread']:.0%}, rounds "
        f"{run['config']['min_rounds']}..{run['config']['max_rounds']} (eager "
        f"..{run['config'].get('max_rounds_eager')}), "
        f"{run['config']['samples_per_round']} samples/round",
        f"- wall time {run.get('wall_s', 0):.0f} s"
        + (f"; TRUNCATED: {run['truncated']}" if run.get("truncated") else ""),
        "",
    ]
    if env.get("nvidia_smi_start"):
        L += [
            f"- nvidia-smi at start: `{env['nvidia_smi_start']}`",
            f"- nvidia-smi at end: `{env.get('nvidia_smi_end')}`",
            "",
        ]
    L += ["Paths:", ""]
    for name, info in run["paths"].items():
        state = "timed" if info["available"] else f"not timed: {info['reason']}"
        L.append(f"- `{name}` ({info['origin']}): {info['what']} -- {state}")
    L.append("")
    rows = run["rows"]
    shapes = list(dict.fromkeys(r["shape"] for r in rows))
    paths = _paths_in(run)
    # Summary: production path per shape at a few M.
    if prod in paths:
        pick = [m for m in (1, 4, 16, 128, 1024, 4096, 8192) if any(r["m"] == m for r in rows)]
        hdr = ["shape (N x K)"] + [f"M={m}" for m in pick]
        body = []
        for sid in shapes:
            cells = [f"{sid} ({_nk(rows, sid)})"]
            for m in pick:
                r = _find(rows, sid, m, prod)
                if r is None or r.get("graph_us") is None:
                    cells.append("")
                    continue
                frac = f", {r['graph_tflops'] / peak:.0%}" if peak else ""
                cells.append(f"{r['graph_us']:.1f} us, {r['graph_tflops']:.0f} TF/s{frac}")
            body.append(cells)
        L += [f"### Summary: `{prod}`, CUDA-graph time, TFLOP/s and fraction of peak", ""]
        L += _table(hdr, body)
    ov = run.get("overhead", [])
    if ov:
        L += [
            "### Padding overhead: t_a / t_b - 1 (paired by round), median over the M of the "
            "class [min, max]; resolved: M where the ratios' IQR excludes 0 and |median| > "
            f"{RESOLVED:.0%}",
            "",
        ]
        metrics = list(dict.fromkeys(o["metric"] for o in ov))
        hdr = ["shape", "M class", "metric", "graph", "eager", "graph resolved"]
        body = []
        for sid in shapes:
            for aligned in (True, False):
                for met in metrics:
                    xs = [
                        o
                        for o in ov
                        if o["shape"] == sid and o["metric"] == met and (o["m_mod4"] == 0) == aligned
                    ]
                    if not xs:
                        continue
                    cells = [sid, "M%4==0" if aligned else "M%4!=0", f"`{met}`"]
                    for mode in ("graph", "eager"):
                        v = [o[mode] for o in xs if o.get(mode) is not None]
                        rng = f" [{_pct(min(v))}, {_pct(max(v))}]" if v else ""
                        cells.append(f"{_pct(statistics.median(v))}{rng}" if v else "")
                    nres = sum(bool(o.get("graph_resolved")) for o in xs)
                    cells.append(f"{nres}/{len(xs)}")
                    body.append(cells)
        L += _table(hdr, body)
    if run.get("launches"):
        L += ["### What one call launches (torch.profiler; first shape)", ""]
        body = []
        for name, per_m in run["launches"].items():
            for m, info in per_m.items():
                if "error" in info:
                    body.append([f"`{name}`", m, "", info["error"]])
                else:
                    body.append([f"`{name}`", m, str(info["count"]), ", ".join(info["launches"])])
        L += _table(["path", "M", "launches", "kernels / ops"], body)
    for sid in shapes:
        for mode in ("graph", "eager"):
            if not any(r.get(f"{mode}_us") is not None for r in rows if r["shape"] == sid):
                continue
            L += [f"### {sid} ({_nk(rows, sid)}): {mode} time, us (spread)", ""]
            ms = sorted({r["m"] for r in rows if r["shape"] == sid})
            hdr = ["M", *paths, f"{prod or 'bypass'} TF/s"] + (["% peak"] if peak else [])
            body = []
            for m in ms:
                cells = [str(m)]
                for pth in paths:
                    r = _find(rows, sid, m, pth)
                    if r is None:
                        cells.append("")
                    elif r.get("error"):
                        cells.append("error")
                    else:
                        at = f" @{r['m_kernel']}" if pth == "bypass" and r["m_kernel"] != m else ""
                        sp = _fmt(_spread_pct(r, mode), 1)
                        cells.append(f"{_fmt(r.get(f'{mode}_us'))} ({sp}%){at}")
                r = _find(rows, sid, m, prod or "bypass")
                tf = r.get(f"{mode}_tflops") if r else None
                cells.append(_fmt(tf, 0))
                if peak:
                    cells.append(_fmt(100 * tf / peak, 1) if tf else "")
                body.append(cells)
            L += _table(hdr, body)
    errs = [r for r in rows if r.get("error")]
    if errs:
        L += (
            ["### Errors", ""]
            + [f"- {r['shape']} M={r['m']} `{r['path']}`: {r['error']}" for r in errs]
            + [""]
        )
    return "\n".join(L)


def _spread_pct(r: dict, mode: str) -> float | None:
    s = r.get(f"{mode}_spread")
    return None if s is None or math.isinf(s) else 100 * s


def _nk(rows: list[dict], sid: str) -> str:
    r = next(r for r in rows if r["shape"] == sid)
    return f"{r['n']} x {r['k']}"


def _find(rows: list[dict], sid: str, m: int, path: str) -> dict | None:
    return next((r for r in rows if r["shape"] == sid and r["m"] == m and r["path"] == path), None)


def plot(
    runs: dict[str, dict],
    png: Path,
    mode: str,
    only: dict[str, list[str]] | None = None,
    title: str = "",
    ratio: bool = False,
) -> str | None:
    """Latency vs M, log-log, a subplot per shape, a line per (run, path); says why if no plot.
    ``ratio``: each path's time over its run's bypass at the same M, in percent (linear axis):
    where the paths differ, which the log-log latency plot hides."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no plot"
    shapes = list(dict.fromkeys(r["shape"] for run in runs.values() for r in run["rows"]))
    if not shapes:
        return "nothing to plot"
    ncol = min(3, len(shapes))
    nrow = math.ceil(len(shapes) / ncol)
    fig, axes = plt.subplots(
        nrow, ncol, figsize=(5.2 * ncol, 3.8 * nrow + 0.8), squeeze=False, layout="constrained"
    )
    styles = ["-", "--", ":", "-."]
    colors = {p: f"C{i}" for i, p in enumerate(BENCH_PATHS)}
    markers = dict(zip(BENCH_PATHS, "os^vDxP", strict=True))
    for ax, sid in zip(axes.flat, shapes, strict=False):
        for ri, (label, run) in enumerate(runs.items()):
            paths = (only or {}).get(label) or _paths_in(run)
            base = {
                r["m"]: r
                for r in run["rows"]
                if r["shape"] == sid and r["path"] == "bypass" and r.get(f"{mode}_us")
            }
            for pth in paths:
                if ratio and pth == "bypass":
                    continue
                mine = sorted(
                    (
                        r
                        for r in run["rows"]
                        if r["shape"] == sid and r["path"] == pth and r.get(f"{mode}_us") is not None
                    ),
                    key=lambda r: r["m"],
                )
                if ratio:  # paired by round, as in the overhead table
                    pts = [
                        (r["m"], 100 * (statistics.median(_paired(r, base[r["m"]], mode)) - 1))
                        for r in mine
                        if r["m"] in base
                    ]
                else:
                    pts = [(r["m"], r[f"{mode}_us"]) for r in mine]
                if not pts:
                    continue
                kw = {"color": colors.get(pth), "marker": markers.get(pth, "."), "ms": 3.5}
                if len(runs) == 1:  # aligned and unaligned M as two lines: no zig-zag
                    for sel, ls, fill in ((0, "-", None), (1, ":", "none")):
                        xy = [p for p in pts if (p[0] % 4 != 0) == bool(sel)]
                        if xy:
                            ax.plot(
                                [p[0] for p in xy],
                                [p[1] for p in xy],
                                ls,
                                lw=1.1,
                                mfc=fill,
                                label=pth if sel == 0 or all(q[0] % 4 for q in pts) else None,
                                **kw,
                            )
                else:
                    ax.plot(
                        [p[0] for p in pts],
                        [p[1] for p in pts],
                        styles[ri % len(styles)],
                        lw=1.1,
                        mfc="none",
                        label=f"{label}: {pth}",
                        **kw,
                    )
        nk = next(
            (f"N={r['n']} K={r['k']}" for run in runs.values() for r in run["rows"] if r["shape"] == sid), ""
        )
        ax.set_title(f"{sid}  {nk}", fontsize=9)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("M (tokens)")
        if ratio:
            ax.axhline(0, color="k", lw=0.6)
            ax.set_ylabel(f"{mode} time over bypass (%)")
        else:
            ax.set_yscale("log")
            ax.set_ylabel(f"{mode} time per call (us)")
        ax.grid(True, which="both", alpha=0.3)
    for ax in list(axes.flat)[len(shapes) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if len(runs) == 1:
        from matplotlib.lines import Line2D

        handles += [Line2D([], [], color="gray", ls="-"), Line2D([], [], color="gray", ls=":")]
        labels += ["M % 4 == 0", "M % 4 != 0"]
    fig.legend(
        handles,
        labels,
        loc="outside upper center",
        ncol=min(4, max(1, len(labels))),
        fontsize=8,
        title=title,
        title_fontsize=10,
        frameon=False,
    )
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return None


def write_outputs(run: dict, cfg: Config, final: bool) -> list[Path]:
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = _tag(run["label"])
    files = [out / f"bench-{tag}.json", out / f"bench-{tag}.csv", out / f"bench-{tag}.md"]
    doc = {"schema": SCHEMA, "runs": {run["label"]: run}}
    files[0].write_text(_dump(doc))
    write_csv(files[1], {run["label"]: run})
    files[2].write_text(markdown_run(run) + "\n")
    if final and cfg.plot:
        for mode in ("graph", "eager") if cfg.eager else ("graph",):
            png = out / f"bench-{tag}-{mode}.png"
            how = {"graph": "CUDA graph replay", "eager": "eager calls, launches included"}[mode]
            if run["env"]["backend"] != "real":
                how = "CPU double, plain calls: plumbing only, not a measurement"
            title = f"vLLM {run['label']} on {run['env']['device']}: {mode} time ({how})"
            why = plot({run["label"]: run}, png, mode, title=title)
            if why:
                _log(why)
            else:
                files.append(png)
        png = out / f"bench-{tag}-overhead.png"
        title = (
            f"vLLM {run['label']} on {run['env']['device']}: CUDA-graph time over bypass at "
            f"the same M (bypass at roundup(M, 4) where M % 4 != 0)"
        )
        if not plot({run["label"]: run}, png, "graph", title=title, ratio=True):
            files.append(png)
    return files


def _clean(o: Any) -> Any:
    """JSON-safe: NaN and infinities become null (strict JSON has neither)."""
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_clean(v) for v in o]
    return o


def _dump(doc: dict) -> str:
    return json.dumps(_clean(doc), indent=1, default=str, allow_nan=False) + "\n"


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------
# Compare
# --------------------------------------------------------------------------------------------------


def compare(files: list[str], cfg: Config) -> int:
    """Merge bench JSON files (each keyed by its run label) into one CSV, Markdown table and plot.
    Matches (shape, M); compares each run's bypass and its own production path."""
    from .cli import UsageError

    runs: dict[str, dict] = {}
    for f in files:
        p = Path(f)
        try:
            doc = json.loads(p.read_text())
        except (OSError, ValueError) as e:
            raise UsageError(f"bench --compare: cannot read {f}: {e}") from None
        if doc.get("schema") != SCHEMA:
            raise UsageError(f"bench --compare: {f} is not a {SCHEMA} file")
        for label, run in doc["runs"].items():
            key = label if label not in runs else f"{label} ({p.stem})"
            run["label"] = key
            runs[key] = run
    if not runs:
        raise UsageError("bench --compare: no runs in the given files")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    sel: dict[str, list[str]] = {}
    for label, run in runs.items():
        want = cfg.paths or ["bypass", "production"]
        have = _paths_in(run)
        names = [run.get("production_path") if w == "production" else w for w in want]
        sel[label] = [n for n in dict.fromkeys(names) if n in have]
    (out / "compare.json").write_text(_dump({"schema": SCHEMA, "runs": runs}))
    write_csv(out / "compare.csv", runs)
    devices = {label: run["env"]["device"] for label, run in runs.items()}
    L = ["## fp8-verify bench: comparison", ""]
    L += [
        f"- `{label}`: vLLM {run['env']['vllm']}, torch {run['env']['torch']}, {devices[label]}, "
        f"production path `{run.get('production_path')}`"
        for label, run in runs.items()
    ]
    if len(set(devices.values())) > 1:
        L += ["", "**Runs come from different devices: compare with care.**"]
    L.append("")
    cols = [(label, pth) for label in runs for pth in sel[label]]
    order = list(dict.fromkeys(r["shape"] for run in runs.values() for r in run["rows"]))
    keys = sorted(
        {(r["shape"], r["m"]) for run in runs.values() for r in run["rows"]},
        key=lambda x: (order.index(x[0]), x[1]),
    )
    base = cols[0] if cols else None
    for mode in ("graph", "eager"):
        L += [f"### {mode} time per call, us (ratio to `{base[0]}: {base[1]}`)" if base else "", ""]
        body = []
        for sid, m in keys:
            cells = [sid, str(m)]
            tb = None
            for label, pth in cols:
                r = _find(runs[label]["rows"], sid, m, pth)
                t = r.get(f"{mode}_us") if r else None
                if (label, pth) == base:
                    tb = t
                ratio = f" ({t / tb:.3f})" if t is not None and tb and (label, pth) != base else ""
                cells.append(f"{_fmt(t)}{ratio}")
            body.append(cells)
        L += _table(["shape", "M", *[f"{lb}: {p}" for lb, p in cols]], body)
    (out / "compare.md").write_text("\n".join(L) + "\n")
    files = [out / "compare.json", out / "compare.csv", out / "compare.md"]
    if cfg.plot:
        for mode in ("graph", "eager"):
            png = out / f"compare-{mode}.png"
            why = plot(runs, png, mode, sel, title=f"{mode} time: " + " vs ".join(runs))
            if why:
                _log(why)
            else:
                files.append(png)
    _log("wrote " + ", ".join(str(f) for f in files))
    return 0


# --------------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------------


def _list_shapes() -> int:
    print(f"{'id':<26} {'N':>6} {'K':>6}  {'N%128':>5}  model / source")
    for s in SHAPES:
        flag = "" if s.n % 128 == 0 and s.k % 128 == 0 else "  <- partial block"
        print(f"{s.id:<26} {s.n:>6} {s.k:>6}  {s.n % 128:>5}  {s.model}: {s.source}{flag}")
        if s.note:
            print(f"{'':<45}{s.note}")
    print(f"quick: {', '.join(QUICK_SHAPES)}; M: {M_FULL} (quick {M_QUICK})")
    return 0


def _environment(cfg: Config, prod: str | None) -> dict:
    import torch

    from . import __version__, paths
    from .subject import load

    s = load()
    cuda = s.device.type == "cuda"
    name = torch.cuda.get_device_name(s.device) if cuda else "CPU"
    peak, why = _peak(name) if cuda else (None, "CPU double: no peak")
    env = {
        "vllm": s.vllm_version,
        "torch": torch.__version__,
        "fp8_verify": __version__,
        "python": sys.version.split()[0],
        "device": s.device_name(),
        "device_name": name,
        "backend": s.backend,
        "backend_reason": s.backend_reason,
        "compile_backend": paths.compile_backend(),
        "peak_tflops": peak,
        "peak_source": why,
        "timer": (
            "CUDA events; graph = torch.cuda.CUDAGraph replay"
            if cuda
            else "time.perf_counter on the CPU double (dry run: host time, not a measurement)"
        ),
        "production_op": {"compiled_op": "dynamic_padded_cutlass", "padded_compiled": "padded_cutlass"}.get(
            prod or ""
        ),
        "l2_bytes": _l2_bytes(s.device),
        "nvidia_smi_start": _nvsmi() if cuda else None,
    }
    if cuda:
        pr = torch.cuda.get_device_properties(s.device)
        env.update(sm_count=pr.multi_processor_count, memory_gib=round(pr.total_memory / 2**30, 1))
    return env


def _spin_up(bps: dict[str, BenchPath], dev: torch.device, g: torch.Generator, seconds: float) -> None:
    """Run GEMMs for a moment so that clocks have ramped before the first timed point."""
    import torch

    shape = Shape("spin", "-", "-", 8192, 8192, "-")
    p = _activations(1024, shape.k, _weights(shape, 1, dev, g), 1, dev, g)[0]
    run = bps["bypass"].run
    assert run is not None
    t = time.perf_counter()
    while time.perf_counter() - t < seconds:
        for _ in range(20):
            run(p)
        torch.cuda.synchronize()


def main(args: argparse.Namespace, extra: list[str]) -> int:
    """``fp8-verify bench``: exit 0, or 2 with one line when the real kernel is not here."""
    from .cli import UsageError

    cfg, ns = _config(args, extra)
    if ns.list_shapes:
        return _list_shapes()
    if ns.compare:
        return compare(ns.compare, cfg)

    import logging

    # On a machine without CUDA, importing vLLM logs a torch cpp_extension warning: keep the
    # "no Hopper GPU" answer to one line.
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    import torch

    from . import double, paths
    from .subject import load

    s = load()
    if not s.available:
        raise UsageError(f"bench: {s.error}")
    real = s.backend == "real"
    if not real and not cfg.dry_run:
        raise UsageError(
            f"bench needs the real SM90 CUTLASS kernel (a Hopper GPU with vLLM's _C "
            f"ops); here: {s.backend_reason}. Use --dry-run to smoke-test on the CPU "
            f"double"
        )
    if real and (double.installed() or s.device.type != "cuda"):
        raise UsageError("bench: the CPU double is installed on a GPU run; refusing to time it")
    for lim in ("recompile_limit", "cache_size_limit", "accumulated_recompile_limit"):
        if hasattr(torch._dynamo.config, lim):  # one compiled callable serves every shape
            setattr(torch._dynamo.config, lim, max(256, getattr(torch._dynamo.config, lim)))

    bps, prod = bench_paths(cfg)
    pool = DRY_SHAPES if cfg.dry_run else SHAPES
    shapes = [x for x in pool if x.id in cfg.shapes]
    label = cfg.label or s.vllm_version or "unknown"
    dev = s.device
    clock = _Clock(dev.type == "cuda")
    g = torch.Generator(device=dev).manual_seed(0)
    env = _environment(cfg, prod)
    run: dict[str, Any] = {
        "label": label,
        "env": env,
        "config": asdict(cfg),
        "production_path": prod,
        "paths": {
            n: {"available": b.available, "what": b.what, "origin": b.origin, "reason": b.reason}
            for n, b in bps.items()
        },
        "rows": [],
        "overhead": [],
        "launches": {},
        "truncated": None,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    timed = [n for n, b in bps.items() if b.available]
    _log(
        f"fp8-verify bench [{label}]: vLLM {s.vllm_version} on {env['device']}, kernel "
        f"{s.backend}; peak {env['peak_tflops']} TFLOP/s; production path {prod}"
    )
    _log(f"  timing {', '.join(timed)}; {len(shapes)} shapes x {len(cfg.ms)} M; out {cfg.out}")
    for n, b in bps.items():
        if not b.available:
            _log(f"  not timed: {n}: {b.reason}")
    if not bps["bypass"].available:
        raise UsageError(f"bench: the bypass path is not available: {bps['bypass'].reason}")
    t0 = time.perf_counter()
    try:
        if clock.cuda and not cfg.dry_run:
            _spin_up(bps, dev, g, 1.5)
        lp_ms = (8, 7) if cfg.dry_run else (128, 127)
        run["launches"] = launch_profile(bps, shapes[0], lp_ms, dev, g)
        if clock.cuda:
            missing = [
                n
                for n, d in run["launches"].items()
                if any(not v.get("cutlass_gemm", False) for v in d.values())
            ]
            if missing:
                _log(f"  WARNING: no CUTLASS kernel seen in the profile of {', '.join(missing)}")
        l2 = _l2_bytes(dev)
        npoints = len(shapes) * len(cfg.ms)
        done = 0
        for si, shape in enumerate(shapes):
            w_sets = _n_calls(shape, 1, l2, cfg)
            weights = _weights(shape, w_sets, dev, g)
            _log(
                f"[{si + 1}/{len(shapes)}] {shape.label()} ({shape.model}; {w_sets} weight sets"
                f"{'; ' + shape.note if shape.note else ''})"
            )
            for m in cfg.ms:
                el = time.perf_counter() - t0
                if cfg.budget_s is not None and el > cfg.budget_s:
                    run["truncated"] = (
                        f"--budget-s {cfg.budget_s:g} reached after "
                        f"{done}/{npoints} points; stopped before {shape.id} M={m}"
                    )
                    break
                tp = time.perf_counter()
                try:
                    rows, line = _point(shape, m, bps, weights, _n_calls(shape, m, l2, cfg), clock, cfg, g)
                except torch.OutOfMemoryError as e:
                    rows, line = [], f"out of memory: {str(e).splitlines()[0][:200]}"
                    torch.cuda.empty_cache()
                for r in rows:
                    r.update(
                        label=label,
                        vllm=s.vllm_version,
                        device=env["device_name"],
                        shape=shape.id,
                        model=shape.model,
                        layer=shape.layer,
                        n=shape.n,
                        k=shape.k,
                        m=m,
                        m_mod4=m % 4,
                    )
                    for mode in ("graph", "eager"):
                        tf = r.get(f"{mode}_tflops")
                        r[f"{mode}_peak_frac"] = (
                            tf / env["peak_tflops"] if (tf and env["peak_tflops"]) else None
                        )
                run["rows"].extend(rows)
                done += 1
                _log(
                    f"  M={m:<5} us graph/eager: {line}  ({time.perf_counter() - tp:.1f}s, "
                    f"{time.perf_counter() - t0:.0f}s)"
                )
            del weights
            if clock.cuda:
                torch.cuda.empty_cache()
            run["overhead"] = overheads(run["rows"])
            run["wall_s"] = time.perf_counter() - t0
            write_outputs(run, cfg, final=False)
            if run["truncated"]:
                break
    except KeyboardInterrupt:
        run["truncated"] = "interrupted (Ctrl-C)"
    run["overhead"] = overheads(run["rows"])
    run["wall_s"] = time.perf_counter() - t0
    run["compile_count"] = paths.compile_count()
    run["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    if clock.cuda:
        env["nvidia_smi_end"] = _nvsmi()
    files = write_outputs(run, cfg, final=True)
    _log(
        f"wrote {', '.join(str(f) for f in files)}"
        + (f" (TRUNCATED: {run['truncated']})" if run["truncated"] else "")
    )
    if run["truncated"] == "interrupted (Ctrl-C)":
        return 130
    return 0
