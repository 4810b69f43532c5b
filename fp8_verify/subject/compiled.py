"""``torch.compile`` around a GEMM call, the way a compiled vLLM model runs it: one compiled callable per
(path, block, out dtype, backend) for the whole session, with every dimension marked dynamic so that a
Hypothesis run does not recompile per example. The one copy of the compile wrapper, the dynamic marks and
the recompile limit; compile counts are torch's own (``torch._dynamo`` counters).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

import torch
from torch.fx.experimental import _config as fx_config

Call = Callable[..., torch.Tensor]  # (a, b, a_scale, b_scale, block, out_dtype) -> out

BACKEND_ENV = "FP8_VERIFY_COMPILE_BACKEND"

# Every cached compiled callable shares one code object, and Dynamo's recompile limit counts per code
# object: dtypes, blocks and the contract's layouts are legitimate variants, not recompiles per example
# (tests/test_compile.py counts graphs per M with a counter of its own).
RECOMPILE_LIMIT = 256


def raise_recompile_limit() -> None:
    cfg = torch._dynamo.config
    cfg.recompile_limit = max(cfg.recompile_limit, RECOMPILE_LIMIT)
    cfg.accumulated_recompile_limit = max(cfg.accumulated_recompile_limit, 16 * RECOMPILE_LIMIT)


def default_backend(real_kernel: bool) -> str:
    """``inductor`` on the real kernel (production); ``aot_eager`` on the CPU double, which traces the
    same graph (``torch.cond`` included) without generating C++ for every shape."""
    return os.environ.get(BACKEND_ENV) or ("inductor" if real_kernel else "aot_eager")


def mark_dynamic(a, b, a_s, b_s, dynamic_m: bool = True) -> None:
    """M dynamic as in a served model; N and K too, so one graph serves every problem Hypothesis draws
    (a served model has them static, as constants of each layer: nothing here depends on it).
    ``dynamic_m=False`` keeps M static (a graph per M), which Dynamo would otherwise make dynamic
    itself after the first recompile."""
    for t, m_dim in ((a, 0), (b, None), (a_s, 0), (b_s, None)):
        for d in range(t.dim()):
            if d == m_dim and not dynamic_m:
                torch._dynamo.mark_static(t, d)
            else:
                torch._dynamo.maybe_mark_dynamic(t, d)


def _body(fn: Call, block: tuple[int, int], out_dtype: torch.dtype) -> Call:
    blk = list(block)

    def fp8_verify_compiled(a, b, a_s, b_s):
        return fn(a, b, a_s, b_s, blk, out_dtype)

    return fp8_verify_compiled


def compile_call(fn: Call, backend: str | Callable, dynamic_m: bool = True) -> Call:
    """``fn`` under ``torch.compile(fullgraph=True)``, compiled on first use once per (block, out dtype)
    (and per M when ``dynamic_m`` is False). ``backend`` is a name or a callable (torch's
    ``CompileCounterWithBackend`` for tests that count).

    With M static, N and K are traced size-oblivious (``backed_size_oblivious``): Dynamo would otherwise
    specialize each scale dimension of size 1 (N or K of one block), up to four graphs per M where one
    does. Those specializations are the M-dynamic paths' to test; here they only multiplied compiles
    (80 problems, 8 M values x 5 (N, K) x 2 out dtypes, on this project's 2-core CPU: 64 graphs in 33.6 s
    without it, 32 in 17.1 s with it; the path that compiles per M was the slowest test of the GPU run,
    docs/gpu-speed.md)."""
    graphs: dict[tuple, Call] = {}

    def call(a, b, a_s, b_s, block, out_dtype) -> torch.Tensor:
        raise_recompile_limit()
        mark_dynamic(a, b, a_s, b_s, dynamic_m)
        key = (tuple(block), out_dtype)
        if key not in graphs:
            graphs[key] = torch.compile(_body(fn, *key), fullgraph=True, backend=backend)
        with contextlib.nullcontext() if dynamic_m else fx_config.patch(backed_size_oblivious=True):
            return graphs[key](a, b, a_s, b_s)

    return call


def compile_count() -> int:
    """Frames Dynamo compiled in this process so far (torch's own counter)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])
