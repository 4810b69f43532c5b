"""fp8-verify: property-based correctness checks for vLLM's FP8 block-scaled GEMM paths.

The pipeline, one module per stage: :mod:`strategies` draws a problem spec, :mod:`fp8_verify.problem`
builds the tensors, :mod:`fp8_verify.paths` runs vLLM's code on them, :mod:`fp8_verify.reference` and
:mod:`fp8_verify.bound` give the exact answer and the FP8 error bound, :mod:`fp8_verify.verdict`
compares, and :mod:`fp8_verify.plugin` / :mod:`fp8_verify.report` record and report.
"""

__version__ = "0.1.0"
