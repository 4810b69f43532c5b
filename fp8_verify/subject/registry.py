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

Compiled callables are built once per (path, block, out dtype, backend) and reused, with M (and N,
K) marked dynamic, so a Hypothesis run does not recompile per example (tests/test_compile.py counts
graphs with torch's own CompileCounterWithBackend; :func:`compile_count` reads Dynamo's counters).
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


Call = Callable[..., torch.Tensor]  # (a, b, a_scale, b_scale, block, out_dtype) -> out


@dataclass(frozen=True)
class Path:
    """One way of running the GEMM. ``call`` is None when the installed vLLM lacks it (``reason``
    says why); it takes vLLM's positional arguments ``(a, b, a_scale, b_scale, block, out_dtype)``."""

    name: str
    compiled: bool
    call: Call | None
    reason: str | None = None

    @property
    def available(self) -> bool:
        return self.call is not None

    def run(self, p: BlockScaledProblem) -> torch.Tensor:
        """The path on a canonical problem."""
        assert self.call is not None, self.reason
        return self.call(*p.args(), list(p.block), p.out_dtype)

    def needs_aligned_m(self) -> bool:
        """The bypass hands M straight to the kernel, which needs ``M % 4 == 0`` in the block-wise case."""
        return self.name == "bypass"


# Every cached compiled callable shares one code object, and Dynamo's recompile limit counts per code
# object: dtypes, blocks and the contract's layouts are legitimate variants, not recompiles per example
# (tests/test_compile.py counts those with a fresh counter of its own).
RECOMPILE_LIMIT = 256


def _raise_recompile_limit() -> None:
    cfg = torch._dynamo.config
    cfg.recompile_limit = max(cfg.recompile_limit, RECOMPILE_LIMIT)
    cfg.accumulated_recompile_limit = max(cfg.accumulated_recompile_limit, 16 * RECOMPILE_LIMIT)


def compile_backend() -> str:
    """``inductor`` on the real kernel (production); ``aot_eager`` on the CPU double, which traces the
    same graph (``torch.cond`` included) without generating C++ for every shape."""
    import os

    return os.environ.get("FP8_VERIFY_COMPILE_BACKEND") or (
        "inductor" if load().backend == "real" else "aot_eager"
    )


def mark_dynamic(*tensors: torch.Tensor) -> None:
    """M dynamic as in a served model; N and K too, so one graph serves every problem Hypothesis
    draws (a served model has them static, as constants of each layer: nothing here depends on it)."""
    for t in tensors:
        for d in range(t.dim()):
            torch._dynamo.maybe_mark_dynamic(t, d)


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
    # Every cached variant shares ``body``'s code object, and Dynamo's recompile limit counts per code
    # object: dtypes, blocks and the contract's layouts are legitimate variants, not recompiles per
    # example (tests/test_compile.py counts those with a fresh counter).
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 256)
    torch._dynamo.config.accumulated_recompile_limit = max(
        torch._dynamo.config.accumulated_recompile_limit, 4096
    )
    return torch.compile(body, fullgraph=True, backend=backend)


def _compiled_call(kind: str) -> Call:
    def call(a, b, a_s, b_s, block, out_dtype) -> torch.Tensor:
        _raise_recompile_limit()
        mark_dynamic(a, b, a_s, b_s)
        return _compiled(kind, tuple(block), out_dtype, compile_backend())(a, b, a_s, b_s)

    return call


def compile_count() -> int:
    """Frames Dynamo compiled in this process so far (torch's own counter)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


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
    if direct is None:  # older module layouts: vLLM's public wrapper, in the kernel's layouts
        from vllm import _custom_ops as ops

        def direct(a, b, a_s, b_s, block, out_dtype):
            return ops.cutlass_scaled_mm(a, b.T, a_s, b_s.T, out_dtype)

    out["bypass"] = Path("bypass", False, direct)

    for name, opname in (("padded", "padded_cutlass"), ("dynamic_eager", "dynamic_padded_cutlass")):
        op = vllm_op(opname)
        out[name] = Path(name, False, op, None if op else WHY_ABSENT[name].format(v=v))

    has_fn = "_dynamic_padded_cutlass" in f
    out["dynamic_compiled"] = Path(
        "dynamic_compiled",
        True,
        _compiled_call("dynamic_compiled") if has_fn else None,
        None if has_fn else WHY_ABSENT["dynamic_compiled"].format(v=v),
    )
    has_op = vllm_op("dynamic_padded_cutlass") is not None
    out["compiled_op"] = Path(
        "compiled_op",
        True,
        _compiled_call("compiled_op") if has_op else None,
        None if has_op else WHY_ABSENT["compiled_op"].format(v=v),
    )
    return out


def get(name: str) -> Path:
    if name not in PATH_NAMES:
        raise ValueError(f"unknown path {name!r}; known paths: {', '.join(PATH_NAMES)}")
    return discover()[name]
