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

    def applies(self, s: Subject, compile_backend: str | None = None) -> bool:
        if s.vllm_version not in self.versions or s.backend not in self.backends:
            return False
        return self.compile_backends is None or compile_backend in self.compile_backends

    def to_dict(self) -> dict:
        return {"id": self.id, "title": self.title, "paths": list(self.paths), "repro": self.repro}


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
    )
}


def get(fid: str) -> Finding:
    if fid not in FINDINGS:
        raise KeyError(f"unknown finding {fid!r}; known: {', '.join(FINDINGS)}")
    return FINDINGS[fid]
