"""vLLM's test_w8a8_block_fp8_cutlass_matmul (tests/kernels/quantization/test_block_fp8.py) as a property:
Hypothesis draws M, N, K, regimes and seeds instead of a fixed grid; the output must be the SM90 kernel's
bits and within the derived FP8 bound. Run with: pytest -p fp8_verify.plugin this_file.py"""

from hypothesis import given
from vllm.model_executor.kernels.linear.scaled_mm.cutlass import cutlass_scaled_mm

from fp8_verify import build, check_bit_exact, device, m_dims, problem_specs


@given(problem_specs(m=m_dims(aligned=True)))  # aligned: 0.23's kernel takes M % 4 == 0 directly
def test_w8a8_block_fp8_cutlass_matmul(spec):
    check_bit_exact(cutlass_scaled_mm, build(spec, device()))
