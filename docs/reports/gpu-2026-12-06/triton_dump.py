"""Dump vLLM's Triton block GEMM outputs with their inputs, for offline study of its arithmetic."""

import os, torch
from fp8_verify.subject.vllm import load
from fp8_verify.subject import registry
from fp8_verify.problem import ProblemSpec, build

load()
path = registry.get("triton_block")
cases = []
for i, (m, n, k, v, sc) in enumerate(
    [
        (1, 576, 7168, "random", "narrow"),
        (4, 256, 1024, "random", "narrow"),
        (8, 128, 256, "random", "narrow"),
        (2, 128, 128, "random", "narrow"),
        (16, 512, 512, "random", "wide"),
        (4, 256, 1024, "quantized", "fp32"),
        (3, 128, 384, "extreme", "narrow"),
        (5, 640, 2048, "random", "pow2"),
    ]
):
    for seed in range(3):
        p = build(ProblemSpec(m=m, n=n, k=k, values=v, scales=sc, seed=seed), "cuda", draw_on_device=False)
        out = path.run(p)
        cases.append(
            {
                "spec": (m, n, k, v, sc, seed),
                "a": p.a.cpu(),
                "b": p.b.cpu(),
                "sa": p.a_scale.cpu(),
                "sb": p.b_scale.cpu(),
                "out": out.cpu(),
            }
        )
torch.save(cases, os.path.join(os.environ["OUT"], "triton-dump.pt"))
print("dumped", len(cases))
