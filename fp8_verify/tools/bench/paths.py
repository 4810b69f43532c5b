"""Which paths are timed: every registry row with a ``bench`` label (:mod:`fp8_verify.subject.registry`),
bound to the installed vLLM, plus ``always_pad``, the one reference written here. The roles the derived
numbers need -- the baseline, the production path, PR #43706's before and after -- are read from the
rows' facts, so a row added to the registry is timed and compared without a change here."""

from __future__ import annotations

import contextlib
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from ...errors import UsageError
from ...problem import BlockScaledProblem, cdiv
from ...subject import compiled
from ...subject.registry import CUTLASS_SM90, Call, GemmPath, PathSpec, Registry, default
from ...subject.releases import MRule
from ...subject.vllm import load, vllm_op
from ...suite.findings import FINDINGS
from .config import Config

#: The ops a Hopper linear layer calls, newest first: PR #43706 (0.23.0) replaced ``padded_cutlass``
#: (pads M to a multiple of 4 at every M) with ``dynamic_padded_cutlass`` (pads only when M % 4 != 0).
PRODUCTION_OPS = ("dynamic_padded_cutlass", "padded_cutlass")
REFERENCE = "always_pad"  # the bench-only reference baseline (not a path under test)


def round4(m: int) -> int:
    """``M`` rounded up to a multiple of 4: the rows the SM90 kernel of 0.22-0.23 runs on."""
    return cdiv(m, 4) * 4


@dataclass(frozen=True)
class BenchPath:
    """A timed path; ``origin``: ``vllm`` (a registry row) or ``reference`` (written here)."""

    name: str
    label: str  # short label in progress lines
    run: Callable[[BlockScaledProblem], torch.Tensor] | None
    what: str
    origin: str = "vllm"
    reason: str | None = None
    kernel: str = CUTLASS_SM90
    m_rule: MRule = MRule.ANY  # M its kernel takes directly; other M are timed on roundup(M, 4) rows
    pads_m: bool = False  # copies A into roundup(M, 4) rows where M % 4 != 0
    aligned_only: bool = False  # timed only where M % 4 == 0

    @property
    def available(self) -> bool:
        return self.run is not None

    def applies(self, m: int) -> bool:
        """Whether it is timed at ``m``."""
        return self.available and not (self.aligned_only and m % 4)

    def rows(self, m: int) -> int:
        """Rows of A it is given at ``m``: ``roundup(M, 4)`` where its kernel rejects ``m``."""
        return m if self.m_rule.admits(m) else round4(m)

    def m_kernel(self, m: int) -> int:
        """Rows the GEMM kernel runs on at ``m`` (the ``m_kernel`` CSV column)."""
        return round4(m) if self.rows(m) != m or (self.pads_m and m % 4) else m


@dataclass(frozen=True)
class BenchPaths:
    """The paths in table order, the baseline first, and the roles the derived numbers use."""

    paths: dict[str, BenchPath]
    baseline: str  # the kernel alone: the reference rows, and what the others are compared with
    production: str | None  # the compiled path a Hopper model runs (its linear layer's op, compiled)
    production_op: str | None
    eager: dict[str, str]  # op -> the path calling it eagerly
    compiled: dict[str, str]  # op -> the compiled path around it

    def overhead_pairs(self, aligned: bool) -> list[tuple[str, str]]:
        """``(a, b)`` for ``t_a / t_b - 1`` at M of one alignment class.

        ``M % 4 == 0``: every other path ending in the baseline's kernel vs the baseline (the same
        kernel runs: expect 0), ``always_pad`` included (what unconditional padding cost).
        ``M % 4 != 0``: PR #43706's op vs the one it replaced, eager and compiled (both pad: expect
        0); the old op eager and the new op compiled vs the baseline at roundup(M, 4) (the padding's
        own cost)."""
        base = self.paths[self.baseline]
        if aligned:
            return [
                (n, self.baseline)
                for n, bp in self.paths.items()
                if n != self.baseline and bp.kernel == base.kernel
            ]
        new, old = PRODUCTION_OPS
        pairs = [
            (self.eager.get(new), self.eager.get(old)),
            (self.compiled.get(new), self.compiled.get(old)),
            (self.eager.get(old), self.baseline),
            (self.compiled.get(new), self.baseline),
        ]
        return [(a, b) for a, b in pairs if a and b]


def _kernel_alone(spec: PathSpec) -> bool:
    """The baseline's facts: straight to the SM90 CUTLASS kernel, no op, no padding, no compile."""
    return spec.kernel == CUTLASS_SM90 and spec.op is None and not spec.pads_m and not spec.compiled


def _op_name(fn: object) -> str | None:
    """``padded_cutlass`` for ``torch.ops.vllm.padded_cutlass``; None for anything but a vLLM op."""
    qualified = getattr(fn, "_qualified_op_name", "")
    return qualified.removeprefix("vllm::") if qualified.startswith("vllm::") else None


def _what(g: GemmPath) -> str:
    """The row's summary, plus where the bench gives the path more rows than M (its kernel's M rule)."""
    if g.m_rule is MRule.ANY:
        return g.spec.summary
    return f"{g.spec.summary}; the kernel takes {g.m_rule.value} only: other M timed on roundup(M, 4) rows"


def _always_pad(direct: Call) -> Callable[[BlockScaledProblem], torch.Tensor]:
    """Reference, not vLLM code: vLLM's padding branch (zeros + copy of A, ones + copy of the
    M-major scales, GEMM, row slice) taken for every M, as ``_padded_cutlass`` did before it grew
    its ``has_pad`` early return. What skipping the padding can save, at most."""

    def run(p: BlockScaledProblem) -> torch.Tensor:
        m, m4 = p.m, round4(p.m)
        qx = torch.zeros((m4, p.k), device=p.a.device, dtype=p.a.dtype)
        qx[:m].copy_(p.a)
        sx = torch.ones((p.a_scale.shape[1], m4), device=p.a.device, dtype=p.a_scale.dtype)
        sx = sx.permute(1, 0)
        sx[:m].copy_(p.a_scale)
        return direct(qx, p.b, sx, p.b_scale, list(p.block), p.out_dtype)[:m]

    return run


def production_op() -> str | None:
    """The padding op (``torch.ops.vllm.<op>``) vLLM's linear layer calls on Hopper in the installed
    release, or None where it calls the kernel directly (0.24+): read from
    ``CutlassFp8BlockScaledMMKernel.apply_block_scaled_mm``'s source, else the newest op registered."""
    return _op_in_source() or next((o for o in PRODUCTION_OPS if vllm_op(o)), None)


def _op_in_source() -> str | None:
    for name in load().modules:
        mod = sys.modules.get(name)
        for obj in vars(mod).values() if mod else ():
            if inspect.isclass(obj) and "apply_block_scaled_mm" in vars(obj) and "Cutlass" in obj.__name__:
                with contextlib.suppress(OSError, TypeError):
                    src = inspect.getsource(obj.apply_block_scaled_mm)
                    for op in PRODUCTION_OPS:
                        if f"torch.ops.vllm.{op}" in src:
                            return op
    return None


def _skip_fv001(spec: PathSpec, cfg: Config, release: str | None, backend: str) -> str | None:
    """Why a row FV-001 covers is not timed by default (None: timed)."""
    f = FINDINGS["FV-001"]
    if cfg.include_dynamic_compiled or not f.where(spec):
        return None
    if f.applies(release, backend):
        return f"skipped: {f.id}, {f.title} (pass --include-dynamic-compiled to try)"
    return "skipped by default (pass --include-dynamic-compiled to try)"


def bench_paths(cfg: Config, registry: Registry | None = None) -> BenchPaths:
    """Every bench path (available, or with its reason) and the roles read from the rows."""
    reg = registry or default()
    s = load()
    backend = compiled.default_backend(s.kernel == "real")
    rows = [spec for spec in reg.specs() if spec.bench is not None]
    baseline = next((spec.name for spec in rows if _kernel_alone(spec)), None)
    if baseline is None:
        raise UsageError("bench: no timed registry row is the SM90 kernel alone (the baseline)")
    out: dict[str, BenchPath] = {}
    eager: dict[str, str] = {}
    compiled_by_op: dict[str, str] = {}
    for spec in sorted(rows, key=lambda spec: spec.name != baseline):  # the baseline first
        g = reg.get(spec.name)
        run, reason = (g.run if g.available else None), g.reason
        skip = _skip_fv001(spec, cfg, s.vllm_version, backend) if run is not None else None
        if skip:
            run, reason = None, skip
        out[spec.name] = BenchPath(
            spec.name,
            spec.bench or spec.name,
            run,
            _what(g),
            reason=reason,
            kernel=spec.kernel,
            m_rule=g.m_rule,
            pads_m=spec.pads_m,
        )
        if spec.op and not spec.compiled:
            eager.setdefault(spec.op, spec.name)
        op = _op_name(g.inner) if spec.compiled else None
        if op:
            compiled_by_op.setdefault(op, spec.name)
    base = reg.get(baseline)
    out[REFERENCE] = BenchPath(
        REFERENCE,
        "alw",
        _always_pad(base.call) if base.call is not None else None,
        "REFERENCE, not vLLM code: the padding branch of _padded_cutlass taken even at M % 4 == 0 "
        "(as before its has_pad check); aligned M only",
        origin="reference",
        reason=base.reason,
        kernel=base.kernel,
        pads_m=True,
        aligned_only=True,
    )
    if cfg.paths is not None:
        unknown = [x for x in cfg.paths if x not in out]
        if unknown:
            raise UsageError(f"bench: unknown path(s) {', '.join(unknown)}; known: {', '.join(out)}")
        for name, bp in list(out.items()):
            if name not in cfg.paths and name != baseline and bp.available:
                out[name] = replace(bp, run=None, reason="not selected (--paths)")
    op = production_op()
    # No padding op (0.24+): the linear layer calls the kernel directly, as the baseline does.
    prod = compiled_by_op.get(op) if op else baseline
    return BenchPaths(out, baseline, prod, op if prod else None, eager, compiled_by_op)
