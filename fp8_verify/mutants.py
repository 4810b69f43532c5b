"""Planted bugs (mutants) in the code under test, and the runner that checks the suite kills them.

A suite that passes proves little unless it fails on wrong code. Each mutant here plants one
plausible bug in the *subject* -- vLLM's Python around the CUTLASS op, or the op itself -- never in
the suite's reference, bound, verdict, strategies or paths, and ``fp8-verify mutants`` runs the
property suite once per mutant, each in a fresh process, and records which property failed first
and how fast.

How a bug is planted (all reversible: :func:`apply` returns an undo):

* **routing / compile** -- a small textual edit of a vLLM function's source, compiled in the
  function's own module globals; the new code object replaces the *original* function's
  ``__code__``, so the ``torch.ops.vllm.*`` registrations (which hold the original function
  objects) run the bug.
* **kernel** -- ``vllm._custom_ops.cutlass_scaled_mm`` (looked up as ``ops.cutlass_scaled_mm`` at
  call time by vLLM's ``cutlass.py``) is wrapped: inputs or outputs are transformed, or the result
  is recomputed by a torch emulation of a wrong kernel. Only torch ops that run on CPU and CUDA are
  used, so a mutant behaves the same on the CPU double and on the real SM90 kernel. The wrapper
  mutates only calls that reach the block-wise kernel with the layouts it reads; anything else
  passes through, so contract tests of odd layouts see the unmutated kernel.

Usage: ``fp8-verify mutants --list``;
``fp8-verify mutants --profile ci [--only ID ...] [--jobs N] [--report F.json] [pytest selection ...]``
(a pytest selection, e.g. ``-k``/``-m``, replaces :data:`DEFAULT_SELECTION`; ``--jobs N`` runs up to N
mutant processes at once, after the control);
``fp8-verify check --mutant ID`` runs the suite on one mutant. See ``docs/mutation.md``.
"""

from __future__ import annotations

import ast
import functools
import importlib
import inspect
import json
import linecache
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, replace
from pathlib import Path
from types import FunctionType
from typing import Any

import pytest
import torch

from .problem import column_major

ROOT = Path(__file__).resolve().parent.parent
GROUP = 128  # the kernel's K group and N block (block [128, 128], the only one SM90 takes)
MUTANT_ENV = "FP8_VERIFY_MUTANT"
RUNNER_ENV = "FP8_VERIFY_MUTANT_RUNNER"  # set by main(): no shrinking, no example database
# Properties run on each mutant. Finding-marked properties are strict xfails on 0.23.0: they fail
# whatever the mutant does, so they cannot kill one (only an accidental fix would, as an XPASS).
# The suite's self-tests (oracle, strategies, calibration tooling) never call vLLM, and the plugin's
# run only crash tests in pytest subprocesses: no mutant can change their outcome. (On an H100 the
# plugin's alone took 200 of the control's 253 s.)
DEFAULT_SELECTION = (
    "-m",
    "not finding",
    "--ignore=tests/test_oracle.py",
    "--ignore=tests/test_strategies.py",
    "--ignore=tests/test_calibrate.py",
    "--ignore=tests/test_plugin.py",
)
# With -x the first failure ends a run: numeric properties of the eager paths go first (cheap, and
# the core claim), then the rest in file order, compiled tests last.
FIRST = ("test_paths.py", "test_mutants.py")
RUN_TIMEOUT_S = 600

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
    from .subject import load

    s = load()
    if not s.available:
        raise MutantError(f"vLLM is not available: {s.error}")
    fn = s.functions.get("_padded_cutlass")
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


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


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
    kb, nb = _cdiv(k, GROUP), _cdiv(n, GROUP)
    if sa.numel() in (1, m) and sb.numel() in (1, n):
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


def _emulate(a, b, sa, sb, out_dtype, segments, acc_dtype=torch.float32) -> torch.Tensor:
    """A torch emulation of the block-wise kernel: for each ``(group, k0, k1)`` segment the fp8
    products over columns ``k0:k1`` are summed in fp32 and scaled by group ``group``'s scales, the
    scaled partials are accumulated in ``acc_dtype``, and the result is rounded once to
    ``out_dtype``. With the right segments and fp32 it is the CPU double's arithmetic; the kernel
    mutants give it wrong ones. Slicing and matmul only (no data-dependent shapes or host reads)."""
    n = b.shape[1]
    af, bf = a.float(), b.float()  # e4m3 values are exact in fp32
    col_scale = sb.float().repeat_interleave(GROUP, dim=1)[:, :n]  # [kb, N]
    acc = torch.zeros(a.shape[0], n, dtype=acc_dtype, device=a.device)
    for g, k0, k1 in segments:
        if k1 <= k0:
            continue
        part = (af[:, k0:k1] @ bf[k0:k1, :]) * (sa[:, g : g + 1].float() * col_scale[g : g + 1, :])
        acc = (acc.float() + part.to(acc_dtype).float()).to(acc_dtype)
    return acc.to(out_dtype)


def _recompute(
    segments_of: Callable[[int], list[tuple[int, int, int]]], acc_dtype: torch.dtype = torch.float32
) -> Transform:
    """A kernel whose arithmetic is :func:`_emulate` with ``segments_of(K)``. The original op runs
    first, so its preconditions and errors are unchanged."""

    def transform(original, a, b, sa, sb, out_dtype):
        out = original(a, b, sa, sb, out_dtype)
        out.copy_(_emulate(a, b, sa, sb, out_dtype, segments_of(a.shape[1]), acc_dtype))
        return out

    return transform


def _blocks(k: int) -> list[tuple[int, int, int]]:
    return [(g, g * GROUP, min(k, (g + 1) * GROUP)) for g in range(_cdiv(k, GROUP))]


def _blocks_shifted_127(k: int) -> list[tuple[int, int, int]]:
    """Group boundaries at 128 g - 1 instead of 128 g: the last column of every K-block but the last
    is scaled with the next block's scales."""
    kb = _cdiv(k, GROUP)
    return [(g, max(0, g * GROUP - 1), k if g == kb - 1 else (g + 1) * GROUP - 1) for g in range(kb)]


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
        "the per-block promotion accumulates in bf16 instead of fp32 (scaled partials and the "
        "running sum rounded to bf16)",
        _kernel(_recompute(_blocks, acc_dtype=torch.bfloat16)),
    ),
    Mutant(
        "kernel-scale-edge-127",
        "kernel",
        "off-by-one at the K-block edge: scale groups start at 128 g - 1, so column 127 of each "
        "block takes the next block's scales",
        _kernel(_recompute(_blocks_shifted_127)),
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


# -- pytest hook for the runner's subprocesses (loaded with ``-p fp8_verify.mutants``) ------------


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    """In a runner subprocess: the chosen profile without shrinking (a kill needs one failing
    example, and shrinking dominates the time) and without the example database (no failure found
    on a mutant may be replayed by a later run)."""
    if os.environ.get(RUNNER_ENV) != "1":
        return
    from hypothesis import Phase, settings

    name = settings.get_current_profile_name()
    phases = [p for p in settings.default.phases if p not in (Phase.shrink, Phase.explain)]
    settings.register_profile(f"{name}-mutants", settings.get_profile(name), phases=phases, database=None)
    settings.load_profile(f"{name}-mutants")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In a runner subprocess: order the items as :data:`FIRST` says (stable within a file)."""
    if os.environ.get(RUNNER_ENV) != "1":
        return

    def key(item: pytest.Item) -> tuple[int, int]:
        name = item.path.name
        first = FIRST.index(name) if name in FIRST else len(FIRST)
        params = getattr(item, "callspec", None) and item.callspec.params
        compiled = item.get_closest_marker("compiled") is not None or (
            bool(params) and params.get("path") in ("compiled_op", "dynamic_compiled")
        )
        return (compiled, first)

    items.sort(key=key)


# -- the runner ----------------------------------------------------------------------------------


@dataclass
class Run:
    """One pytest run in a fresh process: exit code, wall time and the fp8-verify JSON results."""

    exit_code: int
    seconds: float
    results: list[dict]
    tail: str

    def failed(self) -> list[dict]:
        return [r for r in self.results if r["outcome"] in ("failed", "error")]


def _pytest_run(
    mutant_id: str | None,
    profile: str,
    selection: list[str],
    exitfirst: bool,
    deselect: list[str],
    log_dir: Path,
    threads: int | None = None,
) -> Run:
    report = log_dir / f"{mutant_id or 'control'}.json"
    cmd = [sys.executable, "-m", "fp8_verify", "check", "--profile", profile, "--report", str(report)]
    if mutant_id:
        cmd += ["--mutant", mutant_id]
    cmd += ["-q", "-p", "no:xdist", "-p", "fp8_verify.mutants", *(["-x"] if exitfirst else []), *selection]
    for nodeid in deselect:
        cmd += ["--deselect", nodeid]
    env = dict(os.environ)
    env.pop(MUTANT_ENV, None)
    env[RUNNER_ENV] = "1"
    if threads and "OMP_NUM_THREADS" not in env:  # concurrent runs: share the cores, don't oversubscribe
        env["OMP_NUM_THREADS"] = str(threads)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(ROOT), env.get("PYTHONPATH"))))
    t0 = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
        code, out = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as e:
        partial = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else e.stdout
        code, out = -1, f"{partial or ''}\ntimed out after {RUN_TIMEOUT_S} s"
    seconds = time.monotonic() - t0
    (log_dir / f"{mutant_id or 'control'}.log").write_text(out)
    results = json.loads(report.read_text())["results"] if report.is_file() else []
    return Run(code, seconds, results, out[-3000:])


def _test_name(r: dict) -> str:
    return r["test"].split("::")[-1]


def run_baselines(mutant_id: str | None) -> dict:
    from . import baselines

    undo = apply(mutant_id) if mutant_id else None
    try:
        return baselines.run_all()
    except Exception as e:  # a baseline must never stop the runner
        return {"error": f"{type(e).__name__}: {e}"}
    finally:
        if undo:
            undo()


def _mutant_row(m: Mutant, run: Run) -> dict:
    failed = run.failed()
    killed = run.exit_code == 1 and bool(failed)
    status = (
        "killed"
        if killed
        else ("survived" if run.exit_code == 0 else "timeout" if run.exit_code == -1 else "error")
    )
    row = {
        **m.to_dict(),
        "status": status,
        "killed": killed,
        "exit_code": run.exit_code,
        "examples_to_kill": failed[0]["examples"] if killed else None,
        "seconds_to_kill": round(run.seconds, 1) if killed else None,
        "seconds": round(run.seconds, 1),
        "killed_by": sorted({_test_name(r) for r in failed}),
        "reason": (failed[0].get("reason") or "")[:600] if failed else None,
    }
    if status == "error":
        row["reason"] = run.tail[-1500:]
    return row


def _caught(b: dict, name: str) -> str:
    r = b.get(name)
    if r is None:
        return "?"
    return "yes" if r.get("caught") else "no"


def table(rows: list[dict]) -> list[str]:
    """The mutant table as Markdown lines (what ``docs/mutation.md`` holds)."""
    out = [
        "| mutant | category | equivalent? | killed? | examples | seconds | killed by "
        "| vLLM metric caught? | calc_diff caught? |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        killed = {"killed": "yes", "survived": "no"}.get(r["status"], r["status"])
        b = r.get("baselines", {})
        out.append(
            f"| {r['id']} | {r['category']} | {'yes' if r['equivalent'] else 'no'} | {killed} "
            f"| {r['examples_to_kill'] if r['examples_to_kill'] is not None else '-'} "
            f"| {r['seconds_to_kill'] if r['seconds_to_kill'] is not None else '-'} "
            f"| {', '.join(r['killed_by']) or '-'} | {_caught(b, 'vllm_metric')} "
            f"| {_caught(b, 'calc_diff')} |"
        )
    return out


def _list() -> int:
    w = max(len(i) for i in CATALOGUE)
    for m in CATALOGUE.values():
        eq = "  [equivalent]" if m.equivalent else ""
        print(f"{m.id:<{w}}  {m.category:<8} {m.description}{eq}")
    return 0


def main(args, extra: list[str]) -> int:
    """``fp8-verify mutants``: control run, then every mutant in a fresh process, then baselines."""
    if getattr(args, "list", False):
        return _list()
    from .cli import UsageError
    from .plugin import PROFILES

    profile = args.profile or "ci"
    if profile not in PROFILES:
        raise UsageError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    ids = list(dict.fromkeys(args.only or CATALOGUE))  # each once: a run's log and report are per id
    unknown = [i for i in ids if i not in CATALOGUE]
    if unknown:
        raise UsageError(f"unknown mutant(s) {', '.join(unknown)}; `fp8-verify mutants --list`")
    jobs = getattr(args, "jobs", 1)
    jobs = 1 if jobs is None else jobs
    if not isinstance(jobs, int) or jobs < 1:
        raise UsageError(f"--jobs must be an integer >= 1, got {jobs!r}")
    selection = list(extra) if extra else list(DEFAULT_SELECTION)
    log_dir = Path(tempfile.mkdtemp(prefix="fp8-verify-mutants-"))
    say = functools.partial(print, file=sys.stderr, flush=True)
    say(
        f"fp8-verify mutants: profile {profile}, selection {' '.join(selection)}, jobs {jobs}, "
        f"logs in {log_dir}"
    )

    t0 = time.monotonic()
    control = _pytest_run(None, profile, selection, False, [], log_dir)
    control_failed = sorted({r["test"] for r in control.failed()})
    say(
        f"control: exit {control.exit_code} in {control.seconds:.0f} s"
        + (f"; FAILING (excluded from mutant runs): {', '.join(control_failed)}" if control_failed else "")
    )
    if control.exit_code not in (0, 1):
        say(control.tail)
        return 1
    from .subject import load

    s = load()
    control_baselines = run_baselines(None)
    # The bug runs are independent processes, so up to `jobs` of them run at once; the baselines plant
    # the bug in this process, so they run here, one at a time, in catalogue order, once the runs are
    # done (at --jobs 1 as before: no run shares the machine with another run or with a baseline).
    threads = max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else None
    by_id: dict[str, dict] = {}

    def write_report(rows: list[dict], complete: bool) -> dict:
        """The JSON report; also written after each bug run (``complete: false``), so that a run
        stopped by a CI time limit keeps what it has done."""
        report = {
            "profile": profile,
            "selection": selection,
            "jobs": jobs,
            "complete": complete,
            "vllm_version": s.vllm_version,
            "backend": s.backend,
            "device": s.device_name() if s.available else None,
            "seconds": round(time.monotonic() - t0, 1),
            "control": {
                "passed": control.exit_code == 0,
                "exit_code": control.exit_code,
                "seconds": round(control.seconds, 1),
                "failed": control_failed,
                "baselines": control_baselines,
            },
            "mutants": rows,
        }
        if args.report:
            Path(args.report).parent.mkdir(parents=True, exist_ok=True)
            Path(args.report).write_text(json.dumps(report, indent=2, default=str) + "\n")
        return report

    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="fp8-verify-mutant") as pool:
        futures = {
            pool.submit(_pytest_run, i, profile, selection, True, control_failed, log_dir, threads): i
            for i in ids
        }
        try:
            for future in as_completed(futures):
                i = futures[future]
                run = future.result()
                row = by_id[i] = _mutant_row(CATALOGUE[i], run)
                say(
                    f"{i}: {row['status']} in {run.seconds:.0f} s"
                    + (f" by {', '.join(row['killed_by'])}" if row["killed"] else "")
                    + (f"\n  {row['reason'][:400]}" if row["status"] == "error" else "")
                )
                write_report([by_id[k] for k in ids if k in by_id], complete=False)
        except BaseException:  # Ctrl-C or a broken run: start no more runs
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    rows = [by_id[i] for i in ids]
    say(f"baselines: {len(ids)} mutant(s), one at a time in this process")
    for row in rows:
        row["baselines"] = run_baselines(row["id"])
    write_report(rows, complete=True)
    print(
        f"vLLM {s.vllm_version}, kernel {s.backend}, profile {profile}, "
        f"selection {' '.join(selection)}; control "
        f"{'passed' if control.exit_code == 0 else 'FAILED: ' + ', '.join(control_failed)}"
    )
    for line in table(rows):
        print(line)
    false_alarm = [k for k, b in control_baselines.items() if isinstance(b, dict) and b.get("caught")]
    survivors = [r["id"] for r in rows if not r["equivalent"] and not r["killed"]]
    killed_equivalent = [r["id"] for r in rows if r["equivalent"] and r["killed"]]
    if survivors:
        print(f"surviving non-equivalent mutants: {', '.join(survivors)}")
    if killed_equivalent:
        print(
            f"equivalent mutants killed (a false alarm or a wrong equivalence claim): "
            f"{', '.join(killed_equivalent)}"
        )
    if false_alarm:
        print(f"baselines that flag the unmutated subject: {', '.join(false_alarm)}")
    if args.report:
        print(f"report: {args.report}")
    return int(
        bool(
            control_failed
            or survivors
            or killed_equivalent
            or any(r["status"] in ("error", "timeout") for r in rows)
        )
    )
