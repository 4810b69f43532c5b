"""Shared by the FV-003..FV-006 repros: a small block-FP8 problem in vLLM's layouts and its exact
float64 answer. Only torch here; each repro calls vLLM itself."""

import torch


def problem(m=8, n=256, k=384, seed=0, device="cuda"):
    g = torch.Generator().manual_seed(seed)
    a = (torch.randn(m, k, generator=g) * 100).clamp(-448, 448).to(torch.float8_e4m3fn)
    b = (torch.randn(n, k, generator=g) * 100).clamp(-448, 448).to(torch.float8_e4m3fn)
    a_s = (0.5 + torch.rand(m, k // 128, generator=g)) / 100  # per 1x128 group
    b_s = (0.5 + torch.rand(n // 128, k // 128, generator=g)) / 100  # per 128x128 block
    ref = (a.double() * a_s.double().repeat_interleave(128, 1)) @ (
        b.double() * b_s.double().repeat_interleave(128, 0).repeat_interleave(128, 1)
    ).T
    a_s_colmajor = a_s.t().contiguous().t()  # what vLLM's quantization produces
    return [t.to(device) for t in (a, b, a_s_colmajor, b_s, ref)]


def report(name, out, ref):
    err = (out.double() - ref).abs().max().item()
    rel = err / ref.abs().max().item()
    print(f"{name}: max |out - ref| = {err:.4g} ({rel:.2%} of max |ref|)")
    return rel
