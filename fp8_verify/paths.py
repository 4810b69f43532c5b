"""The paths under test, by the names reports use.

=================  ==========================================================================
``bypass``         vLLM's direct ``cutlass_scaled_mm(A, B, As, Bs, block, dtype)`` (``B.T``, ``Bs.T`` to
                   the kernel): what ``_dynamic_padded_cutlass`` calls when ``M % 4 == 0``
``padded``         ``torch.ops.vllm.padded_cutlass``: always pads M to a multiple of 4
``dynamic_eager``  ``torch.ops.vllm.dynamic_padded_cutlass`` called eagerly (checks ``M % 4``)
``dynamic_compiled`` ``_dynamic_padded_cutlass`` itself under ``torch.compile(fullgraph=True)`` with M
                   dynamic, so that its ``torch.cond`` is traced
``compiled_op``    the registered op called inside a compiled function with M dynamic (opaque to
                   Dynamo, as in a compiled vLLM model)
=================  ==========================================================================

Compiled callables are built once per (path, block, out dtype, backend) and reused, with M marked
dynamic, so a Hypothesis run does not recompile per example; :func:`compile_count` reads Dynamo's own
counter for the property that checks it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .problem import BlockScaledProblem
from .subject import load, vllm_op

PATH_NAMES = ("bypass", "padded", "dynamic_eager", "dynamic_compiled", "compiled_op")
WHY_ABSENT = {
    "padded": "torch.ops.vllm.padded_cutlass is not registered by vLLM {v} (0.22.x and 0.23.x have it)",
    "dynamic_eager": "torch.ops.vllm.dynamic_padded_cutlass is not in vLLM {v} "
    "(added by PR #43706 in 0.23.0, removed in 0.24)",
    "dynamic_compiled": "_dynamic_padded_cutlass is not in vLLM {v} (only 0.23.x has it)",
    "compiled_op": "torch.ops.vllm.dynamic_padded_cutlass is not in vLLM {v} (only 0.23.x has it)",
}


@dataclass(frozen=True)
class Path:
    """One way of running the GEMM. ``run`` is None when the installed vLLM lacks it (``reason`` says)."""

    name: str
    compiled: bool
    run: Callable[[BlockScaledProblem], torch.Tensor] | None
    reason: str | None = None

    @property
    def available(self) -> bool:
        return self.run is not None

    def needs_aligned_m(self) -> bool:
        """The bypass hands M straight to the kernel, which needs ``M % 4 == 0`` in the block-wise case."""
        return self.name == "bypass"


def compile_backend() -> str:
    """``inductor`` on the real kernel (production); ``aot_eager`` on the CPU double, which traces the
    same graph (``torch.cond`` included) without generating C++ for every shape."""
    import os

    return os.environ.get("FP8_VERIFY_COMPILE_BACKEND") or (
        "inductor" if load().backend == "real" else "aot_eager"
    )


def _mark_m_dynamic(a: torch.Tensor, a_scale: torch.Tensor) -> None:
    torch._dynamo.maybe_mark_dynamic(a, 0)
    torch._dynamo.maybe_mark_dynamic(a_scale, 0)


@functools.cache
def _compiled(kind: str, block: tuple[int, int], out_dtype: torch.dtype, backend: str):
    s = load()
    blk = list(block)
    if kind == "dynamic_compiled":
        fn = s.functions["_dynamic_padded_cutlass"]

        def body(a, b, a_s, b_s):
            return fn(a, b, a_s, b_s, blk, out_dtype)
    else:
        op = vllm_op("dynamic_padded_cutlass")

        def body(a, b, a_s, b_s):
            return op(a, b, a_s, b_s, blk, out_dtype)

    body.__name__ = f"fp8_verify_{kind}"
    return torch.compile(body, fullgraph=True, backend=backend)


def _run_compiled(kind: str) -> Callable[[BlockScaledProblem], torch.Tensor]:
    def run(p: BlockScaledProblem) -> torch.Tensor:
        _mark_m_dynamic(p.a, p.a_scale)
        return _compiled(kind, tuple(p.block), p.out_dtype, compile_backend())(*p.args())

    return run


def compile_count() -> int:
    """Frames Dynamo compiled in this process so far (torch's own counter)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def reset_compiled() -> None:
    """Forget compiled callables (tests of recompilation start clean)."""
    _compiled.cache_clear()
    torch._dynamo.reset()


@functools.cache
def discover() -> dict[str, Path]:
    """Every path by name, available or with the reason it is not."""
    s = load()
    v = s.vllm_version or "(not installed)"
    if not s.available:
        return {n: Path(n, n.endswith(("compiled", "_op")), None, s.error) for n in PATH_NAMES}
    f = s.functions
    out: dict[str, Path] = {}

    direct = f.get("cutlass_scaled_mm")
    if direct is not None:
        def bypass(p: BlockScaledProblem) -> torch.Tensor:
            return direct(*p.args(), list(p.block), p.out_dtype)
    else:  # older layouts of the module: the public wrapper with the kernel's layouts
        from vllm import _custom_ops as ops

        def bypass(p: BlockScaledProblem) -> torch.Tensor:
            return ops.cutlass_scaled_mm(p.a, p.b.T, p.a_scale, p.b_scale.T, p.out_dtype)
    out["bypass"] = Path("bypass", False, bypass)

    for name, opname in (("padded", "padded_cutlass"), ("dynamic_eager", "dynamic_padded_cutlass")):
        op = vllm_op(opname)
        if op is None:
            out[name] = Path(name, False, None, WHY_ABSENT[name].format(v=v))
            continue

        def eager(p: BlockScaledProblem, op=op) -> torch.Tensor:
            return op(*p.args(), list(p.block), p.out_dtype)

        out[name] = Path(name, False, eager)

    has_fn = "_dynamic_padded_cutlass" in f
    out["dynamic_compiled"] = Path(
        "dynamic_compiled", True, _run_compiled("dynamic_compiled") if has_fn else None,
        None if has_fn else WHY_ABSENT["dynamic_compiled"].format(v=v),
    )
    has_op = vllm_op("dynamic_padded_cutlass") is not None
    out["compiled_op"] = Path(
        "compiled_op", True, _run_compiled("compiled_op") if has_op else None,
        None if has_op else WHY_ABSENT["compiled_op"].format(v=v),
    )
    return out


def get(name: str) -> Path:
    if name not in PATH_NAMES:
        raise ValueError(f"unknown path {name!r}; known paths: {', '.join(PATH_NAMES)}")
    return discover()[name]
