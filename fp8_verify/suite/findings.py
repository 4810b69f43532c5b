"""Upstream defects the suite has found, declared once. Each has an entry in FINDINGS.md with a standalone
repro under ``repros/``; the property that finds it stays in the suite and, on the releases that have the
defect, is a *strict, signature-checked* xfail:

* every failing example fails the way the finding says (:class:`Signature`: the exception's type and
  message, where the error was raised, and for a silent wrong answer the very answer the finding
  predicts) -> xfailed, with the finding's id in the report;
* an example fails another way -> a failure (a new bug hiding in a known cell is not "expected");
* it passes -> a failure that says the defect is fixed on this release (set ``first_fixed``).

So the release ranges cannot go stale: a release that fixes a defect turns its xfail red.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any, Protocol

from ..subject.registry import CUTLASS_SM90, DEEPGEMM, GEMM, TRITON, PathSpec
from ..subject.releases import PACKED_OPERANDS_CHECKED, Span
from .contract import predicted_output, same_bits


class Matcher(Protocol):
    """How a finding recognises its failure: :class:`Signature`, or :class:`ByCase` for one per case."""

    def matches(self, exc: BaseException | None) -> bool: ...

    def describe(self) -> str: ...


@dataclass(frozen=True)
class Prediction:
    """A check of a failure beyond its text: ``holds(exc)`` says whether ``exc`` carries what the finding
    predicts (for a silent wrong answer: that very answer); ``text`` says what, for reports."""

    text: str
    holds: Callable[[BaseException], bool]


@dataclass(frozen=True)
class Signature:
    """What a finding's failure looks like: an exception whose type (or a base class) is named
    ``exception`` and whose text matches ``message`` (a regular expression, searched); where
    ``raised_in`` = (file path ending, function) is given, the error it was raised from (or itself) was
    raised in that function of that file (its innermost traceback frame: a bare ``assert`` has no other
    name); where ``predicts`` is given, the failure carries what it predicts."""

    exception: str
    message: str = ""
    raised_in: tuple[str, str] | None = None
    predicts: Prediction | None = None

    def matches(self, exc: BaseException | None) -> bool:
        """True when ``exc`` or an exception it was raised from is this failure; for an exception group
        (several failing examples) every exception in it must be."""
        if isinstance(exc, BaseExceptionGroup):
            return all(self.matches(e) for e in exc.exceptions)
        while exc is not None:
            if self._is(exc):
                return True
            exc = exc.__cause__
        return False

    def _is(self, exc: BaseException) -> bool:
        names = {t.__name__ for t in type(exc).__mro__}
        if self.exception not in names or not re.search(self.message, str(exc), re.S):
            return False
        if self.raised_in is not None and raised_in(exc.__cause__ or exc) != self.raised_in:
            return False
        return self.predicts is None or self.predicts.holds(exc)

    def describe(self) -> str:
        text = f"{self.exception} matching /{self.message}/" if self.message else self.exception
        if self.raised_in is not None:
            text += f" raised in {self.raised_in[1]} ({self.raised_in[0]})"
        return text + (f", {self.predicts.text}" if self.predicts else "")


@dataclass(frozen=True)
class ByCase:
    """A contract finding that fails differently per case (another check, another compiler complaint):
    one :class:`Signature` per case, chosen by the failing cell's case."""

    signatures: tuple[tuple[str, Signature], ...]

    def matches(self, exc: BaseException | None) -> bool:
        if isinstance(exc, BaseExceptionGroup):
            return all(self.matches(e) for e in exc.exceptions)
        sig = dict(self.signatures).get(_case_of(exc))
        return sig is not None and sig.matches(exc)

    def describe(self) -> str:
        return "; ".join(f"{case}: {sig.describe()}" for case, sig in self.signatures)


def _case_of(exc: BaseException | None) -> str | None:
    """The contract case a failure is about (``ContractFailure.case``), if any."""
    while exc is not None:
        case = getattr(exc, "case", None)
        if case is not None:
            return getattr(case, "name", case)
        exc = exc.__cause__
    return None


def raised_in(exc: BaseException) -> tuple[str, str] | None:
    """(file path ending, function) of the innermost frame of ``exc``'s traceback, the ending being the
    path's last two parts (``vllm/_custom_ops.py``: the same in a wheel or an editable checkout)."""
    tb = exc.__traceback__
    if tb is None:
        return None
    while tb.tb_next is not None:
        tb = tb.tb_next
    code = tb.tb_frame.f_code
    return "/".join(PurePath(code.co_filename).parts[-2:]), code.co_name


def _traces_dynamic_cond(p: PathSpec) -> bool:
    return p.traces == "_dynamic_padded_cutlass" and p.dynamic_m


def _ends_in_cutlass(p: PathSpec) -> bool:
    return p.family == GEMM and p.kernel == CUTLASS_SM90


def _is_triton_block(p: PathSpec) -> bool:
    return p.family == GEMM and p.kernel == TRITON


# How the contract property says a cell failed (fp8_verify.suite.contract.ContractFailure).
def _contract(kind: str, text: str = "", **kw: Any) -> Signature:
    return Signature("ContractFailure", rf"\b{kind}\b" + (f": {text}" if text else ""), **kw)


def _bare_assert(file: str, function: str) -> Signature:
    """An ``assert`` without a message, in ``function`` of ``file``: ``AssertionError()``."""
    return _contract("unclear-error", r"AssertionError: ?(?:\(|$)", raised_in=(file, function))


def _messageless_check(function: str, file: str) -> Signature:
    """A stable-ABI ``STD_TORCH_CHECK`` without text, located in ``function`` of ``file``."""
    where = rf"{function}, (?:\S*/)?{re.escape(file)}:\d+, ?$"
    return _contract("unclear-error", rf"RuntimeError: {where}")


def _deepgemm_assert(file: str, condition: str) -> Signature:
    """DeepGEMM's ``DG_HOST_ASSERT`` in ``file``: its only text is the C++ condition (a regex here)."""
    where = rf"Assertion error \((?:\S*/)?{re.escape(file)}:\d+\): "
    return _contract("unclear-error", rf"RuntimeError: {where}{condition}")


_FP4 = r"ab\.scalar_type\(\) == kPackedFP4 and \(?arch_major == 10"  # 0.34: "(arch_major == 10 or ... 12)"
_SF_K = r"sf\.size\(-1\) == ceil_div\(k, gran_k"


def _is_deepgemm(p: PathSpec) -> bool:
    return p.family == GEMM and p.kernel == DEEPGEMM


def _triton_complaint(text: str) -> Signature:
    """Triton's compiler stopping inside the kernel with this complaint (the contract keeps its last line)."""
    return _contract("unclear-error", rf"CompilationError \(Triton compile failed\): {text}")


def _reads_as_packed(exc: BaseException) -> bool:
    return same_bits(getattr(exc, "output", None), predicted_output(exc))


#: A silent wrong answer that is *the* wrong answer of the SM90 kernel reading its operands as packed:
#: not any wrong answer, so that a second defect in the same cell fails the run.
SILENT_WRONG = _contract(
    "silent-wrong",
    predicts=Prediction(
        "the output bit for bit what the SM90 kernel computes reading A, B and their scales as packed",
        _reads_as_packed,
    ),
)


@dataclass(frozen=True)
class Finding:
    """One upstream defect: where it shows (properties, paths, contract cases, releases) and how."""

    id: str
    title: str
    properties: tuple[str, ...]  # the test functions that find it
    where: Callable[[PathSpec], bool]  # the paths it shows on
    releases: Span  # first bad (inclusive) to first fixed (exclusive); until=None: not fixed yet
    signature: Matcher
    repro: str  # the standalone repro, relative to the repository root
    kernel: bool = False  # a defect of the SM90 kernel itself (the CPU double models it)
    cases: tuple[str, ...] = ()  # contract cases it covers (test_rejected_clearly_or_right)
    # Cases about A or its scales: for M % 4 != 0 vLLM's padding (0.22-0.23) copies those into fresh
    # packed buffers, so a path that pads hides them there.
    hidden_by_padding: tuple[str, ...] = ()
    compile_backends: tuple[str, ...] | None = None  # torch.compile backends where it shows
    seen_real: tuple[str, ...] = ()  # releases where the property failed this way on the real kernel

    def applies(self, release: str | None, compile_backend: str | None) -> bool:
        """Whether the installed release has the defect (on either kernel: the CPU double models the
        SM90 kernel's defects, measured on the real one)."""
        if release not in self.releases:
            return False
        return self.compile_backends is None or compile_backend in self.compile_backends

    def covers(self, prop: str, path: PathSpec | None, params: Mapping[str, Any]) -> bool:
        """Whether a test item (property, path, parameters) falls under this finding."""
        if prop not in self.properties or (path is not None and not self.where(path)):
            return False
        if not self.cases:
            return True
        case = params.get("case")
        if case not in self.cases:
            return False
        padded = path is not None and path.pads_m and params.get("m_mod") == "unaligned"
        return not (padded and case in self.hidden_by_padding)

    @property
    def first_bad(self) -> str | None:
        return self.releases.first

    @property
    def first_fixed(self) -> str | None:
        return self.releases.until

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "first_bad": self.first_bad,
            "first_fixed": self.first_fixed,
            "signature": self.signature.describe(),
            "repro": self.repro,
            "kernel_defect": self.kernel,
            "seen_on_real_kernel": list(self.seen_real),
        }


CONTRACT = ("test_rejected_clearly_or_right",)
#: The SM90 kernel's defects were first measured on 0.23.0 and are unchanged in the earliest release
#: tested (0.22.0) and, on the H100, in 0.24.0; no release fixes them yet.
KERNEL_SPAN = Span("0.22.0")

FINDINGS: dict[str, Finding] = {
    f.id: f
    for f in (
        Finding(
            "FV-001",
            "_dynamic_padded_cutlass does not compile with M dynamic: torch.cond raises "
            "'cond_true might be aliasing the input or the output!'",
            ("test_within_bound", "test_bit_exact", "test_agrees_with_kernel", *CONTRACT),
            _traces_dynamic_cond,
            Span("0.23.0", "0.24.0"),
            Signature("BackendCompilerFailed", "might be aliasing the input or the output"),
            "repros/fv001_dynamic_compiled_aliasing.py",
            compile_backends=("aot_eager", "inductor"),
            seen_real=("0.23.0",),
        ),
        Finding(
            "FV-002",
            "_dynamic_padded_cutlass under torch.compile guards on M % 4: the torch.cond does not keep "
            "both branches, and each alignment class compiles its own graph",
            ("test_one_graph_for_every_m",),
            _traces_dynamic_cond,
            Span("0.23.0", "0.24.0"),
            Signature("AssertionError", r"graphs for M in .* \(a guard on M or M % 4 recompiles\)"),
            "repros/fv002_dynamic_compiled_recompiles.py",
            seen_real=("0.23.0",),
        ),
        Finding(
            "FV-003",
            "The SM90 block-wise kernel ignores the row stride of A (and of B): a sliced or strided "
            "activation is accepted and read as if packed, giving wrong results silently",
            CONTRACT,
            _ends_in_cutlass,
            Span("0.22.0", PACKED_OPERANDS_CHECKED.first),
            SILENT_WRONG,
            "repros/fv003_strided_activation.py",
            kernel=True,
            cases=("a_sliced", "a_row_strided", "b_sliced"),
            hidden_by_padding=("a_sliced", "a_row_strided"),
            seen_real=("0.22.1", "0.23.0", "0.24.0", "0.26.0"),
        ),
        Finding(
            "FV-004",
            "The SM90 block-wise kernel accepts activation scales that are not packed M-major "
            "(row-major, or a padded pitch) and reads them as if they were: wrong results, no error",
            CONTRACT,
            _ends_in_cutlass,
            KERNEL_SPAN,
            SILENT_WRONG,
            "repros/fv004_activation_scale_layout.py",
            kernel=True,
            cases=("a_scale_row_major", "a_scale_pitch"),
            hidden_by_padding=("a_scale_row_major", "a_scale_pitch"),
            seen_real=("0.22.1", "0.23.0", "0.24.0", "0.26.0"),
        ),
        Finding(
            "FV-005",
            "The SM90 block-wise kernel accepts weight scales that are not packed K-major and reads "
            "them as if they were: wrong results, no error",
            CONTRACT,
            _ends_in_cutlass,
            KERNEL_SPAN,
            SILENT_WRONG,
            "repros/fv005_weight_scale_layout.py",
            kernel=True,
            cases=("b_scale_col_major", "b_scale_pitch"),
            seen_real=("0.22.1", "0.23.0", "0.24.0", "0.26.0"),
        ),
        Finding(
            "FV-006",
            "The block-wise paths do not check the activation dtype: float8_e5m2 (or float16) "
            "activations are accepted and their bytes read as e4m3: wrong results, no error",
            CONTRACT,
            _ends_in_cutlass,
            KERNEL_SPAN,
            SILENT_WRONG,
            "repros/fv006_activation_dtype.py",
            kernel=True,
            cases=("a_e5m2", "a_fp16"),
            seen_real=("0.22.1", "0.23.0", "0.24.0", "0.26.0"),
        ),
        Finding(
            "FV-007",
            "An output dtype other than bf16/fp16 fails a bare `assert` in "
            "_custom_ops.cutlass_scaled_mm: AssertionError with no message",
            CONTRACT,
            _ends_in_cutlass,
            Span("0.22.0"),
            _bare_assert("vllm/_custom_ops.py", "cutlass_scaled_mm"),
            "repros/fv007_out_dtype_message.py",
            cases=("out_fp32",),
            seen_real=("0.22.1", "0.23.0", "0.24.0", "0.26.0"),
        ),
        Finding(
            "FV-008",
            "The SM90 build's checks on B's layout and on the scales' dtype fail with no message: the "
            "caller sees only `function, file:line, ` (stable-ABI STD_TORCH_CHECK without text)",
            CONTRACT,
            _ends_in_cutlass,
            KERNEL_SPAN,
            ByCase(
                (
                    ("b_col_major", _messageless_check("cutlass_scaled_mm", "scaled_mm_entry.cu")),
                    ("scales_fp64", _messageless_check("dispatch_scaled_mm", "scaled_mm_helper.hpp")),
                    ("scales_bf16", _messageless_check("dispatch_scaled_mm", "scaled_mm_helper.hpp")),
                )
            ),
            "repros/fv008_messageless_checks.py",
            kernel=True,
            cases=("b_col_major", "scales_fp64", "scales_bf16"),
            seen_real=("0.22.1", "0.23.0", "0.24.0", "0.26.0"),
        ),
        Finding(
            "FV-009",
            "An empty batch (M = 0) fails inside CUTLASS with `Error Internal` (after dumping TMA "
            "descriptors to stdout) instead of returning an empty [0, N] output",
            CONTRACT,
            _ends_in_cutlass,
            KERNEL_SPAN,
            _contract("unclear-error", r"RuntimeError: .*Error Internal"),
            "repros/fv009_empty_batch.py",
            kernel=True,
            cases=("m_zero",),
            seen_real=("0.22.1", "0.23.0", "0.24.0", "0.26.0"),
        ),
        Finding(
            "FV-010",
            "N or K not a multiple of 16: _custom_ops.cutlass_scaled_mm sends the call to the Triton "
            "fallback for per-tensor/per-channel scales, which stops at a bare `assert "
            "scale_a.shape[1] == 1` (AssertionError with no message) on block scales",
            CONTRACT,
            _ends_in_cutlass,
            Span("0.22.0"),
            _bare_assert("compressed_tensors/triton_scaled_mm.py", "triton_scaled_mm"),
            "repros/fv010_not_multiple_of_16.py",
            cases=("n_not16", "k_not16"),
            seen_real=("0.22.1", "0.23.0", "0.24.0", "0.26.0"),
        ),
        Finding(
            "FV-011",
            "vLLM's Triton block-FP8 GEMM (w8a8_triton_block_scaled_mm) checks its inputs with bare "
            "asserts: a non-contiguous activation, or activation scales of the wrong shape, fail with an "
            "AssertionError with no message",
            CONTRACT,
            _is_triton_block,
            Span("0.22.0"),
            _bare_assert("utils/fp8_utils.py", "w8a8_triton_block_scaled_mm"),
            "repros/fv011_triton_bare_asserts.py",
            cases=("a_sliced", "a_row_strided", "a_scale_short"),
            seen_real=("0.22.1", "0.23.0", "0.24.0", "0.26.0"),
        ),
        Finding(
            "FV-012",
            "vLLM's Triton block-FP8 GEMM does not check dtypes: an fp16 activation or fp64 scales stop "
            "inside Triton's compiler (CompilationError at a line of the kernel: 'Unsupported rhs dtype "
            "fp8e4nv', blaming the weight, or a loop-carried accumulator turned fp64)",
            CONTRACT,
            _is_triton_block,
            Span("0.22.0"),
            ByCase(
                (
                    ("a_fp16", _triton_complaint("Unsupported rhs dtype fp8e4nv")),
                    (
                        "scales_fp64",
                        _triton_complaint(
                            r'AssertionError\("Loop-carried variable accumulator has initial type '
                            r"<[^>]*fp32> but is re-assigned to <[^>]*fp64> in loop"
                        ),
                    ),
                )
            ),
            "repros/fv012_triton_dtype_compile_error.py",
            cases=("a_fp16", "scales_fp64"),
            seen_real=("0.22.1", "0.23.0", "0.24.0", "0.26.0"),
        ),
        Finding(
            "FV-013",
            "vLLM's Triton block-FP8 GEMM is not batch invariant on Hopper: its tuned configs launch "
            "BLOCK_SIZE_M 16 up to 128 rows and 64 above (DeepSeek-V3's shapes on an H100), and the same "
            "row gets other bits in a batch of 1-128 than in a batch of 256 or more",
            ("test_batch_invariant_across_configs",),
            _is_triton_block,
            Span("0.22.0"),
            Signature("AssertionError", r"is not batch invariant: the first \d+ rows alone"),
            "repros/fv013_triton_batch_variance.py",
            seen_real=("0.23.0",),
        ),
        Finding(
            "FV-014",
            "DeepGEMM's GEMM, as vLLM calls it (torch.ops.vllm.fp8_gemm_nt_op), rejects wrong inputs with "
            "host asserts whose only text is a C++ condition: an e5m2 or fp16 activation reads "
            "'ab.scalar_type() == kPackedFP4 and arch_major == 10' (FP4, Blackwell), scales of a wrong "
            "shape 'sf.size(-1) == ceil_div(k, gran_k * ...)'; a K not a multiple of 16 passes them and "
            "fails in the CUDA driver ('CUDA_ERROR_INVALID_VALUE, invalid argument', seen on an H100)",
            CONTRACT,
            _is_deepgemm,
            Span("0.23.0"),
            ByCase(
                (
                    *((c, _deepgemm_assert("utils/layout.hpp", _FP4)) for c in ("a_e5m2", "a_fp16")),
                    *(
                        (c, _deepgemm_assert("utils/layout.hpp", _SF_K))
                        for c in ("a_scale_short", "block_128x64")
                    ),
                    (
                        "block_64x128",
                        _deepgemm_assert("utils/layout.hpp", r"sf\.size\(-2\) == ceil_div\(mn, gran_mn\)"),
                    ),
                    (
                        "k_not16",
                        _contract(
                            "unclear-error",
                            r"RuntimeError: CUDA driver error "
                            r"\((?:\S*/)?jit_kernels/impls/runtime_utils\.hpp:\d+\): "
                            r"1 \(CUDA_ERROR_INVALID_VALUE, invalid argument\)",
                        ),
                    ),
                )
            ),
            "repros/fv014_deepgemm_unclear_checks.py",
            cases=("a_e5m2", "a_fp16", "a_scale_short", "block_64x128", "block_128x64", "k_not16"),
            seen_real=("0.23.0",),
        ),
    )
}


def get(fid: str) -> Finding:
    if fid not in FINDINGS:
        raise KeyError(f"unknown finding {fid!r}; known: {', '.join(FINDINGS)}")
    return FINDINGS[fid]


def for_item(
    prop: str,
    path: PathSpec | None,
    params: Mapping[str, Any],
    release: str | None,
    compile_backend: str | None,
) -> tuple[Finding, ...]:
    """The findings a test item is expected to fail with on this release (a cell may have several: a
    compiled path that does not compile, and a layout the kernel misreads once it does)."""
    return tuple(
        f for f in FINDINGS.values() if f.covers(prop, path, params) and f.applies(release, compile_backend)
    )
