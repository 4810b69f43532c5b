"""Upstream defects the suite has found, declared once. Each has an entry in FINDINGS.md with a standalone
repro under ``repros/``; the property that finds it stays in the suite and, on the releases that have the
defect, is a *strict, signature-checked* xfail:

* the property fails the way the finding says (:class:`Signature`: the exception's type and message)
  -> xfailed, with the finding's id in the report;
* it fails another way -> a failure (a new bug hiding in a known cell is not "expected");
* it passes -> a failure that says the defect is fixed on this release (set ``first_fixed``).

So the release ranges cannot go stale: a release that fixes a defect turns its xfail red.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..subject.registry import CUTLASS_SM90, TRITON, PathSpec
from ..subject.releases import PACKED_OPERANDS_CHECKED, Span


@dataclass(frozen=True)
class Signature:
    """What a finding's failure looks like: an exception whose type (or a base class) is named
    ``exception`` and whose text matches ``message`` (a regular expression, searched)."""

    exception: str
    message: str = ""

    def matches(self, exc: BaseException | None) -> bool:
        """True when ``exc`` or an exception it was raised from is this failure; for an exception group
        (several failing examples) every exception in it must be."""
        if isinstance(exc, BaseExceptionGroup):
            return all(self.matches(e) for e in exc.exceptions)
        while exc is not None:
            names = {t.__name__ for t in type(exc).__mro__}
            if self.exception in names and re.search(self.message, str(exc), re.S):
                return True
            exc = exc.__cause__
        return False

    def describe(self) -> str:
        return f"{self.exception} matching /{self.message}/" if self.message else self.exception


def _traces_dynamic_cond(p: PathSpec) -> bool:
    return p.traces == "_dynamic_padded_cutlass" and p.dynamic_m


def _ends_in_cutlass(p: PathSpec) -> bool:
    return p.kernel == CUTLASS_SM90


def _is_triton_block(p: PathSpec) -> bool:
    return p.kernel == TRITON


# How the contract property says a cell failed (fp8_verify.suite.contract.ContractFailure).
def _contract(kind: str, text: str = "") -> Signature:
    return Signature("ContractFailure", rf"\b{kind}\b" + (f": {text}" if text else ""))


SILENT_WRONG = _contract("silent-wrong")
BARE_ASSERT = _contract("unclear-error", r"AssertionError: ?\(|AssertionError: ?$")


@dataclass(frozen=True)
class Finding:
    """One upstream defect: where it shows (properties, paths, contract cases, releases) and how."""

    id: str
    title: str
    properties: tuple[str, ...]  # the test functions that find it
    where: Callable[[PathSpec], bool]  # the paths it shows on
    releases: Span  # first bad (inclusive) to first fixed (exclusive); until=None: not fixed yet
    signature: Signature
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
            BARE_ASSERT,
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
            _contract("unclear-error", r"RuntimeError: \w+, \S+:\d+, ?$"),
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
            BARE_ASSERT,
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
            BARE_ASSERT,
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
            _contract("unclear-error", r"CompilationError \(Triton compile failed\)"),
            "repros/fv012_triton_dtype_compile_error.py",
            cases=("a_fp16", "scales_fp64"),
            seen_real=("0.22.1", "0.23.0", "0.24.0", "0.26.0"),
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
