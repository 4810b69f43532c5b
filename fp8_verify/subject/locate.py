"""How registry rows find their callables in the installed vLLM: each ``Locate`` returns the callable,
or a sentence saying why this release lacks it (naming the releases that have it)."""

from __future__ import annotations

import torch

from .path import Call, Locate
from .releases import MRule, kernel_m_rule
from .vllm import Subject, vllm_op


def _direct(s: Subject) -> Call | str:
    """vLLM's ``cutlass_scaled_mm(A, B, As, Bs, block, dtype)`` wrapper; where a release has none, the
    same call through ``vllm._custom_ops`` in the kernel's layouts (``B.T``, ``Bs.T``)."""
    fn = s.function("cutlass_scaled_mm")
    if fn is not None:
        return fn
    from vllm import _custom_ops as ops

    if not hasattr(ops, "cutlass_scaled_mm"):
        return f"vLLM {s.vllm_version} has no cutlass_scaled_mm"

    def direct(a, b, a_s, b_s, block, out_dtype):
        return ops.cutlass_scaled_mm(a, b.T, out_dtype=out_dtype, scale_a=a_s, scale_b=b_s.T)

    return direct


def _op(name: str, span) -> Locate:
    def locate(s: Subject) -> Call | str:
        return vllm_op(name) or (
            f"torch.ops.vllm.{name} is not registered by vLLM {s.vllm_version} (it is in {span.describe()})"
        )

    return locate


def _function(name: str, where: str) -> Locate:
    def locate(s: Subject) -> Call | str:
        return s.function(name) or f"{name} is not in vLLM {s.vllm_version} ({where})"

    return locate


def _on_gpu(locate: Locate, why: str) -> Locate:
    def locate_on_gpu(s: Subject) -> Call | str:
        return locate(s) if s.kernel == "real" else why

    return locate_on_gpu


def _fp8_gemm_nt_op(s: Subject) -> Call | str:
    """``torch.ops.vllm.fp8_gemm_nt_op`` (registered by vLLM's DeepGEMM kernel module) called as
    ``DeepGemmFp8BlockScaledMMKernel.apply_block_scaled_mm`` calls it, fp32 scales as given."""
    import importlib

    try:
        importlib.import_module("vllm.model_executor.kernels.linear.scaled_mm.deep_gemm")
    except ImportError as e:
        return f"vLLM {s.vllm_version} has no DeepGEMM linear kernel module ({e})"
    op = vllm_op("fp8_gemm_nt_op")
    if op is None:
        return f"torch.ops.vllm.fp8_gemm_nt_op is not registered by vLLM {s.vllm_version}"

    def deepgemm(a, b, a_s, b_s, block, out_dtype):
        out = torch.empty((a.shape[0], b.shape[0]), dtype=out_dtype, device=a.device)
        op(a, a_s, b, b_s, out, False)
        return out

    return deepgemm


def _layer(cls_name: str | None, quant: bool = False, env: tuple = (), gpu_only: str = "") -> Locate:
    """A layer row (or its quantization) through vLLM's kernel class ``cls_name`` (None: vLLM's choice),
    built under vLLM's environment switches ``env``."""

    def locate(s: Subject) -> Call | str:
        if gpu_only and s.kernel != "real":
            return gpu_only
        from . import layer

        if cls_name is not None:
            try:
                names = [c.__name__ for c in layer.candidates()]
            except Exception as e:
                return f"vLLM {s.vllm_version} has no block-FP8 linear-kernel list: {type(e).__name__}: {e}"
            if cls_name not in names:
                return (
                    f"{cls_name} is not among vLLM {s.vllm_version}'s block-FP8 kernels ({', '.join(names)})"
                )
        if quant:
            return layer.VllmQuant(cls_name or "", dict(env))
        return layer.VllmLayer(cls_name, dict(env))

    return locate


def _kernel_m_rule(s: Subject) -> MRule:
    return kernel_m_rule(s.vllm_version)
