"""FV-012: vLLM's Triton block-FP8 GEMM does not check dtypes; Triton's compiler stops inside the kernel.

``w8a8_triton_block_scaled_mm`` passes an fp16 activation, or fp64 scales, straight to its Triton kernel,
whose compilation fails at a line of the kernel's source: ``Unsupported rhs dtype fp8e4nv`` at
``tl.dot(a, b)`` for the fp16 A (it blames the weight, which is right), and "Loop-carried variable
accumulator has initial type ... fp32 but is re-assigned to ... fp64" for the scales. Expected: an error
that names the argument and the dtype it must have. Needs: torch, vLLM 0.22.0-0.33.0 and Triton. With a
CUDA GPU the function itself is called; without one, vLLM's kernel source (from the installed release) is
compiled for sm_90 by Triton's front end, which is where the error comes from (vLLM disables Triton
without a GPU driver). Exit status 1 while the errors do not name the argument.
"""

import ast
import importlib.util
import sys
import tempfile
from pathlib import Path

import torch
from _blockfp8 import problem

CASES = {"float16 activation": ("*fp16", "*fp32"), "float64 scales": ("*fp8e4nv", "*fp64")}


def on_gpu() -> dict[str, str]:
    from vllm.model_executor.layers.quantization.utils.fp8_utils import w8a8_triton_block_scaled_mm

    a, b, a_s, b_s, _ = problem()
    said = {}
    for name, args in {"float16 activation": (a.half(), a_s), "float64 scales": (a, a_s.double())}.items():
        s_b = b_s.double() if name == "float64 scales" else b_s
        try:
            w8a8_triton_block_scaled_mm(args[0], b, args[1], s_b, [128, 128], torch.bfloat16)
            said[name] = "returned"
        except Exception as e:  # Triton's CompilationError
            said[name] = f"{type(e).__name__}: {str(e).strip().splitlines()[-1]}"
    return said


def compiled_for_sm90() -> dict[str, str]:
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    spec = importlib.util.find_spec("vllm.model_executor.layers.quantization.utils.fp8_utils")
    src = Path(spec.origin).read_text()
    fn = next(
        n
        for n in ast.parse(src).body
        if isinstance(n, ast.FunctionDef) and n.name == "_w8a8_triton_block_scaled_mm"
    )
    mod = Path(tempfile.mkdtemp()) / "vllm_block_fp8_kernel.py"
    mod.write_text(
        "import triton\nimport triton.language as tl\n\n@triton.jit\n" + ast.get_source_segment(src, fn)
    )
    sys.path.insert(0, str(mod.parent))
    kernel = __import__(mod.stem)._w8a8_triton_block_scaled_mm
    meta = {"BLOCK_SIZE_M": 64, "BLOCK_SIZE_N": 128, "BLOCK_SIZE_K": 128, "GROUP_SIZE_M": 32}
    said = {}
    for name, (a_type, s_type) in CASES.items():
        types = {"A": a_type, "B": "*fp8e4nv", "C": "*bf16", "As": s_type, "Bs": s_type}
        sig = {n: types.get(n, "constexpr" if n in meta else "i32") for n in kernel.arg_names}
        try:
            triton.compile(
                ASTSource(fn=kernel, signature=sig, constexprs=meta), target=GPUTarget("cuda", 90, 32)
            )
            said[name] = "compiled"
        except Exception as e:
            lines = str(e).strip().splitlines()
            said[name] = f"{type(e).__name__} ({lines[0]}): {lines[-1][:160]}"
    return said


said = on_gpu() if torch.cuda.is_available() else compiled_for_sm90()
for name, text in said.items():
    print(f"{name}: {text}")
named = all(
    ("float16" in t or "fp16" in t) if "16" in n else ("float64" in t and "scale" in t)
    for n, t in said.items()
)
sys.exit(0 if named else 1)
