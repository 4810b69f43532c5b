"""What properties share, public so that a test tree upstream can lift a property with one import: the
device problems live on, and the checks that run a path, judge its output and fail with a message that
says what, where and by how much.

>>> from fp8_verify.subject import registry  # doctest: +SKIP
>>> check_within_bound(registry.get(registry.PATHS[0].name), problem)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch

from ..judge.bound import oracle
from ..judge.exact import CUTLASS, ExactVerdict, emulate, judge_exact
from ..judge.family import QuantVerdict, gemm_view, judge_quant
from ..judge.verdict import Verdict, bitwise_diff, judge
from ..problem import BlockScaledProblem, column_major
from ..subject.registry import EXTERNAL, QUANT, Call, GemmPath, as_path
from ..subject.releases import MRule, kernel_m_rule
from ..subject.vllm import load
from .isolation import is_sticky_cuda_error


class VerdictFailure(AssertionError):
    """A path's output outside the FP8 bound, or not the kernel's bits (``verdict`` says where and by
    how much)."""

    def __init__(self, verdict: Verdict | ExactVerdict | QuantVerdict) -> None:
        super().__init__(verdict.message())
        self.verdict = verdict


def device(path: GemmPath | None = None) -> torch.device:
    """Where problems live: the GPU when vLLM's real kernels run, else the CPU (the doubles) -- except for
    a user's kernel (``--path``), which gets CUDA tensors on any CUDA GPU (an A100's or a B200's kernel
    must not be handed CPU tensors because vLLM's SM90 kernels cannot run there)."""
    s = load()
    if path is not None and path.kernel == EXTERNAL and s.device.type == "cpu" and torch.cuda.is_available():
        return torch.device("cuda")
    return s.device


def _check(gemm: GemmPath | Call, p, record, exact: bool, rows: int | None = None):
    """Run ``gemm`` on ``p`` and judge its output against the bound (always: its error/bound feeds the
    report and a failure's artifacts) and, if ``exact``, bit for bit against the emulation of its
    kernel's arithmetic; raise on the verdict. A layer row is judged on the GEMM problem its
    quantization should have formed, a quantization row by :func:`~fp8_verify.judge.family.judge_quant`
    (:mod:`fp8_verify.judge.family`).

    ``rows``: ``p`` stacks problems of ``rows`` rows that share the weight (fresh activations each). The
    row is prepared once (a layer's weights processed once, as a model loads them) and called on each
    problem alone -- its kernel sees M = ``rows`` -- and the outputs are judged together, by one
    reference and one emulation over the stack (each computes a row from its own rows of A and As,
    vLLM's quantization a row from its own row of x, so that is judging each problem). A failure is
    re-checked and reported as the one problem it was in, with that problem's verdict and repro; the
    batch's own verdict only if that problem alone passes (the kernel answered differently alone)."""
    __tracebackhide__ = True
    gemm = as_path(gemm)
    batch = rows is not None and rows < p.m
    if batch and (gemm.family == QUANT or p.m % rows):
        raise ValueError(f"{gemm.name}: a batch is of whole {rows}-row GEMM or layer problems, got M={p.m}")
    members = [p.with_m(slice(r, r + rows)) for r in range(0, p.m, rows)] if batch else [p]
    prepared = gemm.prepare(p)
    if batch:
        out = torch.cat([prepared.fn(*gemm.inputs(q)) for q in members])
    else:
        out = prepared.fn(*prepared.inputs)
    decisions = prepared.decisions or gemm.decisions(p)
    if gemm.family == QUANT:
        vq = judge_quant(out, p, decisions, gemm.name, exact=exact)
        if record is not None:
            record.example()
        if not vq.ok:
            raise VerdictFailure(vq)
        return vq
    g = gemm_view(p, decisions)
    o = oracle(g)
    vb = judge(out, o, g, gemm.name)
    # a callable handed to the check is held to the SM90 CUTLASS kernel's bits; a row's kernel may decide
    # its arithmetic by M: the problems' M, not the stack's
    arithmetic = CUTLASS if gemm.kernel == EXTERNAL else gemm.arithmetic(members[0])
    if exact and arithmetic is None:
        if gemm.kernel == EXTERNAL or not gemm.spec.exact:
            raise ValueError(f"{gemm.name}: no known arithmetic to judge bit for bit (kernel {gemm.kernel})")
        # a kernel whose arithmetic holds only on some problems (kernels.Kernel.modelled): the bound here
        if record is not None:
            record.bound_only()
        exact = False
    v = judge_exact(out, emulate(g, arithmetic, rows if batch else None), g, gemm.name) if exact else vb
    if batch and not v.ok:
        first = v.worst[0] // rows if v.worst else 0
        _note_batch(first, len(members), rows)
        _check(gemm, members[first], record, exact)  # raises with that problem's verdict and artifacts
        raise VerdictFailure(v)
    if record is not None:
        kernel = decisions.kernel.name if decisions and decisions.kernel else gemm.kernel
        record.verdict(vb, members[0], kernel, problems=len(members))
        if decisions is not None:
            record.decided(decisions)
        if not v.ok:
            record.failure(p, gemm, vb, out, o)
    if not v.ok:
        raise VerdictFailure(v)
    return v


def _note_batch(index: int, count: int, rows: int) -> None:
    """Say, in Hypothesis' report of a failing example, which problem of its batch failed."""
    from hypothesis import note
    from hypothesis.errors import InvalidArgument

    with contextlib.suppress(InvalidArgument):  # outside a Hypothesis test
        note(f"problem {index + 1} of a batch of {count} (rows {index * rows}..{(index + 1) * rows - 1})")


def check_within_bound(gemm: GemmPath | Call, p, record=None) -> Verdict:
    """Run ``gemm`` (a registry path, or any callable with vLLM's signature) on ``p`` and assert every
    element is within the FP8 error bound of the exact reference (:mod:`fp8_verify.judge.bound`);
    ``record`` (the ``fp8_record`` fixture) counts it and keeps a failure's repro script and error map."""
    __tracebackhide__ = True
    return _check(gemm, p, record, exact=False)


def check_bit_exact(gemm: GemmPath | Call, p, record=None, rows: int | None = None) -> ExactVerdict:
    """Run ``gemm`` on ``p`` and assert its output is, bit for bit, what its kernel's arithmetic gives
    (:func:`fp8_verify.judge.exact.emulate`; a callable that is not a registry row is held to the SM90
    CUTLASS kernel's arithmetic, the one upstream's block-FP8 GEMM tests target); the FP8 bound is
    checked too, so that the error/bound is reported and a failure leaves the same artifacts as
    :func:`check_within_bound`. ``rows``: ``p`` is a batch of problems of that many rows sharing the
    weight (:func:`fp8_verify.strategies.batch_for`), each run alone and judged together."""
    __tracebackhide__ = True
    return _check(gemm, p, record, exact=True, rows=rows)


def assert_same_bits(out: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    """``out`` and ``expected`` are the same bits (NaNs included); else say where they differ."""
    __tracebackhide__ = True
    diff = bitwise_diff(out, expected)
    if diff is not None:
        raise AssertionError(f"{what}: {diff}")


def kernel_alone(p: BlockScaledProblem) -> torch.Tensor:
    """The SM90 kernel (``torch.ops._C.cutlass_scaled_mm``) on ``p`` in its packed layouts, the rows
    zero-padded where the installed release's kernel needs M % 4 == 0: the reference every CUTLASS path
    must equal bit for bit (the kernel computes each output row from its own rows of A and As only)."""
    rule = kernel_m_rule(load().vllm_version)
    m_pad = p.m if rule is MRule.ANY else -(-p.m // 4) * 4
    a = torch.zeros(m_pad, p.k, dtype=torch.uint8, device=p.device)
    a[: p.m] = p.a.view(torch.uint8)
    sa = torch.ones(m_pad, p.a_scale.shape[1], dtype=p.a_scale.dtype, device=p.device)
    sa[: p.m] = p.a_scale
    out = torch.empty(m_pad, p.n, dtype=p.out_dtype, device=p.device)
    torch.ops._C.cutlass_scaled_mm(out, a.view(p.a.dtype), p.b.T, column_major(sa), p.b_scale.T, None)
    return out[: p.m]


WORDS_M4 = ("divisible by 4", "multiple of 4", "m % 4")


def rejects_clearly(exc: BaseException, *words: str) -> bool:
    """An error 'names the problem' when its text carries one of ``words`` (case-insensitive) and it is
    not a CUDA fault (whose text can hold such words by accident: "misaligned address")."""
    if is_sticky_cuda_error(exc):
        return False
    text = str(exc).lower()
    return any(w.lower() in text for w in words)


def run_or_exception(gemm: GemmPath, p: BlockScaledProblem):
    """``(output, None)`` or ``(None, exception)``, for properties that accept a clear rejection."""
    try:
        return gemm.run(p), None
    except (RuntimeError, ValueError, AssertionError, TypeError, NotImplementedError) as e:
        return None, e


def graph_replay(call: Callable[..., torch.Tensor], args: list, fresh: list) -> torch.Tensor:
    """``call(*args)`` captured in a CUDA graph (after a warm-up outside it), then replayed with ``args``
    overwritten in place by ``fresh``: what the graph computes for the fresh inputs."""
    call(*args)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = call(*args)
    for dst, src in zip(args, fresh, strict=True):
        if isinstance(dst, torch.Tensor):
            dst.copy_(src)
    graph.replay()
    torch.cuda.synchronize()
    return out
