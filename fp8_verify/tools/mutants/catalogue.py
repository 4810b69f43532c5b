"""The planted bugs (mutants): each plants one plausible bug in the *subject* -- vLLM's Python around the
SM90 op, or the op itself -- never in the suite's reference, bound, verdict, strategies or paths, and
returns the undo.

* **routing / compile** -- a small textual edit of a vLLM function's source, compiled in the function's
  own module globals; the new code object replaces the *original* function's ``__code__``, so the
  ``torch.ops.vllm.*`` registrations (which hold the original function objects) run the bug. These edit
  vLLM 0.22-0.23's padding code and are refused (:class:`MutantError`) on releases without it.
* **kernel** -- ``vllm._custom_ops.cutlass_scaled_mm`` (looked up as ``ops.cutlass_scaled_mm`` at call
  time by vLLM's wrappers) is wrapped: inputs or outputs are transformed, or the result is recomputed by
  the kernel's emulation with one step made wrong. Only torch ops that run on CPU and CUDA are used, so
  a mutant behaves the same on the CPU double and on the real SM90 kernel. The wrapper mutates only calls
  that reach the block-wise kernel with the layouts it reads; anything else passes through, so contract
  tests of odd layouts see the unmutated kernel.
"""

from __future__ import annotations

import ast
import functools
import importlib
import inspect
import linecache
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, replace
from types import FunctionType
from typing import Any

import torch

from ...numerics import block_scale, fma32, sm90_blockwise_gemm, uses_blockwise_kernel
from ...problem import cdiv, column_major

GROUP = 128  # the kernel's K group and N block (block [128, 128], the only one SM90 takes)

Undo = Callable[[], None]


class MutantError(RuntimeError):
    """A mutant cannot be planted in this vLLM (the code it edits is not there or has changed)."""


@dataclass(frozen=True)
class Mutant:
    """One planted bug. ``apply`` plants it and returns the undo; ``equivalent`` says why no correct
    property can tell it from the original (None when it is a real bug)."""

    id: str
    category: str  # "routing" | "kernel" | "compile"
    description: str
    apply: Callable[[], Undo]
    equivalent: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "category": self.category,
            "description": self.description,
            "equivalent": self.equivalent,
        }


# -- source-level mutation ------------------------------------------------------------------------


def _cutlass_module():
    """The vLLM module holding ``_padded_cutlass`` (0.23.x layout or its predecessor)."""
    from ...subject.vllm import load

    s = load()
    if not s.available:
        raise MutantError(f"vLLM is not available: {s.error}")
    fn = s.function("_padded_cutlass")
    if fn is None:
        raise MutantError(f"this vLLM ({s.vllm_version}) has no _padded_cutlass to mutate")
    return importlib.import_module(fn.__module__)


def _function(name: str) -> FunctionType:
    fn = getattr(_cutlass_module(), name, None)
    if not isinstance(fn, FunctionType):
        raise MutantError(f"{name} is not a function in this vLLM")
    return fn


def _edit_source(mutant_id: str, name: str, *edits: tuple[str, str]) -> Undo:
    """Replace ``old`` by ``new`` (each exactly once) in function ``name``'s source and swap the
    result into the original function object's ``__code__``."""
    fn = _function(name)
    src = textwrap.dedent(inspect.getsource(fn))
    for old, new in edits:
        if src.count(old) != 1:
            raise MutantError(
                f"{mutant_id}: {old!r} occurs {src.count(old)} times in {name}, "
                "expected once; this vLLM's source differs from 0.23.0"
            )
        src = src.replace(old, new)
    filename = f"<fp8-verify mutant {mutant_id}: {fn.__module__}.{name}>"
    tree = ast.parse(src, filename)
    first = fn.__code__.co_firstlineno
    ast.increment_lineno(tree, first - 1)  # tracebacks keep vLLM's line numbers
    scope: dict[str, Any] = {}
    exec(compile(tree, filename, "exec"), fn.__globals__, scope)
    new_code = scope[name].__code__
    if new_code.co_freevars != fn.__code__.co_freevars:
        raise MutantError(f"{mutant_id}: free variables of {name} changed")
    # Let tracebacks and inspect show the mutated source.
    lines = ["\n"] * (first - 1) + [line + "\n" for line in src.splitlines()]
    linecache.cache[filename] = (len("".join(lines)), None, lines, filename)
    old_code = fn.__code__
    fn.__code__ = new_code

    def undo() -> None:
        fn.__code__ = old_code

    return undo


@dataclass(frozen=True)
class _SourceEdit:
    """A planting function for :func:`_edit_source` (``label`` names the mutant in tracebacks)."""

    function: str
    edits: tuple[tuple[str, str], ...]
    label: str = "?"

    def __call__(self) -> Undo:
        return _edit_source(self.label, self.function, *self.edits)


def _source(name: str, *edits: tuple[str, str]) -> _SourceEdit:
    return _SourceEdit(name, edits)


# -- kernel mutation: wrap vllm._custom_ops.cutlass_scaled_mm -------------------------------------

OpFn = Callable[..., torch.Tensor]
Transform = Callable[
    [OpFn, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.dtype], torch.Tensor
]


def _strides_are(t: torch.Tensor, strides: tuple[int, ...]) -> bool:
    """``t`` has these strides (dimensions of size 1 may have any stride)."""
    return all(size == 1 or st == want for size, st, want in zip(t.shape, t.stride(), strides, strict=True))


def _blockwise_call(a, b, sa, sb, bias) -> bool:
    """The call reaches the SM90 block-wise kernel, with the packed layouts that kernel reads: A
    row-major [M, K], B column-major [K, N], activation scales M-major [M, kb], weight scales
    K-major [kb, nb] (what vLLM's paths pass). Other calls are left alone by the kernel mutants."""
    if bias is not None or not all(t.dim() == 2 for t in (a, b, sa, sb)):
        return False
    m, k = a.shape
    n = b.shape[1]
    kb, nb = cdiv(k, GROUP), cdiv(n, GROUP)
    if not uses_blockwise_kernel(m, n, sa.numel(), sb.numel()):
        return False  # the per-token / per-channel kernel, not the block-wise one
    if tuple(sa.shape) != (m, kb) or tuple(sb.shape) != (kb, nb) or sa.dtype != torch.float32:
        return False
    return (
        _strides_are(a, (k, 1))
        and _strides_are(b, (1, k))
        and _strides_are(sa, (1, m))
        and _strides_are(sb, (1, kb))
    )


def _wrap_kernel(transform: Transform) -> Undo:
    """Route ``ops.cutlass_scaled_mm`` through ``transform(original, a, b, sa, sb, out_dtype)``."""
    from vllm import _custom_ops as ops

    original = ops.cutlass_scaled_mm

    @functools.wraps(original)
    def mutated(a, b, scale_a, scale_b, out_dtype, bias=None):
        if not _blockwise_call(a, b, scale_a, scale_b, bias):
            return original(a, b, scale_a, scale_b, out_dtype, bias)
        return transform(original, a, b, scale_a, scale_b, out_dtype)

    ops.cutlass_scaled_mm = mutated

    def undo() -> None:
        ops.cutlass_scaled_mm = original

    return undo


def _kernel(transform: Transform) -> Callable[[], Undo]:
    return lambda: _wrap_kernel(transform)


def _recompute(wrong: Callable[..., torch.Tensor]) -> Transform:
    """A kernel whose arithmetic is the SM90 kernel's emulation (:mod:`fp8_verify.numerics`) with one
    step made wrong by ``wrong(a [M, K], b [N, K], sa [M, kb], sb [nb, kb], out_dtype)``. The original op
    runs first, so its preconditions and errors are unchanged."""

    def transform(original, a, b, sa, sb, out_dtype):
        out = original(a, b, sa, sb, out_dtype)
        out.copy_(wrong(a, b.t(), sa, sb.t(), out_dtype))  # the op's B.T and Bs.T back to [N, K], [nb, kb]
        return out

    return transform


def _bf16_accumulator(a, b, sa, sb, out_dtype) -> torch.Tensor:
    """The promotion's running sum kept in bf16: each fma's result rounded to bf16."""

    def promote(part, s_a, s_b, acc):
        return fma32(part, block_scale(s_a, s_b), acc).to(torch.bfloat16).float()

    return sm90_blockwise_gemm(a, b, sa, sb, out_dtype, promotion=promote)


def _partials_12_bits(a, b, sa, sb, out_dtype) -> torch.Tensor:
    """The tensor cores' partial sums keep 12 fraction bits instead of Hopper's 13."""
    return sm90_blockwise_gemm(a, b, sa, sb, out_dtype, frac_bits=12)


def _scale_edges_shifted(a, b, sa, sb, out_dtype) -> torch.Tensor:
    """K-block boundaries at 128 g - 1 instead of 128 g: the last column of every K-block is summed and
    scaled with the next block. A zero column in front of A and B shifts every column by one; the scales
    of the block this pushes past the end repeat the last block's."""
    zero = torch.zeros(a.shape[0], 1, dtype=torch.uint8, device=a.device)
    a1 = torch.cat([zero, a.view(torch.uint8)], dim=1).view(a.dtype)
    b1 = torch.cat([zero[:1].expand(b.shape[0], 1), b.view(torch.uint8)], dim=1).view(b.dtype)
    extra = cdiv(a1.shape[1], GROUP) - sa.shape[1]
    sa1 = torch.cat([sa, sa[:, -1:].expand(-1, extra)], dim=1) if extra else sa
    sb1 = torch.cat([sb, sb[:, -1:].expand(-1, extra)], dim=1) if extra else sb
    return sm90_blockwise_gemm(a1, b1, sa1, sb1, out_dtype)


def _drop_partial_k_block(original, a, b, sa, sb, out_dtype):
    """The mainloop skips a last K-block shorter than 128 (its columns count as zero)."""
    k = a.shape[1]
    whole = (k // GROUP) * GROUP
    if whole == k or whole == 0:
        return original(a, b, sa, sb, out_dtype)
    a2 = a.clone()
    a2.view(torch.uint8)[:, whole:] = 0
    return original(a2, b, sa, sb, out_dtype)


def _neighbour_row_scale(original, a, b, sa, sb, out_dtype):
    """Row 1 is scaled with row 0's activation scales (an off-by-one in the M index of the scale
    load)."""
    if a.shape[0] < 2:
        return original(a, b, sa, sb, out_dtype)
    sa2 = sa.clone()  # keeps the M-major strides
    sa2[1].copy_(sa[0])
    return original(a, b, sa2, sb, out_dtype)


def _transposed_b_scale(original, a, b, sa, sb, out_dtype):
    """Weight scales indexed as [nb, kb] row-major where they are [kb, nb] K-major: element
    (kb_i, nb_j) is read from offset kb_i * nb + nb_j instead of nb_j * kb + kb_i."""
    kb, nb = sb.shape
    memory = sb.t().reshape(-1)  # the packed K-major storage, in address order
    wrong = memory.view(kb, nb)  # what the transposed index reads
    return original(a, b, sa, column_major(wrong), out_dtype)


def _row_offset(original, a, b, sa, sb, out_dtype):
    """The store of the last M-tile is one row off: each of its rows gets the next row's result and
    its last row the row past the end -- a padding row (zeros) in the padded path, out of bounds
    (which TMA fills with zeros) for an aligned M. Rows of earlier tiles are right."""
    out = original(a, b, sa, sb, out_dtype)
    m = out.shape[0]
    start = ((m - 1) // GROUP) * GROUP  # first row of the last 128-row tile
    shifted = torch.cat((out[start + 1 :], out.new_zeros((1, out.shape[1]))))
    out[start:].copy_(shifted)
    return out


# -- the catalogue --------------------------------------------------------------------------------

_EAGER_IF = "    if qx.shape[0] % 4 != 0:\n        return run_padded("
_SLICE = "return output[0 : qx.shape[0], ...]"

_ROW_INDEPENDENT = (
    "output row i depends only on row i of A and of the activation scales (a GEMM), and the padded "
    "rows are sliced off before anything sees them"
)

_CATALOGUE: tuple[Mutant, ...] = (
    Mutant(
        "slice-short",
        "routing",
        "_padded_cutlass returns output[0:M-1]: the last row is lost",
        _source("_padded_cutlass", (_SLICE, "return output[0 : qx.shape[0] - 1, ...]")),
    ),
    Mutant(
        "slice-shift",
        "routing",
        "_padded_cutlass returns output[1:M+1]: every row is its successor, a padding row last",
        _source("_padded_cutlass", (_SLICE, "return output[1 : qx.shape[0] + 1, ...]")),
    ),
    Mutant(
        "scale-pad-zeros",
        "routing",
        "_padded_cutlass pads the activation scales with zeros instead of ones",
        _source("_padded_cutlass", ("padded_x_scale = torch.ones(", "padded_x_scale = torch.zeros(")),
        equivalent=f"the padded rows of A are zeros, so their outputs are 0 with either scale; "
        f"{_ROW_INDEPENDENT}",
    ),
    Mutant(
        "scale-layout-rowmajor",
        "routing",
        "_padded_cutlass builds the padded activation scales row-major [M_pad, kb] "
        "(no .permute), but the kernel reads them M-major",
        _source(
            "_padded_cutlass",
            ("[*x_scale.shape[1:], padded]", "[padded, *x_scale.shape[1:]]"),
            (").permute(-1, -2)", ")"),
        ),
    ),
    Mutant(
        "predicate-inverted",
        "routing",
        "_dynamic_padded_cutlass (eager) pads when M % 4 == 0 and calls the kernel directly when M % 4 != 0",
        _source("_dynamic_padded_cutlass", (_EAGER_IF, _EAGER_IF.replace("% 4 != 0", "% 4 == 0"))),
    ),
    Mutant(
        "pad-multiple-8",
        "routing",
        "_padded_cutlass pads M to a multiple of 8 instead of 4",
        _source("_padded_cutlass", ("pad_multiple = 4", "pad_multiple = 8")),
        equivalent="a multiple of 8 is a multiple of 4, so the kernel still gets an M it takes; "
        f"the extra rows are zeros and {_ROW_INDEPENDENT}. Only the cost changes (up to 7 "
        "wasted rows instead of 3; M = 4 mod 8 is now padded too). Even the bits are the same "
        "on Hopper: the padded M stays within the same 128-row tile count, so the kernel's "
        "schedule (StreamK for K > 3N) is unchanged, up to the nondeterminism of StreamK's "
        "reduction, which the original has too",
    ),
    Mutant(
        "pad-multiple-2",
        "routing",
        "_padded_cutlass pads M to a multiple of 2 instead of 4 (M = 2 mod 4 reaches the kernel)",
        _source("_padded_cutlass", ("pad_multiple = 4", "pad_multiple = 2")),
    ),
    Mutant(
        "fake-shape",
        "routing",
        "the fake implementation (torch.compile's shape function) returns [M, K] instead of [M, N]",
        _source("_padded_cutlass_fake", ("(qx.size(0), weight.size(0))", "(qx.size(0), weight.size(1))")),
    ),
    Mutant(
        "fake-dtype",
        "routing",
        "the fake implementation always says bfloat16, whatever output_dtype is",
        _source("_padded_cutlass_fake", ("dtype=output_dtype", "dtype=torch.bfloat16")),
    ),
    Mutant(
        "kernel-drop-partial-k",
        "kernel",
        "the mainloop drops a partial last K-block (K % 128 != 0)",
        _kernel(_drop_partial_k_block),
    ),
    Mutant(
        "kernel-neighbour-row-scale",
        "kernel",
        "row 1 is scaled with row 0's activation scales",
        _kernel(_neighbour_row_scale),
    ),
    Mutant(
        "kernel-transposed-b-scale",
        "kernel",
        "the weight-scale index is transposed (reads [kb, nb] as if N-major)",
        _kernel(_transposed_b_scale),
    ),
    Mutant(
        "kernel-bf16-accum",
        "kernel",
        "the per-block promotion accumulates in bf16 instead of fp32 (each fma's result rounded to bf16)",
        _kernel(_recompute(_bf16_accumulator)),
    ),
    Mutant(
        "kernel-scale-edge-127",
        "kernel",
        "off-by-one at the K-block edge: scale groups start at 128 g - 1, so column 127 of each "
        "block takes the next block's scales",
        _kernel(_recompute(_scale_edges_shifted)),
    ),
    Mutant(
        "kernel-partials-12-bits",
        "kernel",
        "the partial sums of each K-block keep 12 fraction bits instead of 13 (a tensor core one bit "
        "less precise): within the FP8 bound, invisible to mean-relative metrics",
        _kernel(_recompute(_partials_12_bits)),
    ),
    Mutant(
        "kernel-row-offset",
        "kernel",
        "the store of the last 128-row tile is one row off: row i gets row i+1, the last row "
        "gets a padding row (zeros)",
        _kernel(_row_offset),
    ),
    Mutant(
        "host-sync",
        "compile",
        "_dynamic_padded_cutlass (eager) reads x_scale.amax().item() to skip all-zero inputs: a "
        "device-to-host synchronisation inside the op (breaks CUDA-graph capture; results "
        "unchanged)",
        _source(
            "_dynamic_padded_cutlass",
            (
                _EAGER_IF,
                (
                    "    if x_scale.amax().item() == 0.0:\n"
                    "        return torch.zeros((qx.shape[0], weight.shape[0]), dtype=output_dtype,\n"
                    "                           device=qx.device)\n" + _EAGER_IF
                ),
            ),
        ),
    ),
    Mutant(
        "data-dependent-shape",
        "compile",
        "_padded_cutlass drops the padding rows with a boolean mask instead of a slice: the "
        "output's shape depends on tensor data (nonzero), values unchanged",
        _source(
            "_padded_cutlass",
            (_SLICE, ("return output[torch.arange(padded, device=output.device) < qx.shape[0]]")),
        ),
    ),
)

CATALOGUE: dict[str, Mutant] = {
    m.id: replace(m, apply=replace(m.apply, label=m.id)) if isinstance(m.apply, _SourceEdit) else m
    for m in _CATALOGUE
}
_active: tuple[str, Undo] | None = None


def apply(mutant_id: str) -> Undo:
    """Plant mutant ``mutant_id`` in the loaded vLLM; returns the undo (also :func:`revert`).
    One mutant at a time per process."""
    global _active
    if mutant_id not in CATALOGUE:
        raise KeyError(f"unknown mutant {mutant_id!r}; known: {', '.join(CATALOGUE)}")
    if _active is not None:
        raise MutantError(f"mutant {_active[0]!r} is already planted in this process")
    undo = CATALOGUE[mutant_id].apply()
    _active = (mutant_id, undo)
    return revert


def revert() -> None:
    """Remove the planted mutant, if any."""
    global _active
    if _active is not None:
        _, undo = _active
        _active = None
        undo()


def active() -> str | None:
    return _active[0] if _active else None
