"""Compiled and captured paths: one graph for every M (no recompilation per example), the registered ops'
fake implementations agree with the real output's shape, dtype and strides, and their Python bodies are
safe inside a captured graph (no host read, no data-dependent shape)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, note, settings
from hypothesis import strategies as st
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from fp8_verify.problem import ProblemSpec, build
from fp8_verify.strategies import m_dims, nk_dims, problem_specs
from fp8_verify.subject import compiled
from fp8_verify.subject.vllm import load
from fp8_verify.suite.options import examples
from fp8_verify.suite.properties import device

pytestmark = pytest.mark.cpu

# Recompiles are decided by Dynamo's guards, before any backend runs: count them with the Dynamo-only
# "eager" backend, so that a backend failure (FV-001) does not mask a guard problem (FV-002).
COUNT_BACKEND = "eager"


@pytest.mark.compiled
@pytest.mark.paths(compiled=True, dynamic_m=True)
@settings(max_examples=examples(8))
@given(ms=st.lists(m_dims(max_value=300), min_size=4, max_size=12))
def test_one_graph_for_every_m(gemm, ms, fp8_record):
    """Calling a compiled path with many M values (aligned and not) compiles one graph -- two when
    M == 1 is among them (Dynamo specializes sizes 0 and 1): nothing guards on M's alignment."""
    from torch._dynamo.testing import CompileCounterWithBackend

    torch._dynamo.reset()
    counter = CompileCounterWithBackend(COUNT_BACKEND)
    fn = compiled.compile_call(gemm.inner, counter)
    for i, m in enumerate(ms):
        p = build(ProblemSpec(m=m, n=256, k=384, seed=i), device())
        fn(*p.args(), list(p.block), p.out_dtype)
        fp8_record.example()
    allowed = 1 + (1 in ms)
    note(f"M values {ms} -> {counter.frame_count} graphs")
    assert counter.frame_count <= allowed, (
        f"{gemm.name}: {counter.frame_count} graphs for M in {ms}; {allowed} expected "
        "(a guard on M or M % 4 recompiles)"
    )


def _op(gemm) -> torch._ops.OpOverloadPacket:
    return getattr(torch.ops.vllm, gemm.spec.op)


@pytest.mark.paths(op=True, compiled=False)
@given(
    m=m_dims(max_value=64),
    n=st.sampled_from([128, 256, 272]),
    dtype=st.sampled_from([torch.bfloat16, torch.float16]),
)
def test_fake_matches_real(gemm, m, n, dtype, fp8_record):
    """Under FakeTensorMode the op's fake implementation gives the real output's shape, dtype and
    strides (what torch.compile plans memory with)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    op = _op(gemm)
    p = build(ProblemSpec(m=m, n=n, k=384, out_dtype=str(dtype).removeprefix("torch.")), device())
    real = op(*p.args(), [128, 128], dtype)
    with FakeTensorMode(allow_non_fake_inputs=False) as mode:
        fake = op(*[mode.from_tensor(t) for t in p.args()], [128, 128], dtype)
    fp8_record.example()
    got = (tuple(fake.shape), fake.dtype, fake.stride())
    want = (tuple(real.shape), real.dtype, real.stride())
    assert got == want, f"{gemm.spec.op} fake gives {got}, real gives {want} on {p.describe()}"


@pytest.mark.paths(op=True, compiled=False)
def test_opcheck(gemm):
    """torch.library.opcheck on each registered op: fake tensor and AOT dispatch checks (its schema
    check multiplies inputs, which fp8 does not support on the CPU)."""
    for m in (5, 8):
        p = build(ProblemSpec(m=m, n=256, k=384, seed=m), device())
        torch.library.opcheck(
            _op(gemm),
            (*p.args(), [128, 128], torch.bfloat16),
            test_utils=("test_faketensor", "test_aot_dispatch_dynamic"),
        )


class HostReads(TorchDispatchMode):
    """Records ATen ops that synchronise with the host or make a shape from data."""

    def __init__(self) -> None:
        super().__init__()
        self.bad: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        tags = set(func.tags)
        inputs = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        outputs = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
        if torch.Tag.data_dependent_output in tags:
            self.bad.append(f"{func} (reads a device value on the host)")
        elif torch.Tag.dynamic_output_shape in tags and (
            func is not torch.ops.aten.index.Tensor
            or any(t.dtype in (torch.bool, torch.uint8) for t in inputs[1:])
        ):
            self.bad.append(f"{func} (output shape depends on data)")
        elif any(t.device.type != "cpu" for t in inputs) and any(t.device.type == "cpu" for t in outputs):
            self.bad.append(f"{func} (copies a device tensor to the host)")
        return out


@pytest.mark.paths(op=True, compiled=False)
@given(spec=problem_specs(m=m_dims(max_value=64), n=nk_dims(max_value=256), k=nk_dims(max_value=384)))
def test_op_body_is_graph_safe(gemm, spec, fp8_record):
    """The Python body of each registered op issues no host read and no data-dependent shape, for every
    M (padded or not): vLLM captures decoding in CUDA graphs and compiles models with these ops inside.

    Neither defect changes an output value, so no numeric property sees it, and on the CPU double the
    stream does not exist either; the dispatcher does, everywhere: the body runs under a
    ``TorchDispatchMode`` that records every ATen op it issues. (A ``.cpu()`` on the CPU issues nothing:
    only the CUDA-graph property on Hopper sees that one.)"""
    fn = load().function(gemm.spec.body)
    p = build(spec, device())
    note(p.describe())
    mode = HostReads()
    with mode:
        out = fn(*p.args(), list(p.block), p.out_dtype)
    fp8_record.example()
    assert tuple(out.shape) == (p.m, p.n)
    assert not mode.bad, f"{gemm.spec.body} on {p.describe()}: " + "; ".join(dict.fromkeys(mode.bad))
