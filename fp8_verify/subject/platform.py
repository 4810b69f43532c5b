"""The CPU tier's Hopper, as vLLM sees it: a stand-in for vLLM's CUDA platform object that answers
"compute capability 9.0" while the tensors live on the CPU.

vLLM routes a block-FP8 layer by what its platform says, not by the tensors it gets: which kernel classes
are supported (``CUTLASS_BLOCK_FP8_SUPPORTED``, ``is_deep_gemm_supported``), the Hopper branch of
``CutlassFp8BlockScaledMMKernel`` (``torch.ops.vllm.dynamic_padded_cutlass`` on 0.23), ``QuantFP8``'s
``forward_cuda`` (vLLM's CUDA quantization kernel) and DeepGEMM's weight post-processing. On a machine
without a GPU vLLM picks ``UnspecifiedPlatform`` and none of those routes run, so the CPU tier would test
other code than an H100 runs. With this stand-in vLLM's own Python takes the H100's routes, and only the
innermost native ops are doubles (:mod:`.cpu_kernel`, :mod:`.cpu_quant`, :mod:`.cpu_deepgemm`).

What it answers, and why each answer is the H100's:

* ``get_device_capability()`` -> 9.0, ``get_device_name()`` -> an H100 name; ``is_cuda()`` is true
  (``_enum`` is CUDA, inherited);
* ``dispatch_key = "CPU"`` and ``device_type = "cpu"``: vLLM registers its ``torch.ops.vllm.*`` ops for
  the platform's dispatch key and allocates on its device type; the CPU double's tensors need both;
* vLLM's native libraries (``vllm._C``, ``vllm._C_stable_libtorch``) cannot load without the CUDA driver
  (``libcuda.so.1``); ``vllm.platforms.cuda`` imports them at the top. They are entered as empty modules
  so that the platform module imports, and their ops are defined by the doubles instead.

Installed once per process by :func:`fp8_verify.subject.vllm.load`, before any vLLM module that binds
``current_platform`` is imported, and only where the real kernel cannot run.
"""

from __future__ import annotations

import importlib
import sys
import types

NATIVE_LIBS = ("vllm._C", "vllm._C_stable_libtorch")
DEVICE_NAME = "NVIDIA H100 80GB HBM3"  # the name vLLM looks its tuned configs up by

_installed: str | None = None


def stub_native_libs() -> list[str]:
    """Enter vLLM's native libraries that fail to load as empty modules; return their names."""
    stubbed = []
    for name in NATIVE_LIBS:
        if name in sys.modules:
            continue
        try:
            importlib.import_module(name)
        except ImportError:
            sys.modules[name] = types.ModuleType(name)
            stubbed.append(name)
    return stubbed


def install() -> str:
    """Make ``vllm.platforms.current_platform`` the Hopper stand-in; return why (for reports).

    Raises RuntimeError if vLLM resolved its platform already (a module bound the old one)."""
    global _installed
    if _installed is not None:
        return _installed
    import vllm.platforms as platforms

    if getattr(platforms, "_current_platform", None) is not None:
        raise RuntimeError(
            "vLLM's platform was resolved before fp8-verify could put its Hopper stand-in in place: "
            "import fp8_verify.subject.vllm.load() before other vLLM modules"
        )
    stubbed = stub_native_libs()
    from vllm.platforms import cuda
    from vllm.platforms.interface import DeviceCapability

    base = getattr(cuda, "NonNvmlCudaPlatform", None) or cuda.CudaPlatform

    class HopperStandIn(base):  # type: ignore[misc, valid-type]
        """vLLM's CUDA platform answering for an H100 whose tensors are on the CPU."""

        device_type = "cpu"
        dispatch_key = "CPU"

        @classmethod
        def get_device_capability(cls, device_id: int = 0) -> DeviceCapability:
            return DeviceCapability(major=9, minor=0)

        @classmethod
        def get_device_name(cls, device_id: int = 0) -> str:
            return DEVICE_NAME

        @classmethod
        def get_device_total_memory(cls, device_id: int = 0) -> int:
            return 80 * 2**30

    platforms._current_platform = HopperStandIn()
    _installed = "Hopper stand-in platform (sm_90)" + (
        f"; native libraries not loadable here: {', '.join(stubbed)}" if stubbed else ""
    )
    return _installed


def installed() -> bool:
    return _installed is not None
