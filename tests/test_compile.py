"""Compiled paths: one graph for every M (no recompilation per example), and the registered ops' fake
implementations agree with the real output's shape, dtype and strides."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, note, settings
from hypothesis import strategies as st

from fp8_verify import paths
from fp8_verify.make import ProblemSpec, make
from fp8_verify.plugin import examples
from fp8_verify.testing import device, require_path
from strategies import m_dims

pytestmark = [pytest.mark.cpu, pytest.mark.compiled]

# Recompiles are decided by Dynamo's guards, before any backend runs: count them with the Dynamo-only
# "eager" backend, so that a backend failure (FV-001) does not mask a guard problem (FV-002).
COUNT_BACKEND = "eager"


def _counting_compile(path: str, n: int, k: int, dtype: torch.dtype):
    """A fresh compiled callable of ``path`` with a compile counter (torch's own)."""
    from torch._dynamo.testing import CompileCounterWithBackend

    s = paths.load()
    counter = CompileCounterWithBackend(COUNT_BACKEND)
    if path == "dynamic_compiled":
        fn = s.functions["_dynamic_padded_cutlass"]
    else:
        op = torch.ops.vllm.dynamic_padded_cutlass

        def fn(a, b, a_s, b_s, block, dt):
            return op(a, b, a_s, b_s, block, dt)

    def body(a, b, a_s, b_s):
        return fn(a, b, a_s, b_s, [128, 128], dtype)

    return torch.compile(body, fullgraph=True, backend=counter), counter


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("dynamic_compiled", marks=pytest.mark.finding("FV-002")),
        "compiled_op",
    ],
)
@settings(max_examples=examples(8))
@given(ms=st.lists(m_dims(max_value=300), min_size=4, max_size=12))
def test_one_graph_for_every_m(path, ms, fp8_record):
    """Calling a compiled path with many M values (aligned and not) compiles one graph -- two when
    M == 1 is among them (Dynamo specializes sizes 0 and 1): nothing guards on M's alignment."""
    require_path(path)
    torch._dynamo.reset()
    fn, counter = _counting_compile(path, 256, 384, torch.bfloat16)
    for i, m in enumerate(ms):
        p = make(ProblemSpec(m=m, n=256, k=384, seed=i), device())
        paths.mark_dynamic(*p.args())
        fn(*p.args())
        fp8_record.example()
    allowed = 1 + (1 in ms)
    note(f"M values {ms} -> {counter.frame_count} graphs")
    assert counter.frame_count <= allowed, (
        f"{path}: {counter.frame_count} graphs for M in {ms}; {allowed} expected "
        "(a guard on M or M % 4 recompiles)"
    )


OPS = ("padded_cutlass", "dynamic_padded_cutlass")


@pytest.mark.parametrize("op_name", OPS)
@given(
    m=m_dims(max_value=64),
    n=st.sampled_from([128, 256, 272]),
    dtype=st.sampled_from([torch.bfloat16, torch.float16]),
)
def test_fake_matches_real(op_name, m, n, dtype, fp8_record):
    """Under FakeTensorMode the op's fake implementation gives the real output's shape, dtype and
    strides (what torch.compile plans memory with)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    require_path("padded")
    op = getattr(torch.ops.vllm, op_name, None)
    if op is None:
        pytest.skip(f"torch.ops.vllm.{op_name} is not registered by this vLLM")
    p = make(ProblemSpec(m=m, n=n, k=384, out_dtype=str(dtype).removeprefix("torch.")), device())
    real = op(*p.args(), [128, 128], dtype)
    with FakeTensorMode(allow_non_fake_inputs=False) as mode:
        fake_args = [mode.from_tensor(t) for t in p.args()]
        fake = op(*fake_args, [128, 128], dtype)
    fp8_record.example()
    got = (tuple(fake.shape), fake.dtype, fake.stride())
    want = (tuple(real.shape), real.dtype, real.stride())
    assert got == want, f"{op_name} fake gives {got}, real gives {want} on {p.describe()}"


@pytest.mark.parametrize("op_name", OPS)
def test_opcheck(op_name):
    """torch.library.opcheck on each registered op: fake tensor and AOT dispatch checks (its schema
    check multiplies inputs, which fp8 does not support on the CPU)."""
    require_path("padded")
    op = getattr(torch.ops.vllm, op_name, None)
    if op is None:
        pytest.skip(f"torch.ops.vllm.{op_name} is not registered by this vLLM")
    for m in (5, 8):
        p = make(ProblemSpec(m=m, n=256, k=384, seed=m), device())
        torch.library.opcheck(
            op,
            (*p.args(), [128, 128], torch.bfloat16),
            test_utils=("test_faketensor", "test_aot_dispatch_dynamic"),
        )
