"""What one call of each path launches, from ``torch.profiler``: the answer to "where can a difference
exist". Paths that launch the same list as the baseline can differ in host time only, never in kernel
time."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

from fp8_verify.strategies.shapes import Shape

from .paths import BenchPaths, round4
from .point import activations, weights

# Host ops listed on the CPU double (there are no device kernels to list).
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
    bps: BenchPaths, shape: Shape, ms: Iterable[int], dev: torch.device, g: torch.Generator
) -> dict[str, dict[str, Any]]:
    """For each path and M: the device kernels one call launches (GPU) or the aten/vLLM ops it
    runs (CPU double). The same list as the baseline's means that no kernel-time difference is
    possible."""
    os.environ.setdefault("KINETO_LOG_LEVEL", "5")  # no CUPTI chatter on stderr
    warnings.filterwarnings("ignore", message=".*Profiler clears events.*")
    cuda = dev.type == "cuda"
    ws = weights(shape, 1, dev, g)
    res: dict[str, dict[str, Any]] = {}
    for m in ms:
        m4 = round4(m)
        p4 = activations(m4, shape.k, ws, 1, dev, g)[0]
        p = p4 if m == m4 else p4.with_m(slice(0, m))
        for bp in bps.paths.values():
            if not bp.applies(m):
                continue
            prob = p4 if bp.rows(m) != m else p
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
