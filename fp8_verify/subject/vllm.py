"""The code under test: find the installed vLLM, load its CUTLASS block-FP8 entry points, and put the
CPU double under them when the real kernel cannot run here.

Nothing here re-implements vLLM; it only imports. vLLM moved these functions between releases, so the
candidate modules are tried in order and what each release provides is recorded for skip reasons.
"""

from __future__ import annotations

import functools
import importlib
import os
import warnings
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import torch

from . import double

# Where the functions of PR #43706 (and their 0.22.x predecessor) live, newest first.
CANDIDATE_MODULES = (
    "vllm.model_executor.kernels.linear.scaled_mm.cutlass",  # 0.23.x
    "vllm.model_executor.layers.quantization.utils.fp8_utils",  # 0.22.x and earlier
)


@dataclass
class Subject:
    """What was loaded. ``backend`` is ``"real"`` (SM90 kernel) or ``"double"`` (CPU double)."""

    vllm_version: str | None
    torch_version: str = torch.__version__
    backend: str = "double"
    backend_reason: str = ""
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    functions: dict[str, Any] = field(default_factory=dict)
    modules: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def available(self) -> bool:
        return self.error is None

    def device_name(self) -> str:
        if self.device.type == "cuda":
            major, minor = torch.cuda.get_device_capability(self.device)
            return f"{torch.cuda.get_device_name(self.device)} (sm_{major}{minor})"
        return "CPU (CUTLASS op replaced by the fp8-verify CPU double)"


def _quiet_vllm_logging() -> None:
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
    warnings.filterwarnings("ignore", module="vllm")


@functools.cache
def load() -> Subject:
    """Import vLLM once per process and describe what it offers. Never raises."""
    _quiet_vllm_logging()
    try:
        import vllm
    except Exception as e:  # ImportError, or a broken install
        return Subject(None, error=f"vLLM is not importable: {type(e).__name__}: {e}")
    version = getattr(vllm, "__version__", "unknown")
    s = Subject(version)
    try:
        importlib.import_module("vllm._custom_ops")  # loads _C where it can
    except Exception as e:
        s.error = f"vllm._custom_ops failed to import: {type(e).__name__}: {e}"
        return s
    real, why = double.real_kernel_usable()
    if real and os.environ.get("FP8_VERIFY_FORCE_DOUBLE") != "1":
        s.backend, s.backend_reason, s.device = "real", why, torch.device("cuda")
    else:
        double.install()
        s.backend, s.backend_reason = (
            "double",
            f"CPU double ({why})" if not real else "CPU double (forced)",
        )
    for name in CANDIDATE_MODULES:
        try:
            mod: ModuleType = importlib.import_module(name)
        except Exception:
            continue
        s.modules.append(name)
        for attr in ("cutlass_scaled_mm", "_padded_cutlass", "_dynamic_padded_cutlass"):
            if attr in vars(mod) and attr not in s.functions:
                s.functions[attr] = getattr(mod, attr)
    return s


def vllm_op(name: str):
    """``torch.ops.vllm.<name>`` if the installed vLLM registered it, else None."""
    return getattr(torch.ops.vllm, name, None) if hasattr(torch.ops, "vllm") else None
