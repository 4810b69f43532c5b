"""Upstream defects the suite has found. Each has an entry in FINDINGS.md with a standalone repro under
``repros/``; the property that finds it stays in the suite, marked ``@pytest.mark.finding(ID)``, and is a
strict xfail where :meth:`Finding.applies` -- so a fix upstream turns it into an XPASS failure that says
to retire the mark."""

from __future__ import annotations

from dataclasses import dataclass

from .subject import Subject


@dataclass(frozen=True)
class Finding:
    id: str
    title: str
    paths: tuple[str, ...]
    versions: tuple[str, ...]  # vLLM versions where it was seen
    repro: str  # path of the standalone repro, relative to the repository root
    backends: tuple[str, ...] = ("real", "double")  # where the property shows it
    compile_backends: tuple[str, ...] | None = None  # torch.compile backends where it shows
    # contract cases (tests/test_contract.py) it covers -> the M alignments ("aligned": M % 4 == 0,
    # "unaligned") where it shows: unaligned M goes through vLLM's padding, which copies A and its
    # scales into fresh canonical buffers and so hides the A-side defects.
    cases: dict[str, tuple[str, ...]] | None = None

    # A defect of the SM90 kernel itself. The CPU double models the kernel of vLLM 0.23.0 whatever
    # vLLM's Python runs above it, so on the double such a finding applies to every release.
    kernel: bool = False

    def applies(self, s: Subject, compile_backend: str | None = None) -> bool:
        if s.backend not in self.backends:
            return False
        if s.vllm_version not in self.versions and not (self.kernel and s.backend == "double"):
            return False
        return self.compile_backends is None or compile_backend in self.compile_backends

    def covers(self, params: dict) -> bool:
        """Whether a parametrized test's params fall under this finding."""
        if "path" in params and params["path"] not in self.paths:
            return False
        if self.cases is None:
            return True
        return (
            params.get("case") in self.cases and params.get("m_mod", "aligned") in self.cases[params["case"]]
        )

    def to_dict(self) -> dict:
        return {"id": self.id, "title": self.title, "paths": list(self.paths), "repro": self.repro}


ALL_EAGER = ("bypass", "padded", "dynamic_eager", "compiled_op")
ALIGNED, BOTH = ("aligned",), ("aligned", "unaligned")

FINDINGS: dict[str, Finding] = {
    f.id: f
    for f in (
        Finding(
            "FV-001",
            "_dynamic_padded_cutlass does not compile with M dynamic: torch.cond raises "
            "'cond_true might be aliasing the input or the output!'",
            ("dynamic_compiled",),
            ("0.23.0",),
            "repros/fv001_dynamic_compiled_aliasing.py",
            compile_backends=("aot_eager", "inductor"),
        ),
        Finding(
            "FV-002",
            "_dynamic_padded_cutlass under torch.compile guards on M % 4: the torch.cond does not keep "
            "both branches, and each alignment class compiles its own graph",
            ("dynamic_compiled",),
            ("0.23.0",),
            "repros/fv002_dynamic_compiled_recompiles.py",
        ),
        Finding(
            "FV-003",
            "The SM90 block-wise kernel ignores the row stride of A (and of B): a sliced or strided "
            "activation is accepted and read as if packed, giving wrong results silently",
            ALL_EAGER,
            ("0.23.0",),
            "repros/fv003_strided_activation.py",
            cases={"a_sliced": ALIGNED, "a_row_strided": ALIGNED, "b_sliced": BOTH},
            kernel=True,
        ),
        Finding(
            "FV-004",
            "The SM90 block-wise kernel accepts activation scales that are not packed M-major "
            "(row-major, or a padded pitch) and reads them as if they were: wrong results, no error",
            ALL_EAGER,
            ("0.23.0",),
            "repros/fv004_activation_scale_layout.py",
            cases={"a_scale_row_major": ALIGNED, "a_scale_pitch": ALIGNED},
            kernel=True,
        ),
        Finding(
            "FV-005",
            "The SM90 block-wise kernel accepts weight scales that are not packed K-major and reads "
            "them as if they were: wrong results, no error",
            ALL_EAGER,
            ("0.23.0",),
            "repros/fv005_weight_scale_layout.py",
            cases={"b_scale_col_major": BOTH, "b_scale_pitch": BOTH},
            kernel=True,
        ),
        Finding(
            "FV-006",
            "The block-wise paths do not check the activation dtype: float8_e5m2 (or float16) "
            "activations are accepted and their bytes read as e4m3: wrong results, no error",
            ALL_EAGER,
            ("0.23.0",),
            "repros/fv006_activation_dtype.py",
            cases={"a_e5m2": BOTH, "a_fp16": BOTH},
            kernel=True,
        ),
        Finding(
            "FV-007",
            "An output dtype other than bf16/fp16 fails a bare `assert` in "
            "_custom_ops.cutlass_scaled_mm: AssertionError with no message",
            ALL_EAGER,
            ("0.22.1", "0.23.0", "0.33.0"),
            "repros/fv007_out_dtype_message.py",
            cases={"out_fp32": BOTH},
        ),
        Finding(
            "FV-008",
            "The SM90 build's checks on B's layout and on the scales' dtype fail with no message: the "
            "caller sees only `function, file:line, ` (stable-ABI STD_TORCH_CHECK without text)",
            ALL_EAGER,
            ("0.23.0",),
            "repros/fv008_messageless_checks.py",
            cases={"b_col_major": BOTH, "scales_fp64": BOTH, "scales_bf16": BOTH},
            kernel=True,
        ),
        Finding(
            "FV-009",
            "An empty batch (M = 0) fails inside CUTLASS with `Error Internal` (after dumping TMA "
            "descriptors to stdout) instead of returning an empty [0, N] output",
            ALL_EAGER,
            ("0.23.0",),
            "repros/fv009_empty_batch.py",
            cases={"m_zero": BOTH},
            kernel=True,
        ),
        Finding(
            "FV-010",
            "N or K not a multiple of 16: _custom_ops.cutlass_scaled_mm sends the call to the Triton "
            "fallback for per-tensor/per-channel scales, which stops at a bare `assert "
            "scale_a.shape[1] == 1` (AssertionError with no message) on block scales",
            ALL_EAGER,
            ("0.22.1", "0.23.0", "0.33.0"),
            "repros/fv010_not_multiple_of_16.py",
            cases={"n_not16": BOTH, "k_not16": BOTH},
        ),
    )
}


def get(fid: str) -> Finding:
    if fid not in FINDINGS:
        raise KeyError(f"unknown finding {fid!r}; known: {', '.join(FINDINGS)}")
    return FINDINGS[fid]
