"""Where a run was measured: versions, device, the FP8 peak its TFLOP/s are compared with, L2 size and
clocks. Stored in the JSON and printed at the top of the Markdown, so numbers never travel alone."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import torch

from ... import __version__
from ...subject import compiled
from ...subject.vllm import load
from .paths import BenchPaths

# Dense (no sparsity) FP8 tensor-core peaks, TFLOP/s: NVIDIA's datasheet figures "with sparsity",
# halved. Matched against torch.cuda.get_device_name(), first hit wins.
PEAKS: tuple[tuple[str, float, str], ...] = (
    ("H100 PCIe", 1513.0, "H100 PCIe: 3026 sparse / 2"),
    ("H100 NVL", 1671.0, "H100 NVL: 3341 sparse / 2"),
    ("H200", 1979.0, "H200 SXM: 3958 sparse / 2 (same tensor cores and clocks as H100 SXM)"),
    ("H100", 1979.0, "H100 SXM5 (HBM3): 3958 sparse / 2"),
)


def peak(name: str) -> tuple[float | None, str]:
    """The dense FP8 peak of the device called ``name``, and where the figure comes from."""
    for key, tf, why in PEAKS:
        if key in name:
            return tf, why
    return None, f"no FP8 peak known for {name!r}: fraction of peak not reported"


def nvsmi() -> str | None:
    """Clocks, power and temperature from ``nvidia-smi`` (None where it is absent)."""
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


def l2_bytes(dev: torch.device) -> int:
    """The device's L2 size (0 on the CPU): how many input sets rotate to keep it cold."""
    if dev.type == "cuda":
        return int(getattr(torch.cuda.get_device_properties(dev), "L2_cache_size", 0) or 50 << 20)
    return 0


def environment(bp: BenchPaths) -> dict[str, Any]:
    """The run's ``env`` record (the JSON keys ``backend``/``backend_reason`` name the kernel)."""
    s = load()
    cuda = s.device.type == "cuda"
    name = torch.cuda.get_device_name(s.device) if cuda else "CPU"
    tflops, why = peak(name) if cuda else (None, "CPU double: no peak")
    env: dict[str, Any] = {
        "vllm": s.vllm_version,
        "torch": torch.__version__,
        "fp8_verify": __version__,
        "python": sys.version.split()[0],
        "device": s.device_name(),
        "device_name": name,
        "backend": s.kernel,
        "backend_reason": s.kernel_reason,
        "compile_backend": compiled.default_backend(s.kernel == "real"),
        "peak_tflops": tflops,
        "peak_source": why,
        "timer": (
            "CUDA events; graph = torch.cuda.CUDAGraph replay"
            if cuda
            else "time.perf_counter on the CPU double (dry run: host time, not a measurement)"
        ),
        "production_op": bp.production_op,
        "l2_bytes": l2_bytes(s.device),
        "nvidia_smi_start": nvsmi() if cuda else None,
    }
    if cuda:
        pr = torch.cuda.get_device_properties(s.device)
        env.update(sm_count=pr.multi_processor_count, memory_gib=round(pr.total_memory / 2**30, 1))
    return env
