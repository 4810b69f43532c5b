"""What vLLM runs for a block-FP8 layer: which kernel class it chooses (asked of vLLM's own selection code
under the switches a deployment sets), and that the chosen class, run as a model runs it, gives the bits
of its kernel's arithmetic composed with the exact emulation of vLLM's quantization. The layer rows'
other properties are the core ones (tests/test_paths.py, test_exact.py, test_hopper.py)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import event, given, note, settings
from hypothesis import strategies as st

from fp8_verify.strategies import build_for, layer_specs, layer_weight_dims, m_dims
from fp8_verify.subject.kernels import NOT_RUN
from fp8_verify.subject.layer import NotRun, VllmLayer
from fp8_verify.subject.vllm import load
from fp8_verify.suite.options import examples
from fp8_verify.suite.properties import check_bit_exact, device

pytestmark = pytest.mark.cpu

#: The switches a deployment sets that change vLLM's choice for a block-FP8 layer (vllm/envs.py).
SWITCHES = ("VLLM_USE_DEEP_GEMM", "VLLM_USE_DEEP_GEMM_E8M0", "VLLM_BLOCKSCALE_FP8_GEMM_FLASHINFER")


@settings(max_examples=examples(12))
@given(
    spec=layer_specs(m=m_dims(max_value=256), weights=layer_weight_dims(n_multiple=16)),
    switches=st.fixed_dictionaries({k: st.sampled_from(["1", "0"]) for k in SWITCHES}),
)
def test_kernel_choice(spec, switches, fp8_record):
    """For a drawn layer (N, K, output dtype) and switches, vLLM's ``choose_scaled_mm_linear_kernel``
    picks a class; the report counts the choices and vLLM's reasons for the classes it passed over. The
    chosen class is run as a model runs it and must give its kernel's bits -- or be one fp8-verify
    declares it does not run (kernels.NOT_RUN, e.g. FlashInfer's), which the report counts too. A
    choice of a class fp8-verify knows nothing of fails: the suite must learn it."""
    if load().kernel == "double" and switches["VLLM_BLOCKSCALE_FP8_GEMM_FLASHINFER"] == "1":
        note("FlashInfer's block-scale GEMM on: vLLM may pick it where flashinfer is installed")
    layer = VllmLayer(None, switches)
    try:
        _obj, decisions = layer.decide(spec.n, spec.k, getattr(torch, spec.out_dtype))
    except NotRun as e:
        assert e.cls_name in NOT_RUN
        event(f"vLLM chose {e.cls_name} (not run by fp8-verify)")
        fp8_record.example()
        return
    event(f"vLLM chose {decisions.kernel_class}")
    assert decisions.kernel is not None, (
        f"vLLM chose {decisions.kernel_class} for N={spec.n} K={spec.k} {spec.out_dtype} under {switches}: "
        "fp8-verify has no kernel row for it (fp8_verify/subject/kernels.py)"
    )
    if switches["VLLM_USE_DEEP_GEMM"] == "0":
        assert decisions.kernel_class != "DeepGemmFp8BlockScaledMMKernel", "DeepGEMM chosen although disabled"
    p = build_for(spec, device())
    note(f"{p.describe()} under {switches}: {decisions.to_dict()}")
    check_bit_exact(layer, p, fp8_record)
