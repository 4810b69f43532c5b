"""The code under test: find the installed vLLM, import its block-FP8 entry points, and put the CPU double
under them when the real SM90 kernel cannot run here.

Nothing here re-implements vLLM; it only imports. vLLM moved these functions between releases, so the
candidate modules are tried in order and what each release provides is recorded for skip reasons.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import warnings
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import torch

from . import cpu_deepgemm, cpu_kernel, cpu_quant, platform

# Where the block-FP8 wrappers live, newest first (vLLM moved them; docs/releases.md).
CANDIDATE_MODULES = (
    "vllm.model_executor.kernels.linear.scaled_mm.cutlass",  # 0.23.0 and later
    "vllm.model_executor.layers.quantization.utils.fp8_utils",  # 0.22.x and earlier; Triton block GEMM
)
FORCE_CPU_ENV = "FP8_VERIFY_FORCE_DOUBLE"


@dataclass
class Subject:
    """What was loaded. ``kernel`` is ``"real"`` (the SM90 kernel) or ``"double"`` (the CPU double that
    stands in for it, :mod:`.cpu_kernel`); ``error`` is set when vLLM could not be used at all."""

    vllm_version: str | None
    torch_version: str = torch.__version__
    kernel: str = "double"
    kernel_reason: str = ""
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    modules: list[str] = field(default_factory=list)
    loaded: list[ModuleType] = field(default_factory=list, repr=False)
    error: str | None = None

    @property
    def available(self) -> bool:
        return self.error is None

    def function(self, name: str) -> Any | None:
        """vLLM's ``name`` from the first candidate module that has it (None if this release has none):
        a path names the function it calls, and no list here has to know it."""
        return next((vars(m)[name] for m in self.loaded if name in vars(m)), None)

    def device_name(self) -> str:
        if self.device.type == "cuda":
            major, minor = torch.cuda.get_device_capability(self.device)
            return f"{torch.cuda.get_device_name(self.device)} (sm_{major}{minor})"
        return "CPU (the SM90 kernel replaced by fp8-verify's CPU double)"

    def describe(self) -> str:
        """One line for report headers: versions and which kernel runs."""
        kernel = (
            f"kernel {self.kernel} ({self.kernel_reason})" if self.available else f"no subject: {self.error}"
        )
        return f"vLLM {self.vllm_version}  torch {self.torch_version}  {kernel}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "vllm": self.vllm_version,
            "torch": self.torch_version,
            "device": self.device_name() if self.available else None,
            "kernel": self.kernel if self.available else None,
            "kernel_reason": self.kernel_reason or self.error,
        }


def _quiet_vllm_logging() -> None:
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
    warnings.filterwarnings("ignore", module="vllm")


def _real_possible() -> tuple[bool, str]:
    """Whether the real SM90 kernel may run here, asked before any vLLM module binds its platform."""
    if os.environ.get(FORCE_CPU_ENV) == "1":
        return False, f"forced by {FORCE_CPU_ENV}"
    if not torch.cuda.is_available():
        return False, "no CUDA GPU"
    major, minor = torch.cuda.get_device_capability()
    if (major, minor) != (9, 0):
        return False, f"GPU is sm_{major}{minor}, not SM90 (Hopper)"
    return True, ""


def install_doubles(release: str | None) -> None:
    """The CPU tier: vLLM's platform answers as an H100 (:mod:`.platform`), and the innermost native ops
    are doubles that follow ``release``'s contract -- the CUTLASS GEMM (:mod:`.cpu_kernel`), the
    activation quantization (:mod:`.cpu_quant`) and DeepGEMM (:mod:`.cpu_deepgemm`)."""
    platform.install()
    cpu_kernel.install(release)
    cpu_quant.install()
    cpu_deepgemm.install()


@functools.cache
def load() -> Subject:
    """Import vLLM once per process and describe what it offers. Never raises.

    Where the real kernel cannot run, the doubles go in first (:func:`install_doubles`): vLLM's modules
    bind their platform object when they are imported, so it must be the Hopper stand-in by then."""
    _quiet_vllm_logging()
    try:
        import vllm
    except Exception as e:  # ImportError, or a broken install
        return Subject(None, error=f"vLLM is not importable: {type(e).__name__}: {e}")
    s = Subject(getattr(vllm, "__version__", "unknown"))
    possible, why_not = _real_possible()
    if not possible:
        try:
            install_doubles(s.vllm_version)
        except Exception as e:
            s.error = (
                f"fp8-verify's CPU doubles could not be put under vLLM {s.vllm_version}: "
                f"{type(e).__name__}: {e}"
            )
            return s
    try:
        importlib.import_module("vllm._custom_ops")  # loads _C where it can
    except Exception as e:
        s.error = f"vllm._custom_ops failed to import: {type(e).__name__}: {e}"
        return s
    real, why = cpu_kernel.real_kernel_usable() if possible else (False, why_not)
    if real:
        s.kernel, s.kernel_reason, s.device = "real", why, torch.device("cuda")
    else:
        if possible:  # an SM90 GPU whose vLLM ops did not load: the platform is CUDA's already
            cpu_kernel.install(s.vllm_version)
        s.kernel_reason = f"CPU double ({why})"
    for name in CANDIDATE_MODULES:
        try:
            if importlib.util.find_spec(name) is None:
                continue  # not in this release: the paths that need it say so
            mod: ModuleType = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name and name.startswith(e.name):
                continue  # a parent package this release does not have
            s.error = f"{name} failed to import in vLLM {s.vllm_version}: {type(e).__name__}: {e}"
            return s
        except Exception as e:  # present but broken (a missing dependency): nothing to test honestly
            s.error = f"{name} failed to import in vLLM {s.vllm_version}: {type(e).__name__}: {e}"
            return s
        s.modules.append(name)
        s.loaded.append(mod)
    return s


def vllm_op(name: str):
    """``torch.ops.vllm.<name>`` if the installed vLLM registered it, else None."""
    return getattr(torch.ops.vllm, name, None) if hasattr(torch.ops, "vllm") else None
