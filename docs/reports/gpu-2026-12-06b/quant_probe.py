"""Why quant_cutlass differs from the quantization emulation on an H100 (vLLM 0.23.0): which kernels the
row launches, and which scale formula the real scales follow. Run on a staged machine:
``python3 docs/reports/gpu-2026-12-06b/quant_probe.py``."""

from __future__ import annotations

import torch

from fp8_verify.numerics.quant import FP8_MAX, group_scales, quantize_groups
from fp8_verify.problem.layer import LayerSpec, build_layer
from fp8_verify.subject.registry import default

reg = default()
for name in ("quant_cutlass", "quant_deepgemm"):
    row = reg.get(name)
    p = build_layer(LayerSpec(m=1, n=128, k=128, seed=0), "cuda")
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        q, s = row.run(p)
        torch.cuda.synchronize()
    kernels = sorted({e.name for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA})
    print(name, "kernels:", kernels[:8])
    print(name, "scale shape/stride", tuple(s.shape), s.stride(), s.dtype)

row = reg.get("quant_cutlass")
stats = {"n": 0, "ieee": 0, "recip": 0, "q_ieee": 0, "q_recip": 0}
examples = []
for seed in range(400):
    m = 1 + seed % 64
    p = build_layer(
        LayerSpec(m=m, n=128, k=512, seed=seed, act=("normal", "outliers", "tiny")[seed % 3]), "cuda"
    )
    q, s = row.run(p)
    s = s.float().contiguous().reshape(m, -1)
    x = p.x.float()
    g = x.reshape(m, -1, 128).abs().amax(-1).clamp_min(1e-10)
    ieee = g / FP8_MAX
    recip = g * torch.tensor(1.0 / FP8_MAX, dtype=torch.float32)
    stats["n"] += s.numel()
    stats["ieee"] += int((s == ieee).sum())
    stats["recip"] += int((s == recip).sum())
    qe, _ = quantize_groups(p.x, ue8m0=False)
    stats["q_ieee"] += int((q.view(torch.uint8) == qe.view(torch.uint8)).all(-1).sum())
    qr = (
        (x.reshape(m, -1, 128) * (1.0 / s)[..., None]).clamp(-448, 448).reshape(m, -1).to(torch.float8_e4m3fn)
    )
    stats["q_recip"] += int((q.view(torch.uint8) == qr.view(torch.uint8)).all(-1).sum())
    bad = (s != ieee).nonzero()
    if len(bad) and len(examples) < 5:
        i, j = bad[0].tolist()
        examples.append(
            (seed, m, i, j, float(g[i, j]), float(s[i, j]), float(ieee[i, j]), float(recip[i, j]))
        )
print("scales:", stats)
for e in examples:
    print("seed %d M=%d (%d,%d) amax=%r real=%r ieee=%r recip=%r" % e)
