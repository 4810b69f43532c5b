"""The paths under test: one :class:`PathSpec` row per way of running the block-FP8 GEMM, holding every
fact the suite knows about it. Properties, findings, failure artifacts, bench, mutants, calibration and
the contract read these rows; nothing else keeps a list of path names.

A row says how to find the path in the installed vLLM (or why it is absent, naming the releases that
have it), how to call it, whether it is compiled, which kernel it ends in (paths of one kernel must agree
bit for bit, and the bit-exact emulation judges the SM90 CUTLASS ones), the M rule that kernel applies
on the installed release, the repro snippet written into failure artifacts, and the bench label.
Adding a path -- a new release's route, a user's kernel (``--path NAME=module:function``) -- is one row.

Every call takes vLLM's positional arguments ``(a, b, a_scale, b_scale, block, out_dtype)``: A [M, K]
e4m3 row-major, B [N, K] e4m3, As [M, ceil(K/128)] fp32 M-major, Bs [ceil(N/128), ceil(K/128)] fp32.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch

from ..problem import BlockScaledProblem
from . import compiled
from .releases import DYNAMIC_PADDED_CUTLASS, PADDED_CUTLASS, MRule, kernel_m_rule
from .vllm import Subject, load, vllm_op

Call = Callable[..., torch.Tensor]  # (a, b, a_scale, b_scale, block, out_dtype) -> out
Locate = Callable[[Subject], "Call | str"]  # the callable, or why this vLLM lacks it

CUTLASS_SM90 = "cutlass-sm90"  # the SM90 block-wise CUTLASS kernel, torch.ops._C.cutlass_scaled_mm
TRITON = "triton"  # vLLM's Triton block-FP8 kernel
EXTERNAL = "external"  # a user's callable (--path NAME=module:function): judged by the bound only


@dataclass(frozen=True)
class PathSpec:
    """One row of the registry: what a path is, independent of what is installed."""

    name: str
    summary: str  # what runs, for `fp8-verify env`, reports and docs
    locate: Locate  # the callable (compiled paths: the one torch.compile wraps)
    compiled: bool = False
    dynamic_m: bool = True  # compiled paths: M marked dynamic (one graph for every M), else a graph per M
    compile_backend: str | None = None  # compiled paths: a fixed torch.compile backend (default: per kernel)
    traces: str | None = None  # compiled paths: the vLLM function whose body Dynamo traces
    kernel: str = CUTLASS_SM90
    m_rule: Callable[[Subject], MRule] = lambda s: MRule.ANY
    pads_m: bool = False  # copies A and its scales into fresh packed buffers when M % 4 != 0
    repro: str = ""  # Python with vLLM's names only: a, b, a_s, b_s, block, out_dtype -> out; {module}
    bench: str | None = None  # short label in bench tables; None: not timed
    op: str | None = None  # the torch.ops.vllm op the path calls eagerly (fake/opcheck properties)
    body: str | None = None  # the Python function behind that op (graph-safety property)
    default: bool = True  # in the default selection of `fp8-verify check`


@dataclass(frozen=True)
class GemmPath:
    """A row bound to the installed vLLM: what properties get. ``call`` is None when absent."""

    spec: PathSpec
    call: Call | None
    reason: str | None
    m_rule: MRule
    module: str | None = None  # where the located function lives (for repros)
    inner: Call | None = None  # compiled paths: the uncompiled callable (to compile with a counter)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def compiled(self) -> bool:
        return self.spec.compiled

    @property
    def kernel(self) -> str:
        return self.spec.kernel

    @property
    def available(self) -> bool:
        return self.call is not None

    def run(self, p: BlockScaledProblem) -> torch.Tensor:
        """The path on a canonical problem."""
        if self.call is None:
            raise RuntimeError(f"path {self.name} is not available: {self.reason}")
        return self.call(*p.args(), list(p.block), p.out_dtype)

    def repro(self) -> str:
        return self.spec.repro.format(module=self.module or "vllm")

    def __repr__(self) -> str:
        return f"GemmPath({self.name!r}, {'available' if self.available else self.reason})"

    def _repr_pretty_(self, p, cycle: bool) -> None:  # how Hypothesis prints a failing example's args
        p.text(repr(self))


# -- how rows find their callables ----------------------------------------------------------------


def _direct(s: Subject) -> Call | str:
    """vLLM's ``cutlass_scaled_mm(A, B, As, Bs, block, dtype)`` wrapper; where a release has none, the
    same call through ``vllm._custom_ops`` in the kernel's layouts (``B.T``, ``Bs.T``)."""
    fn = s.function("cutlass_scaled_mm")
    if fn is not None:
        return fn
    from vllm import _custom_ops as ops

    if not hasattr(ops, "cutlass_scaled_mm"):
        return f"vLLM {s.vllm_version} has no cutlass_scaled_mm"

    def direct(a, b, a_s, b_s, block, out_dtype):
        return ops.cutlass_scaled_mm(a, b.T, out_dtype=out_dtype, scale_a=a_s, scale_b=b_s.T)

    return direct


def _op(name: str, span) -> Locate:
    def locate(s: Subject) -> Call | str:
        return vllm_op(name) or (
            f"torch.ops.vllm.{name} is not registered by vLLM {s.vllm_version} (it is in {span.describe()})"
        )

    return locate


def _function(name: str, where: str) -> Locate:
    def locate(s: Subject) -> Call | str:
        return s.function(name) or f"{name} is not in vLLM {s.vllm_version} ({where})"

    return locate


def _on_gpu(locate: Locate, why: str) -> Locate:
    def locate_on_gpu(s: Subject) -> Call | str:
        return locate(s) if s.kernel == "real" else why

    return locate_on_gpu


def _kernel_m_rule(s: Subject) -> MRule:
    return kernel_m_rule(s.vllm_version)


_CUTLASS_IMPORT = "import {module}  # noqa: F401  registers torch.ops.vllm.*\n"
_COMPILE = (
    "for t in (a, b, a_s, b_s):\n"
    "    for d in range(t.dim()):\n"
    "        torch._dynamo.maybe_mark_dynamic(t, d)\n"
    "f = torch.compile(lambda a, b, x, y: {call}(a, b, x, y, block, out_dtype), fullgraph=True)\n"
    "out = f(a, b, a_s, b_s)"
)
_COMPILE_STATIC = (
    "f = torch.compile(lambda a, b, x, y: {call}(a, b, x, y, block, out_dtype), fullgraph=True, "
    "dynamic=False)\nout = f(a, b, a_s, b_s)"
)

# -- the rows ---------------------------------------------------------------------------------------

PATHS: tuple[PathSpec, ...] = (
    PathSpec(
        "bypass",
        "vLLM's cutlass_scaled_mm wrapper, straight to the SM90 kernel (what _dynamic_padded_cutlass "
        "calls when M % 4 == 0; on 0.24+ what the linear layer calls for every M)",
        _direct,
        m_rule=_kernel_m_rule,
        repro="from {module} import cutlass_scaled_mm\n"
        "out = cutlass_scaled_mm(a, b, a_s, b_s, block, out_dtype)",
        bench="byp",
    ),
    PathSpec(
        "padded",
        "torch.ops.vllm.padded_cutlass: pads M to a multiple of 4, then the kernel",
        _op("padded_cutlass", PADDED_CUTLASS),
        pads_m=True,
        repro=_CUTLASS_IMPORT + "out = torch.ops.vllm.padded_cutlass(a, b, a_s, b_s, block, out_dtype)",
        bench="pad",
        op="padded_cutlass",
        body="_padded_cutlass",
    ),
    PathSpec(
        "dynamic_eager",
        "torch.ops.vllm.dynamic_padded_cutlass called eagerly (PR #43706: pads only when M % 4 != 0)",
        _op("dynamic_padded_cutlass", DYNAMIC_PADDED_CUTLASS),
        pads_m=True,
        repro=_CUTLASS_IMPORT
        + "out = torch.ops.vllm.dynamic_padded_cutlass(a, b, a_s, b_s, block, out_dtype)",
        bench="dyn",
        op="dynamic_padded_cutlass",
        body="_dynamic_padded_cutlass",
    ),
    PathSpec(
        "dynamic_compiled",
        "_dynamic_padded_cutlass traced by torch.compile(fullgraph=True), M dynamic: its torch.cond",
        _function("_dynamic_padded_cutlass", f"it is in {DYNAMIC_PADDED_CUTLASS.describe()}"),
        compiled=True,
        traces="_dynamic_padded_cutlass",
        pads_m=True,
        repro="from {module} import _dynamic_padded_cutlass\n"
        + _COMPILE.format(call="_dynamic_padded_cutlass"),
        bench="dco",
    ),
    PathSpec(
        "dynamic_compiled_static",
        "_dynamic_padded_cutlass traced by torch.compile(fullgraph=True) with M static (a graph per M, "
        "the torch.cond's predicate a constant): where it compiles despite FV-001. aot_eager: the same "
        "graph and kernel as inductor without code generation per M",
        _function("_dynamic_padded_cutlass", f"it is in {DYNAMIC_PADDED_CUTLASS.describe()}"),
        compiled=True,
        dynamic_m=False,
        compile_backend="aot_eager",
        traces="_dynamic_padded_cutlass",
        pads_m=True,
        repro="from {module} import _dynamic_padded_cutlass\n"
        + _COMPILE_STATIC.format(call="_dynamic_padded_cutlass"),
    ),
    PathSpec(
        "compiled_op",
        "torch.ops.vllm.dynamic_padded_cutlass inside a compiled function, M dynamic (what a compiled "
        "vLLM 0.23 model runs on Hopper)",
        _op("dynamic_padded_cutlass", DYNAMIC_PADDED_CUTLASS),
        compiled=True,
        pads_m=True,
        repro=_CUTLASS_IMPORT + _COMPILE.format(call="torch.ops.vllm.dynamic_padded_cutlass"),
        bench="cop",
    ),
    PathSpec(
        "padded_compiled",
        "torch.ops.vllm.padded_cutlass inside a compiled function, M dynamic (what a compiled vLLM "
        "0.22 model runs on Hopper)",
        _op("padded_cutlass", PADDED_CUTLASS),
        compiled=True,
        pads_m=True,
        repro=_CUTLASS_IMPORT + _COMPILE.format(call="torch.ops.vllm.padded_cutlass"),
        bench="pco",
    ),
    PathSpec(
        "triton_block",
        "vLLM's Triton block-FP8 GEMM, w8a8_triton_block_scaled_mm (its fallback on GPUs without the "
        "CUTLASS kernel): an independent implementation of the same GEMM",
        _on_gpu(
            _function("w8a8_triton_block_scaled_mm", "vLLM's fp8_utils"),
            "vLLM's Triton block-FP8 GEMM runs on a CUDA GPU only",
        ),
        kernel=TRITON,
        repro="from {module} import w8a8_triton_block_scaled_mm\n"
        "out = w8a8_triton_block_scaled_mm(a, b, a_s, b_s, block, out_dtype)",
        bench="trt",
    ),
)


# -- the registry ------------------------------------------------------------------------------------


class Registry:
    """The rows of a session: the built-in :data:`PATHS` plus any added (``--path``), each bound to the
    installed vLLM on first use."""

    def __init__(self, specs: Iterable[PathSpec] = PATHS) -> None:
        self._specs: dict[str, PathSpec] = {}
        self._bound: dict[str, GemmPath] = {}
        for spec in specs:
            self.add(spec)

    def add(self, spec: PathSpec) -> None:
        if spec.name in self._specs:
            raise ValueError(f"path {spec.name!r} is already registered")
        self._specs[spec.name] = spec

    def names(self) -> list[str]:
        return list(self._specs)

    def specs(self) -> list[PathSpec]:
        return list(self._specs.values())

    def __iter__(self) -> Iterator[GemmPath]:
        return (self.get(name) for name in self._specs)

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def get(self, name: str) -> GemmPath:
        """The path bound to the installed vLLM (absent ones carry the reason)."""
        if name not in self._specs:
            raise KeyError(f"unknown path {name!r}; known paths: {', '.join(self._specs)}")
        if name not in self._bound:
            self._bound[name] = bind(self._specs[name], load())
        return self._bound[name]

    def select(self, **facts: object) -> list[PathSpec]:
        """The rows whose fields have these values, in registry order; ``op=True``/``False`` asks
        whether the path calls a registered op at all.

        >>> [p.name for p in default().select(compiled=True, dynamic_m=False)]
        ['dynamic_compiled_static']
        """
        fields = set(PathSpec.__dataclass_fields__)
        unknown = set(facts) - fields
        if unknown:
            raise KeyError(f"unknown path fact(s) {sorted(unknown)}; known: {', '.join(sorted(fields))}")

        def has(spec: PathSpec, key: str, want: object) -> bool:
            got = getattr(spec, key)
            return (
                (got is not None) == want
                if key in ("op", "body", "traces") and isinstance(want, bool)
                else got == want
            )

        return [s for s in self._specs.values() if all(has(s, k, v) for k, v in facts.items())]

    def with_only(self, names: Iterable[str]) -> Registry:
        """A registry of just these rows (for ``--paths``)."""
        names = list(names)
        unknown = [n for n in names if n not in self._specs]
        if unknown:
            raise KeyError(f"unknown path(s) {', '.join(unknown)}; known paths: {', '.join(self._specs)}")
        return Registry(self._specs[n] for n in names)


def bind(spec: PathSpec, s: Subject) -> GemmPath:
    """``spec`` located in the installed vLLM."""
    if not s.available:
        return GemmPath(spec, None, s.error, MRule.ANY)
    found = spec.locate(s)
    if isinstance(found, str):
        return GemmPath(spec, None, found, spec.m_rule(s))
    module = getattr(found, "__module__", None)
    module = module if module and module.startswith("vllm.") else (s.modules[0] if s.modules else None)
    call = found
    if spec.compiled:
        backend = spec.compile_backend or compiled.default_backend(s.kernel == "real")
        call = compiled.compile_call(found, backend, dynamic_m=spec.dynamic_m)
    return GemmPath(spec, call, None, spec.m_rule(s), module, inner=found)


def external(text: str) -> PathSpec:
    """A row for a user's GEMM, from ``NAME=module:function[@m4]`` (``@m4``: its kernel takes only
    M % 4 == 0). The callable takes vLLM's arguments ``(a, b, a_scale, b_scale, block, out_dtype)``.
    Raises :class:`~fp8_verify.errors.UsageError` (one line) when the text, the import or the signature is
    wrong.

    >>> external("mine=torch.nn.functional:linear@m4").name
    'mine'
    """
    import importlib
    import inspect
    import re

    from ..errors import UsageError

    m = re.fullmatch(r"([A-Za-z_][\w-]*)=([\w.]+):([\w.]+)(@m4)?", text.strip())
    if not m:
        raise UsageError(f"--path {text!r}: expected NAME=module:function or NAME=module:function@m4")
    name, module, attr, m4 = m.groups()
    try:
        fn = importlib.import_module(module)
        for part in attr.split("."):
            fn = getattr(fn, part)
    except (ImportError, AttributeError) as e:
        raise UsageError(f"--path {name}: cannot import {module}:{attr}: {type(e).__name__}: {e}") from None
    if not callable(fn):
        raise UsageError(f"--path {name}: {module}:{attr} is not callable")
    try:
        inspect.signature(fn).bind(*(None,) * 6)
    except TypeError as e:
        raise UsageError(
            f"--path {name}: {module}:{attr} does not take vLLM's "
            f"(a, b, a_scale, b_scale, block, out_dtype): {e}"
        ) from None
    except ValueError:  # builtins without a signature: take them on trust
        pass
    rule = MRule.MULTIPLE_OF_4 if m4 else MRule.ANY
    return PathSpec(
        name,
        f"{module}:{attr} (given with --path)",
        lambda s, fn=fn: fn,
        kernel=EXTERNAL,
        m_rule=lambda s, rule=rule: rule,
        repro=f"from {module} import {attr.split('.')[0]}\nout = {attr}(a, b, a_s, b_s, block, out_dtype)",
    )


def as_path(gemm: GemmPath | Call, name: str | None = None, m_rule: MRule = MRule.ANY) -> GemmPath:
    """``gemm`` as a path: a :class:`GemmPath` as it is, any callable with vLLM's signature wrapped (so
    that a test upstream can hand its own kernel to the checks)."""
    if isinstance(gemm, GemmPath):
        return gemm
    label = name or getattr(gemm, "__qualname__", None) or repr(gemm)
    spec = PathSpec(label, f"{label} (a callable)", lambda s: gemm, kernel=EXTERNAL, m_rule=lambda s: m_rule)
    return GemmPath(spec, gemm, None, m_rule, getattr(gemm, "__module__", None))


@functools.cache
def default() -> Registry:
    """The built-in rows, for code that runs outside a pytest session (tools, upstream tests)."""
    return Registry()


def get(name: str) -> GemmPath:
    """A built-in path by name, bound to the installed vLLM."""
    return default().get(name)
