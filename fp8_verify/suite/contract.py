"""The input contract: inputs outside the canonical form, and what each path must do with them.

Each :class:`Case` turns a canonical problem into the arguments a caller might really pass (a sliced
activation, row-major scales, a wrong dtype, ...) plus the *logical* problem those arguments denote. The
contract: a path either raises an error that names the problem (its text contains one of the case's
``words``), or returns a result within the FP8 bound of the logical problem's reference. Anything else is
a silent wrong answer (or an unclear error) and gets a FINDINGS.md entry.

:func:`outcome` classifies one (case, path, problem) run; ``fp8-verify contract`` tabulates them into
``docs/contract.md``; ``tests/test_contract.py`` holds the property.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from ..judge.bound import oracle
from ..judge.verdict import judge
from ..numerics import sm90_blockwise_gemm, uses_blockwise_kernel
from ..problem import BlockScaledProblem, column_major
from ..subject.cpu_kernel import _as_kernel_reads
from ..subject.registry import GemmPath
from .isolation import is_sticky_cuda_error

Args = tuple  # (a, b, a_scale, b_scale, block, out_dtype)


@dataclass(frozen=True)
class Case:
    name: str
    description: str
    make: Callable[[BlockScaledProblem], tuple[Args, BlockScaledProblem]]
    words: tuple[str, ...]  # an error naming the problem contains one of these (lower case)


def _canon(p: BlockScaledProblem) -> Args:
    return (p.a, p.b, p.a_scale, p.b_scale, list(p.block), p.out_dtype)


def _with(p: BlockScaledProblem, **kw) -> tuple[Args, BlockScaledProblem]:
    args = dict(zip(("a", "b", "a_scale", "b_scale", "block", "out_dtype"), _canon(p), strict=True))
    args.update(kw)
    return tuple(args.values()), p


def _wider(t: torch.Tensor, extra_cols: int) -> torch.Tensor:
    """``t`` as the left part of a wider row-major buffer (row stride = cols + extra_cols)."""
    rows, cols = t.shape
    buf = torch.zeros(
        rows,
        cols + extra_cols,
        dtype=torch.uint8 if t.element_size() == 1 else t.dtype,
        device=t.device,
    )
    view = buf[:, :cols]
    if t.element_size() == 1:
        view.copy_(t.view(torch.uint8))
        return buf.view(t.dtype)[:, :cols]
    view.copy_(t)
    return view


def _every_other_row(t: torch.Tensor) -> torch.Tensor:
    rows, cols = t.shape
    raw = t.view(torch.uint8) if t.element_size() == 1 else t
    buf = torch.zeros(2 * rows, cols, dtype=raw.dtype, device=t.device)
    buf[::2].copy_(raw)
    return buf.view(t.dtype)[::2] if t.element_size() == 1 else buf[::2]


def _a_scale_pitch(p: BlockScaledProblem) -> torch.Tensor:
    m, kb = p.a_scale.shape
    buf = torch.ones(kb, m + 4, device=p.device).t()[:m]  # strides (1, m + 4)
    buf.copy_(p.a_scale)
    return buf


def _b_scale_pitch(p: BlockScaledProblem) -> torch.Tensor:
    nb, kb = p.b_scale.shape
    buf = torch.ones(nb, kb + 1, device=p.device)[:, :kb]
    buf.copy_(p.b_scale)
    return buf


NOT16_WORDS = ("multiple of 16", "divisible by 16", "% 16", "block scale", "block-wise", "blockwise")

CASES: dict[str, Case] = {
    c.name: c
    for c in (
        Case(
            "canonical",
            "A, B row-major; As column-major; Bs row-major (vLLM's layouts)",
            lambda p: _with(p),
            (),
        ),
        Case(
            "a_scale_row_major",
            "activation scales row-major [M, kb] (contiguous)",
            lambda p: _with(p, a_scale=p.a_scale.contiguous()),
            ("major", "layout", "stride"),
        ),
        Case(
            "a_scale_pitch",
            "activation scales M-major with a padded pitch (stride (1, M+4))",
            lambda p: _with(p, a_scale=_a_scale_pitch(p)),
            ("major", "layout", "stride"),
        ),
        Case(
            "b_scale_col_major",
            "weight scales column-major [nb, kb] (so Bs.T is row-major)",
            lambda p: _with(p, b_scale=column_major(p.b_scale)),
            ("major", "layout", "stride"),
        ),
        Case(
            "b_scale_pitch",
            "weight scales with a padded row stride (kb + 1)",
            lambda p: _with(p, b_scale=_b_scale_pitch(p)),
            ("major", "layout", "stride"),
        ),
        Case(
            "a_sliced",
            "A is the left part of a wider buffer (row stride K + 128)",
            lambda p: _with(p, a=_wider(p.a, 128)),
            ("stride", "contiguous", "lda", "packed"),
        ),
        Case(
            "a_row_strided",
            "A is every other row of a [2M, K] buffer",
            lambda p: _with(p, a=_every_other_row(p.a)),
            ("stride", "contiguous", "lda", "packed"),
        ),
        Case(
            "b_sliced",
            "B is the left part of a wider buffer (row stride K + 128)",
            lambda p: _with(p, b=_wider(p.b, 128)),
            ("stride", "contiguous", "ldb", "packed"),
        ),
        Case(
            "b_col_major",
            "B stored column-major ([N, K] with strides (1, N))",
            lambda p: _with(p, b=column_major(p.b)),
            ("stride", "major"),  # DeepGEMM: "major_b == cute::UMMA::Major::K" (B must be K-major)
        ),
        Case(
            "a_e5m2",
            "A given as float8_e5m2 holding the same values",
            lambda p: _e5m2(p),
            ("dtype", "e5m2", "e4m3"),
        ),
        Case(
            "a_fp16",
            "A given as float16 holding the same values",
            lambda p: _with(p, a=p.a.to(torch.float16)),
            ("dtype", "float16", "half"),
        ),
        Case(
            "scales_fp64",
            "scales in float64",
            lambda p: _with(p, a_scale=column_major(p.a_scale.double()), b_scale=p.b_scale.double()),
            ("float32", "dtype", "kfloat"),
        ),
        Case(
            "scales_bf16",
            "scales in bfloat16 (values rounded, logical problem uses them)",
            lambda p: _bf16_scales(p),
            ("float32", "dtype", "kfloat"),
        ),
        Case(
            "a_scale_short",
            "activation scales with one K-group too few",
            lambda p: (
                _with(p, a_scale=column_major(p.a_scale[:, :-1]))
                if p.a_scale.shape[1] > 1
                else _with(p, a_scale=column_major(p.a_scale[:, :0]))
            ),
            ("shape", "group"),
        ),
        Case(
            "out_fp32",
            "output dtype float32 (a path that takes it is judged as an fp32 GEMM)",
            lambda p: (_with(p, out_dtype=torch.float32)[0], replace(p, out_dtype=torch.float32)),
            ("dtype", "float32", "bfloat16", "float16"),
        ),
        Case(
            "m_zero",
            "no tokens: M = 0 (an empty batch)",
            lambda p: _with(p.with_m(slice(0, 0))),
            ("empty", "m=0", "m == 0", "m = 0", "no rows", "no tokens"),
        ),
        Case(
            "scale_zero_block",
            "one column of weight-scale blocks is 0 (a pruned block)",
            lambda p: _scaled_b(p, lambda s: s.index_fill(1, torch.tensor([0], device=s.device), 0.0)),
            (),
        ),
        Case(
            "scales_negative",
            "negative weight scales (a sign folded into the scale)",
            lambda p: _scaled_b(p, lambda s: -s),
            (),
        ),
        Case(
            "scale_nan",
            "one weight-scale block is NaN: its 128 output columns must be NaN in every row",
            lambda p: _scaled_b(p, _nan_first_block),
            (),
        ),
        Case(
            "a_nan",
            "one NaN (code 0x7F) in A: its output row must be NaN",
            lambda p: _nan_a(p),
            (),
        ),
        Case(
            "n_not16",
            "N not a multiple of 16 (N - 8 rows of B; vLLM routes such B to its Triton fallback)",
            lambda p: _narrower(p, n=8),
            NOT16_WORDS,
        ),
        Case(
            "k_not16",
            "K not a multiple of 16 (K - 8; A and B contiguous; the Triton fallback again)",
            lambda p: _narrower(p, k=8),
            NOT16_WORDS,
        ),
        Case(
            "block_64x128",
            "block shape [64, 128] (weight scales per 64 rows)",
            lambda p: _block(p, (64, 128)),
            ("block", "group"),
        ),
        Case(
            "block_128x64",
            "block shape [128, 64] (scales per 64 columns of K)",
            lambda p: _block(p, (128, 64)),
            ("block", "group"),
        ),
    )
}


def _narrower(p: BlockScaledProblem, n: int = 0, k: int = 0) -> tuple[Args, BlockScaledProblem]:
    """Drop the last ``n`` rows of B or the last ``k`` columns of A and B (fresh contiguous tensors, so
    only the size differs). The callers' N and K are multiples of 128 plus 0 or 16, so the number of
    scale blocks is unchanged and the scales stay valid."""
    a = p.a[:, : p.k - k].contiguous()
    b = p.b[: p.n - n, : p.k - k].contiguous()
    q = replace(p, a=a, b=b)
    return _canon(q), q


def _e5m2(p: BlockScaledProblem) -> tuple[Args, BlockScaledProblem]:
    a = p.a.float().to(torch.float8_e5m2)  # e4m3 values beyond e5m2's precision round
    return _with(replace(p, a=p.a), a=a)[0], replace(p, a=a.float().to(p.a.dtype))


def _scaled_b(p: BlockScaledProblem, f) -> tuple[Args, BlockScaledProblem]:
    q = replace(p, b_scale=f(p.b_scale).contiguous())
    return _canon(q), q


def _nan_first_block(s: torch.Tensor) -> torch.Tensor:
    s = s.clone()
    s[0, 0] = float("nan")
    return s


def _nan_a(p: BlockScaledProblem) -> tuple[Args, BlockScaledProblem]:
    a = p.a.clone()
    a.view(torch.uint8)[0, p.k // 2] = 0x7F
    q = replace(p, a=a)
    return _canon(q), q


def _bf16_scales(p: BlockScaledProblem) -> tuple[Args, BlockScaledProblem]:
    sa, sb = column_major(p.a_scale.to(torch.bfloat16)), p.b_scale.to(torch.bfloat16)
    logical = replace(p, a_scale=column_major(sa.float()), b_scale=sb.float())
    return _with(p, a_scale=sa, b_scale=sb)[0], logical


def _block(p: BlockScaledProblem, block: tuple[int, int]) -> tuple[Args, BlockScaledProblem]:
    """Requantize the same dequantized matrices with another block shape."""
    from ..judge.reference import dequantized
    from ..problem import quantize

    a, b = dequantized(p)
    q = quantize(a.float().cpu(), b.float().cpu(), block, p.out_dtype).to(p.device)
    return _canon(q), q


@dataclass
class Outcome:
    kind: str  # "correct" | "rejected" | "unclear-error" | "silent-wrong"
    detail: str
    max_ratio: float | None = None
    error: BaseException | None = None  # what the path raised, if it did
    # What a finding needs to check its prediction of a wrong answer: the arguments the path was given
    # (the case's, not the logical problem's) and what it returned.
    args: Args | None = None
    output: torch.Tensor | None = None

    def ok(self) -> bool:
        return self.kind in ("correct", "rejected")


class ContractFailure(AssertionError):
    """A contract cell that is neither correct nor a clear rejection; raised from the path's own error,
    if any, so that a finding's signature can name that error (fp8_verify.suite.findings). It carries the
    case's arguments, the path's output and whether the path pads M (copies A and its scales when
    M % 4 != 0), so that a signature can compute the wrong answer its finding predicts."""

    def __init__(self, case: Case, path: str, problem: str, res: Outcome, pads_m: bool = False) -> None:
        super().__init__(f"{path} on {case.name} ({case.description}), {problem}: {res.kind}: {res.detail}")
        self.case, self.path, self.outcome, self.pads_m = case, path, res, pads_m

    @property
    def case_args(self) -> Args | None:  # not ``args``: BaseException.args is the exception's own
        return self.outcome.args

    @property
    def output(self) -> torch.Tensor | None:
        return self.outcome.output


def check_contract(case: Case, path: GemmPath, p: BlockScaledProblem) -> Outcome:
    """Run ``path`` on ``case`` applied to ``p``; raise :class:`ContractFailure` unless the outcome is
    correct or a rejection that names the problem."""
    __tracebackhide__ = True
    res = outcome(case, path, p)
    if not res.ok():
        pads_m = bool(getattr(getattr(path, "spec", None), "pads_m", False))
        raise ContractFailure(case, path.name, p.describe(), res, pads_m) from res.error
    return res


# The stable-ABI STD_TORCH_CHECK's "<function>, <file>[:<line>], " before the message (FV-008), and any
# file name, path or source position elsewhere in the text: a check located in
# scaled_mm_blockwise_sm90_fp8.cu does not name a block-shape problem by being located there.
_ABI_PREFIX = re.compile(r"^\s*[\w:~<>]+, (?:\S*/)?[\w.-]+\.\w+(?::\d+)*, ?")
_SOURCE_EXT = r"(?:cu|cuh|cpp|cc|cxx|c|h|hpp|hh|inl|py|pyx)"
_LOCATIONS = re.compile(
    rf"(?:[\w.~-]*/)*[\w.-]+\.{_SOURCE_EXT}(?::\d+)*\b"  # file.cu:17, a/b/file.hpp
    r"|(?<![\w/])/[\w.~/-]+"  # an absolute path
    r"|\bline \d+\b|\bat \d+:\d+:?"  # 'line 12', 'at 67:23:'
)


def message_of(text: str) -> str:
    """The message of an error's text, lower case, without where it was raised: the stable-ABI prefix
    ``function, /path/file.cu:NN, ``, file names, paths and source positions go (a location says where the
    check is, not what it checked), and so does a C++ backtrace after "Exception raised from"."""
    text = text.split("Exception raised from", 1)[0]
    text = _ABI_PREFIX.sub("", text, count=1)
    return _LOCATIONS.sub(" ", text).lower()


def outcome(case: Case, path: GemmPath, p: BlockScaledProblem) -> Outcome:
    """Run ``path`` on ``case`` applied to ``p`` and classify the result."""
    args, logical = case.make(p)
    try:
        out = path.call(*args)  # compiled paths: each case's dtypes and strides are a new graph
    except Exception as e:  # whatever the path raises is judged by its type and message below
        lines = str(e).strip().splitlines()
        first = lines[0] if lines else ""
        text = f"{type(e).__name__}: {first}"
        said = message_of(str(e))
        if "torch._dynamo" in type(e).__module__ or "BackendCompilerFailed" in type(e).__name__:
            # A compile failure's text is a long trace of the graph break: only its first line counts
            # as telling the caller what is wrong.
            text, said = f"{type(e).__name__} (compile failed)", message_of(first)
        elif type(e).__module__.startswith("triton."):
            # Triton's compiler stopped inside the kernel: its text is a line of the kernel's source and
            # a complaint about the kernel's own types ("Unsupported rhs dtype fp8e4nv" for an fp16 A),
            # not a check of the caller's arguments, so none of it counts as naming the problem.
            text, said = f"{type(e).__name__} (Triton compile failed): {lines[-1] if lines else ''}", ""
        # A CUDA fault is a crash, whatever words its text happens to contain ("misaligned address").
        named = not is_sticky_cuda_error(e) and any(w in said for w in case.words)
        return Outcome("rejected" if named else "unclear-error", text[:300], error=e, args=args)
    if logical.m == 0:
        ok = tuple(out.shape) == (0, logical.n) and out.dtype == logical.out_dtype
        return Outcome(
            "correct" if ok else "silent-wrong",
            f"returned {tuple(out.shape)} {out.dtype}",
            args=args,
            output=out,
        )
    v = judge(out, oracle(logical), logical, path.name)
    if v.ok:
        return Outcome("correct", f"max err/bound {v.max_ratio:.3g}", v.max_ratio)
    return Outcome(
        "silent-wrong",
        f"max err/bound {v.max_ratio:.3g}, {v.bad_elements} of "
        f"{v.shape[0] * v.shape[1]} elements out of bound",
        v.max_ratio,
        args=args,
        output=out,
    )


def predicted_output(failure: BaseException) -> torch.Tensor | None:
    """What the SM90 block-wise kernel returns when it reads every operand as packed (the silent-wrong
    findings' model, :func:`~fp8_verify.subject.cpu_kernel._as_kernel_reads`, measured on an H100), on the
    arguments that reach ``torch.ops._C.cutlass_scaled_mm`` from the failing path: vLLM's wrappers pass
    ``B.T`` and ``Bs.T``, and a path that pads M copies A into a zeroed packed [M', K] buffer and its
    scales into a ones-filled M-major one when M % 4 != 0 (``_padded_cutlass``). None when the failure
    carries no arguments or they would not reach the block-wise kernel."""
    args, out = getattr(failure, "case_args", None), getattr(failure, "output", None)
    if args is None or out is None:
        return None
    a, b, a_s, b_s, _block, out_dtype = args
    m = a.size(0)
    rows = m
    if getattr(failure, "pads_m", False) and m % 4:
        rows = m + 4 - m % 4
        padded = torch.zeros((rows, *a.shape[1:]), dtype=a.dtype, device=a.device)
        padded[:m].copy_(a)
        scales = torch.ones((*a_s.shape[1:], rows), dtype=a_s.dtype, device=a_s.device).permute(-1, -2)
        scales[:m].copy_(a_s)
        a, a_s = padded, scales
    b_op, b_s_op = b.T, b_s.T
    if not uses_blockwise_kernel(rows, b_op.size(1), a_s.numel(), b_s_op.numel()):
        return None
    a8, b8, sa, sb = _as_kernel_reads(a, b_op, a_s, b_s_op)
    return sm90_blockwise_gemm(a8, b8.t(), sa, sb.t(), out_dtype)[:m]


def same_bits(x: torch.Tensor | None, y: torch.Tensor | None) -> bool:
    """``x`` and ``y`` hold the same bits: same shape, dtype and device, every element, NaN equal to NaN
    whatever its payload (the hardware's 0x7FFF and torch's CPU 0x7FC0, as :mod:`fp8_verify.judge.exact`)."""
    if x is None or y is None or x.shape != y.shape or x.dtype != y.dtype or x.device != y.device:
        return False
    ints = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[x.element_size()]
    same = x.contiguous().view(ints) == y.contiguous().view(ints)
    if x.is_floating_point():
        same |= torch.isnan(x) & torch.isnan(y)
    return bool(same.all())
