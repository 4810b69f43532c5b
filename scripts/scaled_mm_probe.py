"""Which weight-scale layout does torch's block-wise scaled mm read? Each variant on a few shapes,
judged against the float64 reference and bound. Prints one line per (variant, shape)."""

from __future__ import annotations

import torch

from fp8_verify.bound import oracle
from fp8_verify.make import ProblemSpec, make
from fp8_verify.oracles import padded_b_scale, torch_block_scaled_mm
from fp8_verify.verdict import judge


def v1(p, sb):
    return torch._scaled_mm(p.a, p.b.t(), scale_a=p.a_scale, scale_b=sb, out_dtype=p.out_dtype)


VARIANTS = {
    "v2 padded L4 (oracles.py)": torch_block_scaled_mm,
    "v1 vLLM Bs.T": lambda p: v1(p, p.b_scale.t()),
    "v1 padded L4 view [kb, nb]": lambda p: v1(p, padded_b_scale(p.b_scale)[: p.b_scale.shape[1]]),
}
SHAPES = [(8, 256, 128), (8, 384, 384), (64, 512, 640), (5, 256, 512), (200, 1024, 1024), (13, 1536, 7168)]

for name, fn in VARIANTS.items():
    for m, n, k in SHAPES:
        p = make(ProblemSpec(m=m, n=n, k=k, seed=m + n + k), "cuda")
        try:
            v = judge(fn(p), oracle(p), p, name)
            res = f"max err/bound {v.max_ratio:.3g}, bad {v.bad_elements}"
        except Exception as e:
            res = f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"
        print(f"{name:30s} M={m:<4d} N={n:<5d} K={k:<5d} {res}", flush=True)
