"""The paths under test: one :class:`~.path.PathSpec` row per way of running vLLM's block-FP8 GEMM -- as a
GEMM on quantized operands, as a whole linear layer, or as its activation quantization -- holding every
fact the suite knows about it. Properties, findings, failure artifacts, bench, mutants, calibration and
the contract read these rows; nothing else keeps a list of path names.

A row says how to find the path in the installed vLLM (or why it is absent, naming the releases that
have it), how to call it, whether it is compiled, which kernel it ends in (:mod:`.kernels`: the kernel's
arithmetic judges it bit for bit), the M rule that kernel applies on the installed release, the repro
snippet written into failure artifacts, and the bench label. Adding a path -- a new release's route, a
kernel class of vLLM's, a user's kernel (``--path NAME=module:function``) -- is one row.

A GEMM row's call takes vLLM's positional arguments ``(a, b, a_scale, b_scale, block, out_dtype)``: A
[M, K] e4m3 row-major, B [N, K] e4m3, As [M, ceil(K/128)] fp32 M-major, Bs [ceil(N/128), ceil(K/128)]
fp32. A layer row's takes ``(x, w, w_scale, block, out_dtype)``; a quantization row's ``(x,)``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator

from . import compiled
from .kernels import CUTLASS_SM90, DEEPGEMM, EXTERNAL, TRITON
from .layer import VllmLayer, VllmQuant
from .locate import _direct, _fp8_gemm_nt_op, _function, _kernel_m_rule, _layer, _on_gpu, _op
from .path import CHOSEN, GEMM, LAYER, QUANT, Call, GemmPath, PathSpec, Prepared, Rules
from .releases import DYNAMIC_PADDED_CUTLASS, PADDED_CUTLASS, MRule
from .vllm import Subject, load

__all__ = [
    "CHOSEN",
    "CUTLASS_SM90",
    "DEEPGEMM",
    "EXTERNAL",
    "GEMM",
    "LAYER",
    "PATHS",
    "QUANT",
    "TRITON",
    "Call",
    "GemmPath",
    "PathSpec",
    "Prepared",
    "Registry",
    "Rules",
]

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

_DG, _CUTLASS, _TRITON = (
    "DeepGemmFp8BlockScaledMMKernel",
    "CutlassFp8BlockScaledMMKernel",
    "TritonFp8BlockScaledMMKernel",
)
_E8M0_OFF = (("VLLM_USE_DEEP_GEMM_E8M0", "0"),)
_FLASHINFER_OFF = (("VLLM_BLOCKSCALE_FP8_GEMM_FLASHINFER", "0"),)
_LAYER_REPRO = (
    "from fp8_verify.subject.layer import VllmLayer  # vLLM's kernel class, config and switches\n"
    "out = VllmLayer({cls}, {env})(x, w, w_s, block, out_dtype)"
)
_QUANT_REPRO = (
    "from fp8_verify.subject.layer import VllmQuant  # the QuantFP8 object of vLLM's kernel class\n"
    "q, s = VllmQuant({cls}, {env})(x)"
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
        "deepgemm",
        "DeepGEMM's fp8_gemm_nt through torch.ops.vllm.fp8_gemm_nt_op, as DeepGemmFp8BlockScaledMMKernel "
        "calls it (fp32 scales; vLLM's first choice for bf16 layers with N % 64 == 0 and K % 128 == 0 on "
        "an H100 without flashinfer)",
        _fp8_gemm_nt_op,
        kernel=DEEPGEMM,
        repro="import vllm.model_executor.kernels.linear.scaled_mm.deep_gemm  # noqa: F401\n"
        "out = torch.empty(a.shape[0], b.shape[0], dtype=out_dtype, device=a.device)\n"
        "torch.ops.vllm.fp8_gemm_nt_op(a, a_s, b, b_s, out, False)",
        bench="dgm",
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
    # -- the layer as a model runs it: bf16 activations, checkpoint weights, vLLM's kernel class ------
    PathSpec(
        "layer_auto",
        "a block-FP8 linear layer with the kernel class vLLM chooses for it (choose_scaled_mm_linear_kernel "
        "over _POSSIBLE_FP8_BLOCK_KERNELS) where FlashInfer's block-scale GEMM is off, as on the Hopper "
        "runner (no flashinfer): weight processing at load, QuantFP8, the GEMM (test_kernel_choice draws "
        "the switches, FlashInfer's included)",
        _layer(None, env=_FLASHINFER_OFF),
        kernel=CHOSEN,
        family=LAYER,
        repro=_LAYER_REPRO.format(cls="None", env=repr(dict(_FLASHINFER_OFF))),
    ),
    PathSpec(
        "layer_deepgemm",
        "DeepGemmFp8BlockScaledMMKernel as an H100 runs it by default: weights requantized with UE8M0 "
        "scales at load (VLLM_USE_DEEP_GEMM_E8M0=1), UE8M0 activation scales, TMA-aligned, DeepGEMM",
        _layer(_DG),
        kernel=DEEPGEMM,
        family=LAYER,
        repro=_LAYER_REPRO.format(cls=repr(_DG), env="{}"),
    ),
    PathSpec(
        "layer_deepgemm_fp32",
        "DeepGemmFp8BlockScaledMMKernel with VLLM_USE_DEEP_GEMM_E8M0=0: the checkpoint's fp32 scales kept",
        _layer(_DG, env=_E8M0_OFF),
        kernel=DEEPGEMM,
        family=LAYER,
        repro=_LAYER_REPRO.format(cls=repr(_DG), env=repr(dict(_E8M0_OFF))),
    ),
    PathSpec(
        "layer_cutlass",
        "CutlassFp8BlockScaledMMKernel: QuantFP8 with column-major fp32 scales, then the SM90 CUTLASS "
        "kernel (on Hopper through dynamic_padded_cutlass in 0.23, cutlass_scaled_mm from 0.24)",
        _layer(_CUTLASS),
        kernel=CUTLASS_SM90,
        family=LAYER,
        repro=_LAYER_REPRO.format(cls=repr(_CUTLASS), env="{}"),
    ),
    PathSpec(
        "layer_triton",
        "TritonFp8BlockScaledMMKernel: QuantFP8 with row-major fp32 scales, then vLLM's Triton block GEMM",
        _layer(_TRITON, gpu_only="vLLM's Triton block-FP8 GEMM runs on a CUDA GPU only"),
        kernel=TRITON,
        family=LAYER,
        repro=_LAYER_REPRO.format(cls=repr(_TRITON), env="{}"),
    ),
    # -- vLLM's activation quantization, as each kernel class configures it --------------------------
    PathSpec(
        "quant_deepgemm",
        "QuantFP8 of DeepGemmFp8BlockScaledMMKernel (E8M0 on: UE8M0 scales, column-major TMA-aligned): "
        "vLLM's CUDA kernel per_token_group_fp8_quant",
        _layer(_DG, quant=True),
        kernel=DEEPGEMM,
        family=QUANT,
        repro=_QUANT_REPRO.format(cls=repr(_DG), env="{}"),
    ),
    PathSpec(
        "quant_cutlass",
        "QuantFP8 of CutlassFp8BlockScaledMMKernel (fp32 scales, column-major)",
        _layer(_CUTLASS, quant=True),
        kernel=CUTLASS_SM90,
        family=QUANT,
        repro=_QUANT_REPRO.format(cls=repr(_CUTLASS), env="{}"),
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
    label = name or getattr(gemm, "__qualname__", None) or getattr(gemm, "__name__", None) or repr(gemm)
    if isinstance(gemm, VllmLayer | VllmQuant):  # one of vLLM's kernel classes: judged by its decisions
        family = QUANT if isinstance(gemm, VllmQuant) else LAYER
        spec = PathSpec(label, f"{label} (vLLM's kernel class)", lambda s: gemm, kernel=CHOSEN, family=family)
        return GemmPath(spec, gemm, None, m_rule, gemm.__module__)
    spec = PathSpec(label, f"{label} (a callable)", lambda s: gemm, kernel=EXTERNAL, m_rule=lambda s: m_rule)
    return GemmPath(spec, gemm, None, m_rule, getattr(gemm, "__module__", None))


@functools.cache
def default() -> Registry:
    """The built-in rows, for code that runs outside a pytest session (tools, upstream tests)."""
    return Registry()


def get(name: str) -> GemmPath:
    """A built-in path by name, bound to the installed vLLM."""
    return default().get(name)
