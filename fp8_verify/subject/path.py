"""What a registry row is (:class:`PathSpec`) and what it becomes once bound to the installed vLLM
(:class:`GemmPath`): the types :mod:`.registry` fills with rows. A row is a subject of one of three
families -- a GEMM on quantized operands, a linear layer as a model runs it, or vLLM's activation
quantization -- and properties ask it, not its name, what it takes and how it is judged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from .kernels import CUTLASS_SM90, KERNELS, Arithmetic
from .layer import Decisions
from .releases import MRule
from .vllm import Subject

Call = Callable[..., torch.Tensor]  # (a, b, a_scale, b_scale, block, out_dtype) -> out
Locate = Callable[[Subject], "Call | str"]  # the callable, or why this vLLM lacks it

#: Families of subject: what a row's callable takes.
GEMM = "gemm"  # vLLM's six GEMM arguments (a, b, a_scale, b_scale, block, out_dtype), quantized operands
LAYER = "layer"  # a linear layer: (x, w, w_scale, block, out_dtype), bf16 activations, checkpoint weights
QUANT = "quant"  # vLLM's activation quantization of a layer: (x,) -> (e4m3 x, scales)
CHOSEN = "chosen by vLLM"  # a layer row whose kernel vLLM picks per layer (its decisions name it)
QUANT_GROUP = 128  # vLLM quantizes a layer's activations in groups of 128 along K: K is a multiple


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
    family: str = GEMM  # what the callable takes (GEMM, LAYER or QUANT)

    @property
    def exact(self) -> bool:
        """Whether the bit-exact judge applies: the row's kernel arithmetic is known (for a layer or a
        quantization row whose kernel vLLM picks, once vLLM's decisions name it)."""
        return self.kernel == CHOSEN or (
            self.kernel in KERNELS and KERNELS[self.kernel].arithmetic is not None
        )

    @property
    def rules(self) -> Rules:
        """What the row's kernel takes (N/K multiples, output dtypes); a layer's K is a multiple of 128."""
        k = KERNELS.get(self.kernel)
        rules = Rules(k.n_multiple, k.k_multiple, k.out_dtypes) if k else Rules()
        if self.family == GEMM:
            return rules
        return replace(rules, k_multiple=max(rules.k_multiple, QUANT_GROUP))


@dataclass(frozen=True)
class Rules:
    """The dimensions and output dtypes a row's kernel takes (strategies draw only these)."""

    n_multiple: int = 16
    k_multiple: int = 16
    out_dtypes: tuple[str, ...] = ("bfloat16", "float16")


@dataclass
class Prepared:
    """A path ready for calls: ``fn(*inputs)`` is one call (what a CUDA graph captures)."""

    fn: Callable[..., object]
    inputs: list
    decisions: Decisions | None = None


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
    def family(self) -> str:
        return self.spec.family

    @property
    def rules(self) -> Rules:
        return self.spec.rules

    @property
    def available(self) -> bool:
        return self.call is not None

    def _callable(self) -> Call:
        if self.call is None:
            raise RuntimeError(f"path {self.name} is not available: {self.reason}")
        return self.call

    def run(self, p):
        """The path on a canonical problem of its family (a quantization row returns ``(q, scales)``)."""
        prepared = self.prepare(p)
        return prepared.fn(*prepared.inputs)

    def prepare(self, p) -> Prepared:
        """What runs per call, and its inputs: a GEMM row's call on the four tensors; a layer row's
        forward on ``x`` after vLLM's weight processing (done here, once, as a model loads); a
        quantization row's call on ``x``."""
        call = self._callable()
        if self.family == LAYER:
            loaded = call.load(p.w, p.w_scale, list(p.block), p.out_dtype)
            return Prepared(loaded.forward, self.inputs(p), loaded.decisions)
        if self.family == QUANT:
            return Prepared(call, self.inputs(p))
        block, out_dtype = list(p.block), p.out_dtype
        return Prepared(lambda a, b, a_s, b_s: call(a, b, a_s, b_s, block, out_dtype), self.inputs(p))

    def inputs(self, p) -> list:
        """A call's inputs for ``p`` (what changes from call to call of one :meth:`prepare`): a GEMM row's
        four tensors, a layer or quantization row's activations."""
        return list(p.args()) if self.family == GEMM else [p.x]

    def decisions(self, p) -> Decisions | None:
        """What vLLM decided for ``p`` (layer and quantization rows; None for GEMM rows)."""
        if self.family == GEMM:
            return None
        return self._callable().decide(p.n, p.k, p.out_dtype)[1]

    def arithmetic(self, p) -> Arithmetic | None:
        """The arithmetic that judges this row's output on ``p`` (None: not known, bound only)."""
        if self.family == GEMM:
            k = KERNELS.get(self.kernel)
        else:
            d = self.decisions(p)
            k = d.kernel if d is not None else None
        return k.arithmetic_for(p.m, p.n, p.k) if k else None

    def repro(self) -> str:
        """The row's call for a repro script. ``{module}`` is filled by replacement, not ``str.format``:
        a layer row's snippet holds a dict literal (its env switches), whose braces ``format`` would read
        as fields -- which crashed every layer row's failure report on an H100 (KeyError)."""
        return self.spec.repro.replace("{module}", self.module or "vllm")

    def __repr__(self) -> str:
        return f"GemmPath({self.name!r}, {'available' if self.available else self.reason})"

    def _repr_pretty_(self, p, cycle: bool) -> None:  # how Hypothesis prints a failing example's args
        p.text(repr(self))
