"""One-shot probe of the real SM90 kernel and vLLM's paths: what the kernel accepts, its numerics
against the bound, determinism, overflow, compile behaviour. Writes JSON lines to $OUT/probe.jsonl."""

from __future__ import annotations

import json
import os
import sys
import time
import traceback

import torch

from fp8_verify import paths, subject
from fp8_verify.bound import oracle
from fp8_verify.make import ProblemSpec, make
from fp8_verify.problem import column_major
from fp8_verify.verdict import bitwise_diff, judge

OUT = os.environ.get("OUT", "/tmp")
log = open(os.path.join(OUT, "probe.jsonl"), "a")  # noqa: SIM115  open for the whole script


def emit(**kw):
    print(json.dumps(kw, default=str)[:600], flush=True)
    log.write(json.dumps(kw, default=str) + "\n")
    log.flush()


def section(name):
    def deco(fn):
        t = time.time()
        try:
            fn()
        except Exception as e:
            emit(section=name, error=f"{type(e).__name__}: {e}", tb=traceback.format_exc()[-2000:])
        emit(section=name, seconds=round(time.time() - t, 1))
        return fn

    return deco


s = subject.load()
DEV = s.device


def sync():
    if DEV.type == "cuda":
        torch.cuda.synchronize()


emit(
    section="env",
    vllm=s.vllm_version,
    backend=s.backend,
    why=s.backend_reason,
    device=s.device_name(),
    functions=list(s.functions),
)


@section("schema")
def _():
    op = torch.ops._C.cutlass_scaled_mm.default
    keys = {
        k: torch._C._dispatch_has_kernel_for_dispatch_key(op.name(), k)
        for k in ("CUDA", "CPU", "Meta", "CompositeImplicitAutograd", "CompositeExplicitAutograd")
    }
    emit(
        section="schema",
        schema=str(op._schema),
        kernels=keys,
        has_fake=torch._library.simple_registry.singleton.find(op.name()).fake_impl.kernel is not None,
    )


def try_op(name, out, a, b, sa, sb, bias=None, ref=None, p=None):
    try:
        torch.ops._C.cutlass_scaled_mm(out, a, b, sa, sb, bias)
        sync()
        res = {"accepted": True}
        if ref is not None:
            v = judge(out, ref, p, name)
            res.update(ok=v.ok, max_ratio=v.max_ratio, bad=v.bad_elements)
    except Exception as e:
        res = {"accepted": False, "error": f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"}
    emit(section="contract", case=name, **res)


@section("contract")
def _():
    for m, n, k in [
        (8, 256, 384),
        (5, 256, 384),
        (1, 256, 384),
        (2, 256, 384),
        (3, 512, 512),
        (8, 144, 384),
        (8, 256, 400),
        (8, 256, 128),
        (6, 128, 128),
        (5, 256, 128),
        (8, 272, 528),
        (12, 16, 16),
        (7, 128, 256),
    ]:
        p = make(ProblemSpec(m=m, n=n, k=k, seed=m + n + k), DEV)
        o = oracle(p)
        out = torch.empty(m, n, dtype=p.out_dtype, device=DEV)
        try_op(f"canonical m={m} n={n} k={k}", out, p.a, p.b.T, p.a_scale, p.b_scale.T, ref=o, p=p)
    p = make(ProblemSpec(m=8, n=256, k=384, seed=3), DEV)
    o = oracle(p)

    def fresh():
        return torch.empty(p.m, p.n, dtype=p.out_dtype, device=DEV)

    try_op("a_scale row-major", fresh(), p.a, p.b.T, p.a_scale.contiguous(), p.b_scale.T, ref=o, p=p)
    try_op(
        "b_scale contiguous (not transposed view)",
        fresh(),
        p.a,
        p.b.T,
        p.a_scale,
        p.b_scale.T.contiguous(),
        ref=o,
        p=p,
    )
    try_op("b row-major (B not transposed)", fresh(), p.a, p.b.T.contiguous(), p.a_scale, p.b_scale.T)
    try_op(
        "bias bf16",
        fresh(),
        p.a,
        p.b.T,
        p.a_scale,
        p.b_scale.T,
        bias=torch.zeros(p.n, dtype=p.out_dtype, device=DEV),
    )
    try_op("fp32 out", torch.empty(p.m, p.n, device=DEV), p.a, p.b.T, p.a_scale, p.b_scale.T)
    try_op("fp64 scales", fresh(), p.a, p.b.T, p.a_scale.double(), p.b_scale.T.double())
    try_op("e5m2 a", fresh(), p.a.float().to(torch.float8_e5m2), p.b.T, p.a_scale, p.b_scale.T)
    try_op("a_scale wrong shape", fresh(), p.a, p.b.T, p.a_scale[:, :2], p.b_scale.T)
    sa_strided = torch.empty(p.m + 4, 3, device=DEV).t().contiguous().t()[: p.m]
    sa_strided.copy_(p.a_scale)
    try_op(
        "a_scale M-major with padded pitch (stride (1, M+4))",
        fresh(),
        p.a,
        p.b.T,
        sa_strided,
        p.b_scale.T,
        ref=o,
        p=p,
    )
    a_pad = torch.zeros(p.m, 512, dtype=torch.float8_e4m3fn, device=DEV)
    a_pad.view(torch.uint8)[:, :384] = p.a.view(torch.uint8)
    try_op("a sliced (lda=512)", fresh(), a_pad[:, :384], p.b.T, p.a_scale, p.b_scale.T, ref=o, p=p)
    a0 = p.a[:0]
    try_op(
        "M=0",
        torch.empty(0, p.n, dtype=p.out_dtype, device=DEV),
        a0,
        p.b.T,
        column_major(p.a_scale[:0]),
        p.b_scale.T,
    )
    for mm in (5, 6, 7, 9, 13):
        q = make(ProblemSpec(m=mm, n=256, k=384, seed=mm), DEV)
        out = torch.full((q.m, q.n), float("nan"), dtype=q.out_dtype, device=DEV)
        try_op(
            f"unaligned M={mm} nan-poisoned out",
            out,
            q.a,
            q.b.T,
            q.a_scale,
            q.b_scale.T,
            ref=oracle(q),
            p=q,
        )


@section("paths")
def _():
    for m in (1, 2, 3, 4, 5, 8, 13, 64, 127, 128, 255, 256):
        for n, k in ((256, 384), (1536, 7168)):
            p = make(ProblemSpec(m=m, n=n, k=k, seed=m * 7 + n), DEV)
            o = oracle(p)
            row = {}
            outs = {}
            for name, gp in paths.discover().items():
                if not gp.available:
                    row[name] = gp.reason
                    continue
                try:
                    out = gp.run(p)
                    sync()
                    v = judge(out, o, p, name)
                    outs[name] = out
                    row[name] = f"ok={v.ok} ratio={v.max_ratio:.3g}"
                except Exception as e:
                    row[name] = f"ERR {type(e).__name__}: {str(e).splitlines()[0][:200]}"
            base = outs.get("dynamic_eager")
            if base is not None:
                row["bitwise"] = {nm: bitwise_diff(x, base) for nm, x in outs.items()}
            emit(section="paths", m=m, n=n, k=k, **row)
    emit(section="paths", compiles=paths.compile_count())


@section("determinism")
def _():
    for m, n, k in ((128, 256, 7168), (64, 512, 7168), (256, 7168, 2048), (2048, 2048, 7168)):
        p = make(ProblemSpec(m=m, n=n, k=k, seed=1), DEV)
        g = paths.get("bypass")
        first = g.run(p)
        diffs = 0
        for _ in range(20):
            if bitwise_diff(g.run(p), first) is not None:
                diffs += 1
        emit(section="determinism", m=m, n=n, k=k, streamk=k > 3 * n, runs=20, differing=diffs)


@section("batch_invariance")
def _():
    g = paths.get("dynamic_eager")
    for n, k in ((256, 384), (2048, 7168), (256, 7168)):
        big = make(ProblemSpec(m=512, n=n, k=k, seed=5), DEV)
        full = g.run(big)
        res = {}
        for m in (1, 3, 4, 8, 64, 100, 128, 256):
            sub = g.run(big.with_m(slice(0, m)))
            res[m] = bitwise_diff(sub, full[:m])
        emit(section="batch_invariance", n=n, k=k, rows_vs_full=res)


@section("overflow")
def _():
    p = make(
        ProblemSpec(m=8, n=256, k=384, values="extreme", scales="huge", out_dtype="float16", seed=2),
        DEV,
    )
    out = paths.get("bypass").run(p)
    o = oracle(p)
    v = judge(out, o, p, "bypass")
    emit(
        section="overflow",
        ok=v.ok,
        ninf=int(torch.isinf(out).sum()),
        nref_over=int((o.ref.abs() > 65504).sum()),
        max_ratio=v.max_ratio,
        msg=v.message()[:400],
    )


@section("calibration")
def _():
    from hypothesis import HealthCheck, given, settings

    from strategies import m_dims, nk_dims, problem_specs

    stats = []

    @settings(
        max_examples=int(os.environ.get("CAL_N", "400")),
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(problem_specs(m=m_dims(max_value=2048), n=nk_dims(max_value=4096), k=nk_dims(max_value=8192)))
    def run(spec):
        p = make(spec, DEV)
        out = paths.get("dynamic_eager").run(p)
        o = oracle(p)
        v = judge(out, o, p, "dynamic_eager")
        err = (out.double() - o.ref).abs()
        fin = torch.isfinite(err) & (o.bound > 0)
        rel_s = (err[fin] / o.abs_sum[fin].clamp_min(1e-300)).max().item() if fin.any() else 0
        stats.append({**spec.to_dict(), "ratio": v.max_ratio, "err_over_S": rel_s, "ok": v.ok})

    try:
        run()
    except Exception as e:
        emit(section="calibration", error=str(e)[:2000])
    with open(os.path.join(OUT, "calibration.jsonl"), "w") as fh:
        for r in stats:
            fh.write(json.dumps(r) + "\n")
    rs = sorted(r["ratio"] for r in stats)
    emit(
        section="calibration",
        n=len(rs),
        max=rs[-1] if rs else None,
        p50=rs[len(rs) // 2] if rs else None,
        fails=sum(not r["ok"] for r in stats),
        max_err_over_S=max((r["err_over_S"] for r in stats), default=None),
    )


if "--exit" in sys.argv:
    sys.exit(0)
