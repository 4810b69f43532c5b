"""``fp8-verify bench``: time vLLM's block-FP8 GEMM paths on real model weight shapes.

Why it is built the way it is (docs/benchmark.md has the long form):

* The timed paths are the registry's rows with a ``bench`` label (:mod:`fp8_verify.subject.registry`),
  plus one bench-only reference, ``always_pad`` (:mod:`.paths`). The baseline -- the kernel alone,
  ``bypass`` -- comes first; every other path is compared with it.
* Two timings per path. *graph*: one call per input set captured into a ``torch.cuda.CUDAGraph`` and
  replayed between CUDA events -- what the GPU does, launch overhead excluded (vLLM decodes inside
  CUDA graphs). *eager*: CUDA events around a loop of eager calls -- the same plus the host's launch
  and Python overhead, where that is the bottleneck.
* Several input sets (weights included) rotate so that neither weights nor activations sit in the
  50 MB L2 between calls: in a model every layer reads a different weight.
* Paths are interleaved round-robin in every repetition, so drift (clocks, temperature) hits all of
  them alike; rounds repeat until the interquartile spread of the per-round medians is under the
  target (2%) or a cap is reached; median and spread are reported (:mod:`.measure`).
* ``padded``, ``dynamic_eager`` and the compiled ops run the same single kernel as ``bypass`` when
  ``M % 4 == 0`` (``_padded_cutlass`` returns early there, in 0.22.1 and 0.23.0 alike): the
  launch profile (:mod:`.profile`) and the bitwise comparison with ``bypass`` show it, so any
  graph-time difference there is noise. ``always_pad`` (a labelled reference, not vLLM code) takes
  the padding branch on every M, as ``_padded_cutlass`` did before it had its ``has_pad`` check: the
  most that skipping the padding can save.

The run (:mod:`.sweep`) times every (shape, M) point (:mod:`.point`; shapes and M lists in
:mod:`.shapes`, options in :mod:`.config`). Results go to ``--out`` as JSON keyed by the run's label
(the vLLM version by default), CSV, Markdown and PNG (:mod:`.outputs`, :mod:`.plot`, with the
environment of :mod:`.environment`); ``--compare A.json B.json`` merges runs made with different vLLM
releases (:mod:`.compare`). :mod:`.cli` and :mod:`.config` import only the standard library at module
level, so that the CLI can add :func:`add_arguments` cheaply.
"""

from .cli import add_arguments, main

__all__ = ["add_arguments", "main"]
