"""The registered ops are safe in a captured graph: their Python bodies never read device data
on the host and never make a shape from data. And a self-check of the planted-bug machinery.

vLLM captures decoding in CUDA graphs and compiles models with torch.compile, with these ops
inside. A host read (``.item()``, ``bool(t)``, a copy to the CPU) synchronises the stream, is
illegal while a CUDA graph is being captured, and a data-dependent shape (boolean-mask indexing,
``nonzero``) cannot be planned by the op's fake implementation. Neither changes a single output
value, so no numeric property sees them; on the CPU double the stream does not exist either. What
does exist everywhere is the dispatcher: the bodies run under a ``TorchDispatchMode`` that records
every ATen op they issue, and the property fails on any op tagged ``data_dependent_output`` or
``dynamic_output_shape`` (a boolean index for ``aten.index``) and on any op that takes a device
tensor and returns a CPU one. On the CPU a ``.cpu()`` is a no-op that issues nothing: only
``tests/test_hopper.py::test_cuda_graph_replay`` (capture on the real kernel) sees that one.
"""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import given, note
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from fp8_verify.make import make
from fp8_verify.mutants import CATALOGUE
from fp8_verify.subject import load
from fp8_verify.testing import device, require_path
from strategies import m_dims, nk_dims, problem_specs

BODIES = ("_padded_cutlass", "_dynamic_padded_cutlass")


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


@pytest.mark.cpu
@pytest.mark.parametrize("body", BODIES)
@given(spec=problem_specs(m=m_dims(max_value=64), n=nk_dims(max_value=256), k=nk_dims(max_value=384)))
def test_op_body_is_graph_safe(body, spec, fp8_record):
    """The Python body of each registered op issues no host read and no data-dependent shape, for
    every M (padded or not)."""
    require_path("padded")
    fn = load().functions.get(body)
    if fn is None:
        pytest.skip(f"{body} is not in this vLLM")
    p = make(spec, device())
    note(p.describe())
    mode = HostReads()
    with mode:
        out = fn(*p.args(), list(p.block), p.out_dtype)
    fp8_record.example()
    assert tuple(out.shape) == (p.m, p.n)
    assert not mode.bad, f"{body} on {p.describe()}: " + "; ".join(dict.fromkeys(mode.bad))


@pytest.mark.cpu
@pytest.mark.parametrize("mutant_id", list(CATALOGUE))
def test_catalogue_plants_and_reverts(mutant_id):
    """Tooling self-check: every mutant plants in this vLLM and its undo restores the subject
    exactly (code objects and the op wrapper). Skipped inside a mutant run."""
    if os.environ.get("FP8_VERIFY_MUTANT"):
        pytest.skip("a mutant is planted in this process")
    require_path("padded")
    from fp8_verify.subject import load

    if load().vllm_version != "0.23.0":
        pytest.skip(f"the catalogue edits vLLM 0.23.0's source; this is vLLM {load().vllm_version}")
    from vllm import _custom_ops as ops

    from fp8_verify import mutants

    mod = mutants._cutlass_module()
    names = (*BODIES, "_padded_cutlass_fake", "cutlass_scaled_mm")
    before = {n: getattr(mod, n).__code__ for n in names}
    kernel = ops.cutlass_scaled_mm
    undo = mutants.apply(mutant_id)
    try:
        changed = [n for n in names if getattr(mod, n).__code__ is not before[n]]
        changed += ["ops.cutlass_scaled_mm"] if ops.cutlass_scaled_mm is not kernel else []
        assert len(changed) == 1, f"{mutant_id} changed {changed}, expected exactly one thing"
    finally:
        undo()
    assert all(getattr(mod, n).__code__ is before[n] for n in names)
    assert ops.cutlass_scaled_mm is kernel
    assert mutants.active() is None


@pytest.mark.parametrize(
    ("argv", "jobs"), [([], 1), (["--jobs", "4"], 4), (["--jobs", "0"], None), (["--jobs=x"], None)]
)
def test_mutants_jobs_option(argv, jobs, capsys):
    """``fp8-verify mutants --jobs N``: default 1, and anything but a whole number >= 1 is a one-line
    usage error (exit status 2), not a traceback."""
    from fp8_verify.cli import parser

    if jobs is not None:
        assert parser().parse_known_args(["mutants", *argv])[0].jobs == jobs
        return
    with pytest.raises(SystemExit) as e:
        parser().parse_known_args(["mutants", *argv])
    assert e.value.code == 2
    assert "--jobs: must be a whole number >= 1" in capsys.readouterr().err
