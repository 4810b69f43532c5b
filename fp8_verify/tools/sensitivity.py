"""How sensitive each check is: plant small arithmetic errors in the SM90 kernel's output and count how
many examples each check needs to notice -- the bit-exact judge, the derived FP8 bound, vLLM's
mean-relative metric and DeepGEMM's ``calc_diff`` (docs/sensitivity.md).

A plant is a wrong kernel built from the emulation (:mod:`fp8_verify.numerics`): one K-block's scale off
by 1% or 10%, partial sums that keep 1-3 fewer bits, one output element 1 or 2 ulps off, a whole row or a
whole column 1% off. Each example is a problem with K = 7168 (DeepSeek-V3's hidden size) drawn from a
seeded generator; every check sees the same examples.

``python -m fp8_verify.tools.sensitivity [--examples 10] [--json F] [--md F]``
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch

from ..judge.bound import oracle
from ..judge.exact import emulate, judge_exact
from ..judge.metrics import THRESHOLD, calc_diff, vllm_rel_diff
from ..judge.verdict import judge
from ..numerics import sm90_blockwise_gemm
from ..numerics.quant import quantize_groups, requantize_weight_ue8m0
from ..problem import BlockScaledProblem, ProblemSpec, build, column_major
from ..problem.layer import ACT_REGIMES, LayerSpec, build_layer
from ..report.tables import markdown_table

K = 7168
Plant = Callable[[BlockScaledProblem, torch.Tensor, random.Random], torch.Tensor]


def _scale_off(factor: float) -> Plant:
    def plant(p: BlockScaledProblem, out: torch.Tensor, r: random.Random) -> torch.Tensor:
        kb = r.randrange(p.a_scale.shape[1])
        sa = p.a_scale.clone()
        sa[:, kb] *= factor
        return sm90_blockwise_gemm(p.a, p.b, sa, p.b_scale, p.out_dtype)

    return plant


def _bits_lost(bits: int) -> Plant:
    def plant(p: BlockScaledProblem, out: torch.Tensor, r: random.Random) -> torch.Tensor:
        return sm90_blockwise_gemm(p.a, p.b, p.a_scale, p.b_scale, p.out_dtype, frac_bits=13 - bits)

    return plant


def _ulps_off(ulps: int) -> Plant:
    def plant(p: BlockScaledProblem, out: torch.Tensor, r: random.Random) -> torch.Tensor:
        """``ulps`` steps away from zero in one nonzero finite element (never into inf or NaN)."""
        bad = out.clone()
        for _ in range(100):
            i, j = r.randrange(p.m), r.randrange(p.n)
            moved = bad[i : i + 1, j : j + 1].clone()
            moved.view(torch.int16).add_(ulps)  # sign-magnitude: +1 is one step away from zero
            if bool(torch.isfinite(moved).all()) and float(out[i, j]) != 0.0:
                bad[i, j] = moved[0, 0]
                return bad
        return bad

    return plant


def _slice_off(axis: int, factor: float = 1.01) -> Plant:
    def plant(p: BlockScaledProblem, out: torch.Tensor, r: random.Random) -> torch.Tensor:
        bad = out.clone()
        if axis == 0:
            i = r.randrange(p.m)
            bad[i] = (bad[i].float() * factor).to(out.dtype)
        else:
            j = r.randrange(p.n)
            bad[:, j] = (bad[:, j].float() * factor).to(out.dtype)
        return bad

    return plant


PLANTS: dict[str, tuple[str, Plant]] = {
    "scale-1%": ("one K-block's activation scales 1% off", _scale_off(1.01)),
    "scale-10%": ("one K-block's activation scales 10% off", _scale_off(1.10)),
    "bits-1": ("partial sums keep 12 bits instead of 13", _bits_lost(1)),
    "bits-2": ("partial sums keep 11 bits", _bits_lost(2)),
    "bits-3": ("partial sums keep 10 bits", _bits_lost(3)),
    "element-1ulp": ("one output element 1 ulp off", _ulps_off(1)),
    "element-2ulp": ("one output element 2 ulps off", _ulps_off(2)),
    "row-1%": ("one output row 1% off", _slice_off(0)),
    "column-1%": ("one output column 1% off", _slice_off(1)),
}
CHECKS = ("bit-exact", "derived bound", "vLLM metric", "calc_diff")


# -- plants in vLLM's quantization and in DeepGEMM's scale layout (issue: the layer as a model runs it) --


def _layer_gemm(x, w, ws, ue8m0: bool, quant=quantize_groups) -> BlockScaledProblem:
    """The GEMM problem a layer forms from ``x`` with the quantization ``quant`` (DeepGEMM's by default:
    UE8M0 activations and E8M0-requantized weights when ``ue8m0``)."""
    a, a_s = quant(x, ue8m0=ue8m0)
    if ue8m0:
        w, ws = requantize_weight_ue8m0(w, ws)
    return BlockScaledProblem(a, column_major(a_s), w, ws.contiguous(), (128, 128), torch.bfloat16)


def _floor_ue8m0(x, ue8m0=True):
    """UE8M0 scales rounded *down* to a power of two (values above 448 then saturate)."""
    _, s = quantize_groups(x, ue8m0=False)
    s = torch.exp2(torch.floor(torch.log2(s)))
    g = x.float().reshape(x.shape[0], -1, 128) / s[..., None]
    return g.clamp(-448, 448).reshape(x.shape).to(torch.float8_e4m3fn), s


def _eps(eps: float):
    def quant(x, ue8m0=True):
        return quantize_groups(x, eps=eps, ue8m0=ue8m0)

    return quant


def _amax_off(x, ue8m0=True):
    """One group's scale from an amax 1% too large (a reduction over the wrong lanes, say)."""
    _, s = quantize_groups(x, ue8m0=ue8m0)
    s = s.clone()
    s[0, 0] = s[0, 0] * 1.01
    g = x.float().reshape(x.shape[0], -1, 128) / s[..., None]
    return g.clamp(-448, 448).reshape(x.shape).to(torch.float8_e4m3fn), s


QUANT_PLANTS: dict[str, tuple[str, Callable]] = {
    "ue8m0-down": (
        "UE8M0 activation scales rounded down, not up",
        lambda x, w, ws: _layer_gemm(x, w, ws, True, _floor_ue8m0),
    ),
    "eps-1e-4": (
        "eps 1e-4 instead of 1e-10 (tiny groups flush)",
        lambda x, w, ws: _layer_gemm(x, w, ws, True, _eps(1e-4)),
    ),
    "amax-one-group": (
        "one group's fp32 scale 1% too large (VLLM_USE_DEEP_GEMM_E8M0=0)",
        lambda x, w, ws: _layer_gemm(x, w, ws, True, _amax_off),
    ),
    "sfa-row-major": (
        "DeepGEMM reads the activation scales row-major (a layout mismatch)",
        lambda x, w, ws: _transposed_sfa(_layer_gemm(x, w, ws, True)),
    ),
}


def _transposed_sfa(p: BlockScaledProblem) -> BlockScaledProblem:
    """The activation scales read with the other layout: element (i, kb) taken from (kb, i) of the
    column-major storage viewed row-major."""
    flat = p.a_scale.t().contiguous().reshape(-1)
    return replace(p, a_scale=column_major(flat.reshape(p.a_scale.shape)))


def run_quant(examples: int, seed: int = 0) -> dict:
    """Each quantization plant on the same layer problems (DeepGEMM's default on an H100: UE8M0
    activations, E8M0 weights; ``tiny`` activations for the eps plant's groups): which check fails."""
    r = random.Random(seed)
    rows = []
    layers = []
    for _ in range(examples):
        spec = LayerSpec(
            m=r.randint(1, 32), n=64 * r.randint(2, 8), k=K, act=r.choice(ACT_REGIMES), seed=r.getrandbits(32)
        )
        lp = build_layer(spec)
        layers.append(lp)
    for name, (what, make) in QUANT_PLANTS.items():
        first: dict[str, int | None] = dict.fromkeys(CHECKS)
        ue8m0 = name != "amax-one-group"
        alarms = dict.fromkeys(CHECKS, 0)
        for i, lp in enumerate(layers):
            good = _layer_gemm(lp.x, lp.w, lp.w_scale, ue8m0)
            exp = emulate(good)
            control = caught(good, exp, exp)
            bad = emulate(make(lp.x, lp.w, lp.w_scale))
            for check, (fails, _value) in caught(good, bad, exp).items():
                alarms[check] += control[check][0]
                if fails and not control[check][0] and first[check] is None:
                    first[check] = i + 1
        rows.append({"plant": name, "what": what, "first_failing_example": first, "control_alarms": alarms})
        print(f"[sensitivity] {name}: {first}", file=sys.stderr, flush=True)
    return {"examples": examples, "seed": seed, "plants": rows}


def specs(count: int, seed: int = 0) -> list[ProblemSpec]:
    """Problems with K = 7168: M up to 32, N up to 512 (partial blocks in), quantized data (what a model
    feeds the GEMM, and what upstream's metrics are meant for)."""
    r = random.Random(seed)
    return [
        ProblemSpec(
            m=r.randint(1, 32),
            n=16 * r.randint(8, 32),
            k=K,
            out_dtype=r.choice(("bfloat16", "float16")),
            values="quantized",
            scales=r.choice(("fp32", "ue8m0")),
            seed=r.getrandbits(32),
        )
        for _ in range(count)
    ]


def caught(p: BlockScaledProblem, bad: torch.Tensor, expected: torch.Tensor) -> dict[str, tuple[bool, float]]:
    """Each check's verdict on ``bad``: (fails, its number: ulps, error/bound or the metric)."""
    o = oracle(p)
    ve = judge_exact(bad, expected, p, "planted")
    vb = judge(bad, o, p, "planted")
    ref = o.ref.to(p.out_dtype)
    rel, cd = vllm_rel_diff(bad, ref), calc_diff(bad, o.ref)
    return {
        "bit-exact": (not ve.ok, float(ve.max_ulps)),
        "derived bound": (not vb.ok, vb.max_ratio),
        "vLLM metric": (not rel < THRESHOLD, rel),
        "calc_diff": (not cd < THRESHOLD, cd),
    }


def run(examples: int, seed: int = 0) -> dict:
    """Every plant on the same ``examples`` problems. A check catches a plant at the first example where
    it fails the planted output *and passes the correct one* (a check that fails the correct output
    there -- a false alarm, counted in the control row -- tells nothing about the plant)."""
    problems = [build(s) for s in specs(examples, seed)]
    expected = [emulate(p) for p in problems]
    control = [caught(p, e, e) for p, e in zip(problems, expected, strict=True)]
    rows = [
        {
            "plant": "control",
            "what": "the correct output (false alarms)",
            "false_alarms": {c: sum(v[c][0] for v in control) for c in CHECKS},
            "worst": {c: max(v[c][1] for v in control) for c in CHECKS},
        }
    ]
    for name, (what, plant) in PLANTS.items():
        r = random.Random(f"{seed}-{name}")
        first: dict[str, int | None] = dict.fromkeys(CHECKS)
        worst: dict[str, float] = dict.fromkeys(CHECKS, 0.0)
        t0 = time.time()
        for i, (p, exp) in enumerate(zip(problems, expected, strict=True)):
            for check, (fails, value) in caught(p, plant(p, exp, r), exp).items():
                worst[check] = max(worst[check], value if value == value else float("inf"))
                if fails and not control[i][check][0] and first[check] is None:
                    first[check] = i + 1
        rows.append(
            {
                "plant": name,
                "what": what,
                "first_failing_example": first,
                "worst": worst,
                "seconds": round(time.time() - t0, 1),
            }
        )
        print(f"[sensitivity] {name}: {first}", file=sys.stderr, flush=True)
    return {
        "examples": examples,
        "seed": seed,
        "k": K,
        "specs": [replace(s).to_dict() for s in specs(examples, seed)],
        "plants": rows,
    }


def markdown(doc: dict) -> str:
    n = doc["examples"]

    def cell(row: dict, check: str) -> str:
        if "false_alarms" in row:
            k = row["false_alarms"][check]
            return f"**{k}/{n} false alarms**" if k else f"0/{n} false alarms"
        i = row["first_failing_example"][check]
        return f"**caught** at example {i}" if i else f"missed ({n} examples)"

    body = [[f"`{r['plant']}`: {r['what']}", *(cell(r, c) for c in CHECKS)] for r in doc["plants"]]
    return "\n".join(markdown_table(["planted error", *CHECKS], body)) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m fp8_verify.tools.sensitivity", description=__doc__.splitlines()[0]
    )
    ap.add_argument("--examples", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--md", help="write the Markdown table here")
    ap.add_argument("--quant", action="store_true", help="the quantization and scale-layout plants")
    args = ap.parse_args(argv)
    if args.quant:
        doc = run_quant(args.examples, args.seed)
        if args.json:
            Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")
        print(markdown(doc))
        return 0
    doc = run(args.examples, args.seed)
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")
    text = markdown(doc)
    if args.md:
        Path(args.md).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
