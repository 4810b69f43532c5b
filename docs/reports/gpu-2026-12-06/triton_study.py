"""Which arithmetic vLLM's Triton block GEMM has: its outputs on Hopper against emulation variants
(promotion orders; partials chained in the tensor core over the K-block, or each k32 slice added in fp32;
exact partials). Prints, per variant, how many problems match bit for bit; saves the outputs (small)."""

import os
import torch
from fp8_verify.subject.vllm import load
from fp8_verify.subject import registry
from fp8_verify.problem import ProblemSpec, build
from fp8_verify.numerics import PROMOTIONS, sm90_blockwise_gemm, round_output
from fp8_verify.numerics.sm90 import _pad_k, BLOCK_N
from fp8_verify.numerics.wgmma import prepare_e4m3, wgmma_tile

load()
path = registry.get("triton_block")


def slices_in_fp32(p, promote, chunk=128):
    """Each k32 wgmma slice from zero, added into an fp32 partial per K-block of ``chunk``."""
    m, n = p.m, p.n
    nkb = p.a_scale.shape[1]
    pa, pb = prepare_e4m3(_pad_k(p.a, nkb * 128)), prepare_e4m3(_pad_k(p.b, nkb * 128))
    sa = p.a_scale.float()
    sb = p.b_scale.float().repeat_interleave(BLOCK_N, dim=0)[:n]
    acc = torch.zeros(m, n, device=p.device)
    for kb in range(nkb):
        part = torch.zeros(m, n, device=p.device)
        for s in range(kb * 4, kb * 4 + 4):
            av, ae, _ = pa.kslice(s)
            bv, be, _ = pb.kslice(s)
            z = wgmma_tile(av, ae, bv, be, torch.zeros(m, n, device=p.device))
            part = part + z
        acc = promote(part, sa[:, kb, None], sb[None, :, kb], acc)
    return round_output(acc, p.out_dtype)


# Batch invariance at a shape with tuned configs (N=576, K=7168): row 0 alone and in batches.
from fp8_verify.problem import ProblemSpec as _PS

big = build(_PS(m=512, n=576, k=7168, seed=7), "cuda", draw_on_device=False)
full = path.run(big)
for m in (1, 4, 16, 32, 64, 128, 256):
    sub = path.run(big.with_m(slice(0, m)))
    diff = int((sub.view(torch.int16) != full[:m].view(torch.int16)).sum())
    print(f"batch {m:4d} vs 512: rows equal to the full batch's: {diff == 0} ({diff} elements differ)")

variants = {}
for name in PROMOTIONS:
    variants[f"chain/{name}"] = lambda p, name=name: sm90_blockwise_gemm(
        p.a, p.b, p.a_scale, p.b_scale, p.out_dtype, promotion=name, backend="torch"
    )
    variants[f"exact/{name}"] = lambda p, name=name: sm90_blockwise_gemm(
        p.a, p.b, p.a_scale, p.b_scale, p.out_dtype, promotion=name, partial="exact", backend="torch"
    )
    variants[f"slices/{name}"] = lambda p, name=name: slices_in_fp32(p, PROMOTIONS[name])

specs = []
for m, n, k, v, sc in [
    (1, 576, 7168, "random", "narrow"),
    (4, 256, 1024, "random", "narrow"),
    (8, 128, 256, "random", "narrow"),
    (2, 128, 128, "random", "narrow"),
    (4, 2112, 7168, "quantized", "fp32"),
    (256, 576, 7168, "random", "narrow"),
]:
    for seed in range(2):
        specs.append(ProblemSpec(m=m, n=n, k=k, values=v, scales=sc, seed=seed))
score = {k: 0 for k in variants}
saved = []
for spec in specs:
    p = build(spec, "cuda", draw_on_device=False)
    out = path.run(p)
    saved.append((spec, out.cpu()))
    for name, f in variants.items():
        e = f(p)
        same = (out.view(torch.int16) == e.view(torch.int16)) | (torch.isnan(out) & torch.isnan(e))
        score[name] += int(bool(same.all()))
        if name == "chain/fma_sa_then_sb" and not same.all():
            print("mismatch", spec, int((~same).sum()), "of", same.numel())
for name, s in sorted(score.items(), key=lambda kv: -kv[1]):
    print(f"{name:28s} {s}/{len(specs)}")
torch.save(saved, os.path.join(os.environ["OUT"], "triton-outputs.pt"))
