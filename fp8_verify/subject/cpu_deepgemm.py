"""The CPU double of DeepGEMM, the library vLLM's ``DeepGemmFp8BlockScaledMMKernel`` ends in: a module
entered as ``deep_gemm`` (vLLM's ``_import_deep_gemm`` prefers an installed ``deep_gemm`` to its vendored
copy), with the functions vLLM calls on SM90, their checks and the kernel's exact arithmetic.

Learned from DeepGEMM at the commit vLLM 0.23.0 vendors (891d57b4db1071624b5c8fa0d1e51cb317fa709f;
``csrc/apis/gemm.hpp``, ``csrc/apis/layout.hpp``, ``csrc/utils/layout.hpp``, ``deep_gemm/include/
deep_gemm/impls/sm90_fp8_gemm_1d2d.cuh``), then held to the real library on an H100
(``tests/test_hopper.py::test_deepgemm_double_conforms``):

* ``fp8_gemm_nt((A, sfa), (B, sfb), d, ...)``: A and B 2-D, K-major, ``float8_e4m3fn``; ``d`` row-major
  bf16 (fp32 passes the first check and fails the SM90 kernel's); shapes conformal; M or N of 0 returns
  at once, K of 0 zeroes ``d``; scales fp32 of ``[M, ceil(K/128)]`` and ``[ceil(N/128), ceil(K/128)]``;
  ``sfa`` is copied into DeepGEMM's MN-major TMA-aligned layout whatever its strides (read by value);
  ``sfb`` must be packed row- or column-major. Failed checks raise ``RuntimeError("Assertion error
  (<file>:<line>): <condition>")`` as DeepGEMM's ``DG_HOST_ASSERT`` does.
* K not a multiple of 16 (A's and B's rows not 16-byte strides) passes every host check and fails
  making the TMA descriptor: ``RuntimeError("CUDA driver error (.../runtime_utils.hpp:143): 1
  (CUDA_ERROR_INVALID_VALUE, invalid argument)")``, seen on an H100 (vLLM 0.23.0, K = 248).
* Arithmetic: the SM90 1D2D kernel, per 128-wide K-block four chained wgmma k32 slices from zero, then
  ``final = fma(fp32(sa * sb), partial, final)``, RNE to bf16 (no split-K, no swap); the weight scale of
  each output column is that of its 128-row block. That is :func:`fp8_verify.numerics.
  sm90_blockwise_gemm` with promotion ``fma``.
* ``disable_ue8m0_cast`` changes nothing on SM90 (``csrc/apis/layout.hpp:40-45``: both fp32 branches
  fire on arch 9); ``transform_sf_into_required_layout`` returns activation scales in the TMA-aligned
  layout and weight scales unchanged after the layout check.
"""

from __future__ import annotations

import sys
import types

import torch

from ..numerics import sm90_blockwise_gemm

MODULE = "deep_gemm"
SRC = "/workspace/.deps/deepgemm-src/csrc/"
SMS = 132  # an H100 SXM

_num_sms = 0
TMA_ALIGN = 16  # bytes: a TMA descriptor's global strides must be multiples of it
TMA_WHERE = "jit_kernels/impls/runtime_utils.hpp:143"  # where DeepGEMM makes the descriptor (seen on an H100)
TMA_ERROR = "CUDA_ERROR_INVALID_VALUE, invalid argument"


def _assert(cond: bool, where: str, text: str) -> None:
    if not cond:
        raise RuntimeError(f"Assertion error ({SRC}{where}): {text}")


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def get_tma_aligned_size(x: int, element_size: int) -> int:
    _assert(16 % element_size == 0, "utils/math.hpp:25", "kNumTMAAlignmentBytes % element_size == 0")
    step = 16 // element_size
    return _cdiv(x, step) * step


def get_mn_major_tma_aligned_tensor(sf: torch.Tensor) -> torch.Tensor:
    """fp32 scales ``[mn, sf_k]`` in the layout with strides ``(1, align(mn, 4))``: the tensor itself if
    it has it, else an exact copy (padding rows left as they come)."""
    _assert(sf.dim() in (2, 3), "jit_kernels/impls/smxx_layout.hpp:105", "dim == 2 or dim == 3")
    _assert(
        sf.dtype == torch.float32,
        "jit_kernels/impls/smxx_layout.hpp:106",
        "sf.scalar_type() == torch::kFloat",
    )
    squeeze = sf.dim() == 2
    t = sf.unsqueeze(0) if squeeze else sf
    g, mn, sf_k = t.shape
    aligned = get_tma_aligned_size(mn, 4)
    if t.stride(-2) == 1 and t.stride(-1) == aligned and (squeeze or t.stride(0) == aligned * sf_k):
        return sf
    out = torch.empty_strided((g, mn, sf_k), (aligned * sf_k, 1, aligned), dtype=sf.dtype, device=sf.device)
    out.copy_(t)
    return out.squeeze(0) if squeeze else out


def _check_sf(sf: torch.Tensor, mn: int, k: int, gran_mn: int, groups: int | None) -> None:
    where = "utils/layout.hpp"
    _assert(
        sf.dtype in (torch.float32, torch.int32),
        f"{where}:93",
        "sf_dtype == torch::kFloat or sf_dtype == torch::kInt",
    )
    _assert(
        sf.dim() == (groups is not None) + 2,
        f"{where}:94",
        "sf.dim() == static_cast<int>(num_groups.has_value()) + 2",
    )
    if groups is not None:
        _assert(sf.size(-3) == groups, f"{where}:96", "sf.size(-3) == num_groups.value()")
    _assert(sf.size(-2) == _cdiv(mn, gran_mn), f"{where}:97", "sf.size(-2) == ceil_div(mn, gran_mn)")
    _assert(
        sf.size(-1) == _cdiv(k, 128),
        f"{where}:98",
        "sf.size(-1) == ceil_div(k, gran_k * (sf_dtype == torch::kFloat ? 1 : 4))",
    )


def _check_sfb_layout(sf: torch.Tensor) -> None:
    rows, cols = sf.size(-2), sf.size(-1)
    packed = (sf.stride(-1) == 1 and sf.stride(-2) == cols) or (sf.stride(-1) == rows and sf.stride(-2) == 1)
    _assert(
        packed,
        "utils/layout.hpp:113",
        "(sf.stride(-1) == 1 and sf.stride(-2) == sf.size(-1)) or "
        "(sf.stride(-1) == sf.size(-2) and sf.stride(-2) == 1)",
    )
    if sf.dim() == 3:
        _assert(
            sf.stride(-3) == rows * cols, "utils/layout.hpp:111", "sf.stride(-3) == sf.size(-2) * sf.size(-1)"
        )


def transform_sf_into_required_layout(
    sf: torch.Tensor,
    mn: int,
    k: int,
    recipe=None,
    num_groups: int | None = None,
    is_sfa: bool | None = None,
    disable_ue8m0_cast: bool = False,
) -> torch.Tensor:
    """SM90, fp32 scales: activation scales (1 x 128) into the TMA-aligned layout, weight scales
    (128 x 128) checked and returned as they are (``csrc/apis/layout.hpp:14-60``)."""
    _assert(
        recipe is not None and len(recipe) == 3 and is_sfa is not None,
        "apis/layout.hpp:26",
        "is_sfa.has_value()",
    )
    gran_mn = recipe[0] if is_sfa else recipe[1]
    _check_sf(sf, mn, k, gran_mn, num_groups)
    if sf.dtype == torch.float32 and gran_mn == 1 and recipe[2] == 128:
        return get_mn_major_tma_aligned_tensor(sf)
    if sf.dtype == torch.float32 and gran_mn == 128 and recipe[2] == 128:
        _check_sfb_layout(sf)
        return sf
    raise RuntimeError(f"Unreachable error ({SRC}apis/layout.hpp:59): Unknown SF transformation")


def _major_k(t: torch.Tensor) -> bool:
    _assert(t.dim() in (2, 3), "utils/layout.hpp:15", "dim == 2 or dim == 3")
    _assert(
        t.stride(-2) == 1 or t.stride(-1) == 1,
        "utils/layout.hpp:18",
        "t.stride(-2) == 1 or t.stride(-1) == 1",
    )
    return t.stride(-1) == 1


def fp8_gemm_nt(
    a, b, d, c=None, recipe=None, recipe_a=None, recipe_b=None, compiled_dims="nk", disable_ue8m0_cast=False
):
    """``d = A @ B.T`` with block scales, as DeepGEMM's SM90 1D2D kernel computes it (see the module doc)."""
    (a_t, sfa), (b_t, sfb) = a, b
    _assert(_major_k(a_t), "apis/gemm.hpp:63", "major_a == cute::UMMA::Major::K")
    _assert(_major_k(b_t), "apis/gemm.hpp:64", "major_b == cute::UMMA::Major::K")
    _assert(d.dim() in (2, 3) and d.stride(-1) == 1, "utils/layout.hpp:29", "t.stride(-1) == 1")
    for t in (a_t, b_t):
        _assert(t.dim() == 2, "utils/layout.hpp:39", "t.dim() == N")
        _assert(
            t.dtype == torch.float8_e4m3fn,
            "utils/layout.hpp:47",
            "ab.scalar_type() == kPackedFP4 and arch_major == 10",
        )
    _assert(d.dim() == 2, "utils/layout.hpp:39", "t.dim() == N")
    m, k = a_t.shape
    n, k_ = b_t.shape
    m_, n_ = d.shape
    _assert(m == m_ and n == n_ and k == k_, "apis/gemm.hpp:75", "m == m_ and n == n_ and k == k_")
    _assert(
        d.dtype in (torch.bfloat16, torch.float32),
        "apis/gemm.hpp:76",
        "d.scalar_type() == torch::kBFloat16 or d.scalar_type() == torch::kFloat",
    )
    if m == 0 or n == 0:
        return
    if k == 0:
        d.zero_()
        return
    _assert(
        sfa.dtype == torch.float32 and sfb.dtype == torch.float32,
        "utils/layout.hpp:68",
        "sfa_dtype == torch::kFloat and sfb_dtype == torch::kFloat",
    )
    _check_sf(sfa, m, k, 1, None)
    sfa = get_mn_major_tma_aligned_tensor(sfa)
    _check_sf(sfb, n, k, 128, None)
    _check_sfb_layout(sfb)
    _assert(
        c is None and d.dtype == torch.bfloat16,
        "jit_kernels/impls/sm90_fp8_gemm_1d2d.hpp:88",
        "not c.has_value() and d.scalar_type() == torch::kBFloat16",
    )
    _assert(get_num_sms() % 2 == 0, "jit_kernels/heuristics/config.hpp:44", "num_sms % 2 == 0")
    if k % TMA_ALIGN:  # the TMA descriptor of A and B: a row stride (K bytes) not a multiple of 16
        raise RuntimeError(f"CUDA driver error ({SRC}apis/../{TMA_WHERE}): 1 ({TMA_ERROR})")
    d.copy_(sm90_blockwise_gemm(a_t, b_t, sfa, sfb, torch.bfloat16, promotion="fma"))


def get_num_sms() -> int:
    return _num_sms or SMS


def set_num_sms(n: int) -> None:
    global _num_sms
    _assert(
        0 <= n <= SMS,
        "jit/device_runtime.hpp:104",
        "0 <= new_num_sms and new_num_sms <= get_prop()->multiProcessorCount",
    )
    _num_sms = n


def get_mk_alignment_for_contiguous_layout() -> int:
    return 128


def install() -> types.ModuleType:
    """Enter the double as ``deep_gemm`` (idempotent); vLLM imports it in place of its vendored copy."""
    existing = sys.modules.get(MODULE)
    if existing is not None and getattr(existing, "__fp8_verify_double__", False):
        return existing
    mod = types.ModuleType(MODULE, "fp8-verify's CPU double of DeepGEMM (fp8_verify.subject.cpu_deepgemm)")
    mod.__fp8_verify_double__ = True  # type: ignore[attr-defined]
    for name in (
        "fp8_gemm_nt",
        "transform_sf_into_required_layout",
        "get_mn_major_tma_aligned_tensor",
        "get_tma_aligned_size",
        "get_num_sms",
        "set_num_sms",
        "get_mk_alignment_for_contiguous_layout",
    ):
        setattr(mod, name, globals()[name])
    sys.modules[MODULE] = mod
    return mod
