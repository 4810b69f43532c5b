"""A block-FP8 linear layer as a model runs it, built from vLLM's own classes: bf16 activations in, the
weight and scales a checkpoint stores, vLLM's linear-kernel class for the layer -- the one vLLM chooses
(``choose_scaled_mm_linear_kernel`` over ``_POSSIBLE_FP8_BLOCK_KERNELS``) or one named class -- its
``process_weights_after_loading`` at load and its ``apply_weights`` (activation quantization, GEMM) per
call. Nothing of vLLM's routing is copied: fp8-verify builds the config vLLM's ``Fp8LinearMethod`` would
build and asks vLLM's objects.

What a served model sets that a unit test must set too (each read from vLLM 0.23.0's source):

* the compilation config's custom ops: ``"none"`` (Inductor, the default) plus ``"+quant_fp8"``, which
  vLLM turns on for every block-quantized model (``vllm/config/vllm.py``: "On H100 the CUDA kernel is
  faster than native implementation") -- so ``QuantFP8`` runs vLLM's CUDA quantization kernel;
* a model config whose ``hf_text_config.model_type`` DeepGEMM's ``can_implement`` reads (it refuses a
  layer without one; :data:`MODEL_TYPE`);
* the environment switches of a row (``VLLM_USE_DEEP_GEMM_E8M0`` and the like), applied while vLLM's
  objects are built, with vLLM's caches of them cleared, as a fresh process with those variables set
  would see them (:func:`switches`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import torch

from .kernels import NOT_RUN, Kernel, for_vllm_class

MODEL_TYPE = "deepseek_v3"  # a block-FP8 checkpoint's model type, for DeepGEMM's can_implement
CUSTOM_OPS = ("none", "+quant_fp8")


@dataclass(frozen=True)
class Decisions:
    """What vLLM decided for a layer: the kernel class and how it quantizes (reports, the judges)."""

    kernel_class: str
    kernel: Kernel | None  # the GEMM kernel the class ends in (None: fp8-verify has no row for it)
    act_ue8m0: bool  # activation scales rounded up to powers of two (QuantFP8's use_ue8m0)
    act_scale_layout: str  # "row-major", "column-major" or "column-major TMA-aligned"
    weight_ue8m0: bool  # weights requantized with power-of-two scales at load (DeepGEMM's E8M0)
    rejected: tuple[str, ...] = ()  # vLLM's reasons for the kernels it tried before this one
    switches: tuple[tuple[str, str], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "kernel_class": self.kernel_class,
            "kernel": self.kernel.name if self.kernel else None,
            "act_ue8m0": self.act_ue8m0,
            "act_scale_layout": self.act_scale_layout,
            "weight_ue8m0": self.weight_ue8m0,
            "rejected": list(self.rejected),
            "switches": dict(self.switches),
        }


def _vllm():
    """vLLM's names this module uses, imported on first use (after fp8-verify's platform is in place)."""
    from vllm.config import CompilationConfig, VllmConfig, set_current_vllm_config
    from vllm.model_executor.kernels import linear
    from vllm.model_executor.kernels.linear.scaled_mm.ScaledMMLinearKernel import FP8ScaledMMLinearLayerConfig
    from vllm.model_executor.layers.quantization.utils import quant_utils
    from vllm.platforms import current_platform

    return SimpleNamespace(
        CompilationConfig=CompilationConfig,
        VllmConfig=VllmConfig,
        set_current_vllm_config=set_current_vllm_config,
        linear=linear,
        LayerConfig=FP8ScaledMMLinearLayerConfig,
        quant_utils=quant_utils,
        platform=current_platform,
    )


def _clear_switch_caches() -> None:
    """vLLM caches what its switches decided (functools caches, DeepGEMM's scale-format oracle): forget
    it, as a new process would not know it."""
    import vllm.utils.deep_gemm as dg

    for name in ("is_deep_gemm_supported", "is_deep_gemm_e8m0_used"):
        fn = getattr(dg, name, None)
        if hasattr(fn, "cache_clear"):
            fn.cache_clear()
    fmt = getattr(dg, "DeepGemmQuantScaleFMT", None)
    if fmt is not None and hasattr(fmt, "_oracle_cache"):
        fmt._oracle_cache = None
        if getattr(dg, "_fp8_gemm_nt_impl", None) is not None:
            fmt.init_oracle_cache()  # what vLLM's _lazy_init does once DeepGEMM is imported
    with contextlib.suppress(ImportError):
        import vllm.utils.flashinfer as fi

        fn = getattr(fi, "is_flashinfer_fp8_blockscale_gemm_supported", None)
        if hasattr(fn, "cache_clear"):
            fn.cache_clear()


@contextlib.contextmanager
def switches(env: Mapping[str, str]) -> Iterator[None]:
    """vLLM's environment variables set to ``env`` (and its caches of them cleared) for the block."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    _clear_switch_caches()
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        _clear_switch_caches()


@contextlib.contextmanager
def vllm_context(env: Mapping[str, str]) -> Iterator[None]:
    """The switches and the vLLM config a served block-FP8 model has while its layers are built."""
    v = _vllm()
    cfg = v.VllmConfig(compilation_config=v.CompilationConfig(custom_ops=list(CUSTOM_OPS)))
    # DeepGEMM's can_implement reads only the model type; a real ModelConfig needs a checkpoint.
    object.__setattr__(
        cfg, "model_config", SimpleNamespace(hf_text_config=SimpleNamespace(model_type=MODEL_TYPE))
    )
    with switches(env), v.set_current_vllm_config(cfg):
        yield


def _keys():
    qu = _vllm().quant_utils
    return qu.kFp8Dynamic128Sym, qu.kFp8Static128BlockSym


def layer_config(n: int, k: int, out_dtype: torch.dtype, input_dtype: torch.dtype = torch.bfloat16):
    """The config vLLM's ``Fp8LinearMethod`` builds for a block-FP8 layer of weight [N, K]."""
    act, weight = _keys()
    return _vllm().LayerConfig(
        weight_quant_key=weight,
        activation_quant_key=act,
        weight_shape=(n, k),
        input_dtype=input_dtype,
        out_dtype=out_dtype,
    )


def candidates() -> list[type]:
    """vLLM's block-FP8 kernel classes for this platform, in its priority order."""
    v = _vllm()
    return list(v.linear._POSSIBLE_FP8_BLOCK_KERNELS[v.platform._enum])


#: What vLLM passes as ``quantization`` to ``choose_scaled_mm_linear_kernel`` for block FP8, where the
#: release asks for it (0.34.0: ``kernels/linear/__init__.py``, init_fp8_linear_kernel).
QUANTIZATION = "fp8_block_w8a8"


def choose(config) -> tuple[type, tuple[str, ...]]:
    """vLLM's choice for ``config`` and its reasons for each kernel it passed over."""
    import inspect

    v = _vllm()
    fn = v.linear.choose_scaled_mm_linear_kernel
    extra = {"quantization": QUANTIZATION} if "quantization" in inspect.signature(fn).parameters else {}
    chosen = fn(config, v.linear._POSSIBLE_FP8_BLOCK_KERNELS, **extra)
    rejected = []
    for cls in candidates():
        if cls is chosen:
            break
        ok, why = v.linear.is_supported_and_can_implement_kernel(cls, config, None)
        rejected.append(why.strip() if not ok else f"{cls.__name__}: usable, but not chosen")
    return chosen, tuple(rejected)


def _layout(quant) -> str:
    """The activation-scale layout a ``QuantFP8`` object writes."""
    if not quant.column_major_scales:
        return "row-major"
    return "column-major TMA-aligned" if quant.tma_aligned_scales else "column-major"


@dataclass
class Loaded:
    """A layer after vLLM's weight processing: call :meth:`forward` per batch."""

    kernel: Any  # vLLM's kernel object
    module: torch.nn.Module
    decisions: Decisions
    env: Mapping[str, str] = field(default_factory=dict)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with vllm_context(self.env):
            return self.kernel.apply_weights(self.module, x)


class VllmLayer:
    """A layer row's callable: ``(x, w, w_scale, block, out_dtype) -> out``, ``x`` [M, K] bf16, ``w`` [N, K]
    e4m3 and ``w_scale`` [ceil(N/128), ceil(K/128)] fp32 as a checkpoint stores them (``weight`` and
    ``weight_scale_inv``). ``kernel_class`` names one of vLLM's classes; None lets vLLM choose."""

    def __init__(self, kernel_class: str | None, env: Mapping[str, str] | None = None) -> None:
        self.kernel_class = kernel_class
        self.env = dict(env or {})
        self.__name__ = f"layer[{kernel_class or 'vLLM choice'}]"
        self.__module__ = "vllm.model_executor.kernels.linear"
        self._objects: dict[tuple, tuple[Any, Decisions]] = {}

    def resolve(self, config) -> tuple[type, tuple[str, ...]]:
        if self.kernel_class is None:
            return choose(config)
        for cls in candidates():
            if cls.__name__ == self.kernel_class:
                return cls, ()
        raise LookupError(f"vLLM has no block-FP8 kernel class {self.kernel_class} on this platform")

    def decide(self, n: int, k: int, out_dtype: torch.dtype) -> tuple[Any, Decisions]:
        """vLLM's kernel object for a layer of weight [N, K], and what it decided (built once per
        shape and dtype: the object holds no weights, so loads share it)."""
        key = (n, k, out_dtype)
        if key not in self._objects:
            self._objects[key] = self._decide(n, k, out_dtype)
        return self._objects[key]

    def _decide(self, n: int, k: int, out_dtype: torch.dtype) -> tuple[Any, Decisions]:
        with vllm_context(self.env):
            config = layer_config(n, k, out_dtype)
            cls, rejected = self.resolve(config)
            if cls.__name__ in NOT_RUN:
                raise NotRun(cls.__name__, rejected)
            obj = cls(config)
            quant = obj.quant_fp8
            weight_ue8m0 = bool(
                getattr(obj, "use_deep_gemm_e8m0", False) and getattr(obj, "is_deep_gemm_supported", False)
            )
            d = Decisions(
                cls.__name__,
                for_vllm_class(cls.__name__),
                act_ue8m0=bool(quant.use_ue8m0),
                act_scale_layout=_layout(quant),
                weight_ue8m0=weight_ue8m0,
                rejected=rejected,
                switches=tuple(sorted(self.env.items())),
            )
        return obj, d

    def load(self, w: torch.Tensor, w_scale: torch.Tensor, block, out_dtype: torch.dtype) -> Loaded:
        """vLLM's kernel object with the weight loaded and processed (copies: DeepGEMM's E8M0
        requantization rewrites the weight in place)."""
        obj, d = self.decide(w.shape[0], w.shape[1], out_dtype)
        module = torch.nn.Module()
        module.weight = torch.nn.Parameter(w.clone(), requires_grad=False)
        module.weight_scale_inv = torch.nn.Parameter(w_scale.clone(), requires_grad=False)
        module.weight_block_size = list(block)
        module.input_scale = None
        with vllm_context(self.env):
            obj.process_weights_after_loading(module)
        return Loaded(obj, module, d, self.env)

    def __call__(self, x, w, w_scale, block, out_dtype) -> torch.Tensor:
        return self.load(w, w_scale, block, out_dtype).forward(x)


class VllmQuant:
    """A quantization row's callable: ``x -> (e4m3 x, scales)`` through the ``QuantFP8`` object vLLM's
    kernel class ``kernel_class`` builds for its layers (its group shape, scale layout and UE8M0 choice)."""

    def __init__(self, kernel_class: str, env: Mapping[str, str] | None = None) -> None:
        self.layer = VllmLayer(kernel_class, env)
        self.__name__ = f"QuantFP8[{kernel_class}]"
        self.__module__ = "vllm.model_executor.layers.quantization.input_quant_fp8"

    def decide(self, n: int, k: int, out_dtype: torch.dtype) -> tuple[Any, Decisions]:
        return self.layer.decide(n, k, out_dtype)

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        obj, _ = self.layer.decide(128, x.shape[-1], torch.bfloat16)
        with vllm_context(self.layer.env):
            return obj.quant_fp8(x)


class NotRun(LookupError):
    """vLLM chose a kernel class fp8-verify does not run (:data:`~.kernels.NOT_RUN` says why)."""

    def __init__(self, cls_name: str, rejected: tuple[str, ...]) -> None:
        super().__init__(f"vLLM chose {cls_name}, which fp8-verify does not run: {NOT_RUN[cls_name]}")
        self.cls_name, self.rejected = cls_name, rejected
