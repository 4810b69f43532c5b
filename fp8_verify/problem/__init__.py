"""Stage 1 of the pipeline: one block-scaled FP8 GEMM problem, from the spec Hypothesis draws to the
tensors in the layouts vLLM's kernels take.

=============  ===============================================================================
``spec``       :class:`ProblemSpec`: dims, block, out dtype, value/scale regimes, seed
``build``      :func:`build`: a spec to a :class:`BlockScaledProblem` (numbers from a seeded generator)
``tensors``    :class:`BlockScaledProblem` and the layout helpers (``cdiv``, ``column_major``)
``quant``      vLLM-style quantization (per-token-group activations, per-block weights)
``budget``     how large a problem may be drawn here (free memory, work)
=============  ===============================================================================
"""

from .budget import m_limit, max_m_for, memory_budget, problem_bytes, work_budget
from .build import build
from .quant import quantize
from .spec import QUANTIZED_SCALES, SCALE_REGIMES, VALUE_REGIMES, ProblemSpec
from .tensors import FP8, FP8_MAX, OUT_DTYPES, BlockScaledProblem, cdiv, column_major

__all__ = [
    "FP8",
    "FP8_MAX",
    "OUT_DTYPES",
    "QUANTIZED_SCALES",
    "SCALE_REGIMES",
    "VALUE_REGIMES",
    "BlockScaledProblem",
    "ProblemSpec",
    "build",
    "cdiv",
    "column_major",
    "m_limit",
    "max_m_for",
    "memory_budget",
    "problem_bytes",
    "quantize",
    "work_budget",
]
