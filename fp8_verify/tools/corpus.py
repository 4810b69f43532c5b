"""The hardware corpus: real-kernel answers captured on Hopper, replayed by the CPU tier.

``capture`` runs a fixed list of problems (:func:`cases`) through the registry's rows on the real kernels
and writes, per problem, a hash of the output bits (and for layer rows what vLLM decided, so that the
emulation can be composed the same way). The problems' numbers are drawn on the CPU from their specs, so
any machine rebuilds the same inputs. ``replay`` (``tests/test_corpus.py``, CPU CI) rebuilds each
problem and computes it again: through the row on the CPU doubles where the installed release is the
captured one and the row runs here (vLLM's routing and the doubles), else through the emulation of the
row's kernel arithmetic alone. Every replayed hash must equal the hardware's: this is what the CPU tier
knows of the hardware that it did not compute itself.

    python -m fp8_verify.tools.corpus capture --out docs/corpus/h100-vllm-0.23.0.json   # on Hopper
    python -m fp8_verify.tools.corpus replay docs/corpus/*.json                          # anywhere
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..judge.exact import emulate
from ..judge.family import gemm_view
from ..numerics.quant import quantize_groups
from ..problem import ProblemSpec, build
from ..problem.layer import LayerSpec, build_layer
from ..subject.kernels import KERNELS
from ..subject.layer import Decisions
from ..subject.registry import GEMM, LAYER, QUANT, default
from ..subject.vllm import load


@dataclass(frozen=True)
class Case:
    path: str
    spec: ProblemSpec | LayerSpec

    def key(self) -> str:
        return f"{self.path} {json.dumps(self.spec.to_dict(), sort_keys=True)}"


def _g(m, n, k, **kw) -> ProblemSpec:
    return ProblemSpec(m=m, n=n, k=k, seed=kw.pop("seed", m * 7919 + n * 31 + k), **kw)


def _l(m, n, k, **kw) -> LayerSpec:
    return LayerSpec(m=m, n=n, k=k, seed=kw.pop("seed", m * 104729 + n * 17 + k), **kw)


def gemm_specs() -> list[ProblemSpec]:
    """GEMM problems: both SM90 kernels of vLLM's dispatch (per-token: K <= 128 and N <= 128, both sides
    of M = 64), partial N tiles and K blocks, every value and scale regime, both output dtypes, odd M
    (swap_ab from 0.24), more than one wave of tiles, and real checkpoints' layers at small M."""
    out = [
        _g(4, 128, 128),
        _g(8, 96, 112, out_dtype="float16"),
        _g(64, 128, 64, values="random", scales="narrow"),
        _g(72, 112, 128, values="random", scales="wide"),
        _g(8, 272, 640),
        _g(12, 400, 1008, out_dtype="float16"),
        _g(4, 256, 384, values="random", scales="pow2"),
        _g(8, 384, 256, values="extreme", scales="narrow", out_dtype="float16"),
        _g(4, 256, 512, values="extreme", scales="huge", out_dtype="float16"),
        _g(16, 256, 256, values="subnormal", scales="tiny"),
        _g(8, 512, 1024, values="sparse", scales="wide"),
        _g(20, 640, 768, scales="ue8m0", row_spread=3),
        _g(1024, 512, 1024),
        _g(5, 256, 384),
        _g(7, 320, 640, out_dtype="float16"),
        _g(33, 576, 640, values="random", scales="narrow"),
        _g(4, 2112, 7168),
        _g(32, 1536, 7168, out_dtype="float16"),
        _g(8, 7168, 2048),
        _g(3, 4096, 4096, scales="ue8m0"),
    ]
    return out


def layer_specs() -> list[LayerSpec]:
    """Layer problems: every activation regime, both weight-scale regimes, fp16 activations, odd M,
    real checkpoints' layers at small M."""
    return [
        _l(4, 256, 512),
        _l(5, 128, 256, act="outliers"),
        _l(8, 384, 384, act="sparse", weights="ue8m0"),
        _l(3, 192, 128, act="tiny"),
        _l(16, 512, 1024, row_spread=3),
        _l(7, 256, 256, act_dtype="float16"),
        _l(64, 640, 768, weights="ue8m0"),
        _l(2, 2112, 7168),
        _l(4, 7168, 2048, weights="ue8m0"),
    ]


def cases() -> list[Case]:
    """The corpus's problems for every row that has an arithmetic to replay (GEMM rows whose kernel
    takes the spec; all layer and quantization rows)."""
    out = []
    for spec in default().specs():
        if not spec.exact or spec.compiled:  # compiled routes: their own properties, same kernels
            continue
        rules = spec.rules
        if spec.family == GEMM:
            for g in gemm_specs():
                if (
                    g.n % rules.n_multiple == 0
                    and g.k % rules.k_multiple == 0
                    and g.out_dtype in rules.out_dtypes
                ):
                    out.append(Case(spec.name, g))
        else:
            for lay in layer_specs():
                if lay.n % rules.n_multiple == 0 and lay.out_dtype in rules.out_dtypes:
                    out.append(Case(spec.name, lay))
    return out


def _canonical_bytes(t: torch.Tensor) -> bytes:
    """The tensor's bits with every NaN made 0x7FFF (bf16/fp16) or 0x7FC00000 (fp32): payloads differ
    between the hardware and the CPU, NaN-ness does not."""
    t = t.detach().cpu().reshape(-1).clone()  # logical order; a [M, 1] column-major view is "contiguous"
    if t.is_floating_point() and t.element_size() >= 2:
        nan = torch.isnan(t)
        if nan.any():
            canon = {2: 0x7FFF, 4: 0x7FC00000}[t.element_size()]
            ints = t.view({2: torch.int16, 4: torch.int32}[t.element_size()]).clone()
            ints[nan] = canon
            t = ints
    return t.view(torch.uint8).numpy().tobytes()


def digest(out) -> str:
    """sha256 of an output's canonical bits (a quantization row's ``(q, scales)``: both, scales read in
    logical order)."""
    h = hashlib.sha256()
    parts = out if isinstance(out, tuple) else (out,)
    for t in parts:
        h.update(_canonical_bytes(t))
    return h.hexdigest()


def _build(spec, device) -> object:
    if isinstance(spec, LayerSpec):
        return build_layer(spec, device, draw_on_device=False)
    return build(spec, device, draw_on_device=False)


def capture(out_path: Path, only: list[str] | None = None) -> dict:
    """Run every case on the kernels loaded here and write the corpus (see the module docstring)."""
    s = load()
    reg = default()
    entries, t0 = [], time.time()

    def write(complete: bool) -> dict:  # after every entry: a run stopped by its time limit keeps them
        doc = {
            "vllm": s.vllm_version,
            "torch": s.torch_version,
            "device": s.device_name(),
            "kernel": s.kernel,
            "seconds": round(time.time() - t0, 1),
            "complete": complete,
            "entries": entries,
        }
        out_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = out_path.with_suffix(".part")
        tmp.write_text(json.dumps(doc, indent=1) + "\n")
        tmp.replace(out_path)
        return doc

    for case in cases():
        if only and case.path not in only:
            continue
        path = reg.get(case.path)
        if not path.available:
            continue
        entry = {"path": case.path, "family": path.family, "spec": case.spec.to_dict()}
        try:
            p = _build(case.spec, s.device)
            if path.family == GEMM and not path.m_rule.admits(p.m):
                continue
            prepared = path.prepare(p)
            out = prepared.fn(*prepared.inputs)
            if path.family == QUANT:
                out = (out[0], out[1].contiguous())
            entry["sha256"] = digest(out)
            d = prepared.decisions or path.decisions(p)
            if d is not None:
                entry["decisions"] = d.to_dict()
        except Exception as e:  # a rejection is a hardware answer too
            entry["error"] = (
                f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"[:300]
            )
        entries.append(entry)
        write(complete=False)
    return write(complete=True)


@dataclass
class Replayed:
    path: str
    spec: dict
    how: str  # "route" (the row on the CPU doubles) or "arithmetic" (the emulation alone)
    ok: bool
    detail: str = ""


def _spec_of(entry: dict):
    d = dict(entry["spec"])
    d["block"] = tuple(d["block"])
    return LayerSpec(**d) if entry["family"] != GEMM else ProblemSpec(**d)


def _decisions(entry: dict) -> Decisions:
    d = entry["decisions"]
    return Decisions(
        d["kernel_class"],
        KERNELS.get(d["kernel"]) if d.get("kernel") else None,
        act_ue8m0=d["act_ue8m0"],
        act_scale_layout=d["act_scale_layout"],
        weight_ue8m0=d["weight_ue8m0"],
    )


def replay_entry(entry: dict, release: str | None, captured: str | None) -> Replayed:
    """Compute one captured entry again here (see the module docstring); never raises."""
    spec = _spec_of(entry)
    reg = default()
    path = reg.get(entry["path"]) if entry["path"] in reg else None
    via_route = path is not None and path.available and release == captured and load().kernel == "double"
    how = "route" if via_route else "arithmetic"
    try:
        p = _build(spec, "cpu")
        if via_route:
            out = path.run(p)
            if entry["family"] == QUANT:
                out = (out[0], out[1].contiguous())
        elif entry["family"] == QUANT:
            d = _decisions(entry)
            out = quantize_groups(p.x, ue8m0=d.act_ue8m0)
        else:
            d = _decisions(entry) if entry["family"] == LAYER else None
            kernel = d.kernel if d else KERNELS[path.kernel if path else ""]
            arithmetic = kernel.arithmetic_for(p.m, p.n, p.k)
            if arithmetic is None:
                return Replayed(entry["path"], entry["spec"], "not modelled", True, f"{kernel.name} here")
            out = emulate(gemm_view(p, d), arithmetic)
    except Exception as e:
        if "error" in entry:
            return Replayed(entry["path"], entry["spec"], how, True, f"rejected here too: {type(e).__name__}")
        return Replayed(entry["path"], entry["spec"], how, False, f"{type(e).__name__}: {e}")
    if "error" in entry:
        return Replayed(entry["path"], entry["spec"], how, how == "arithmetic", f"hardware: {entry['error']}")
    got = digest(out)
    ok = got == entry["sha256"]
    return Replayed(
        entry["path"], entry["spec"], how, ok, "" if ok else f"hash {got[:12]} != {entry['sha256'][:12]}"
    )


def replay(corpus: Path) -> list[Replayed]:
    doc = json.loads(corpus.read_text())
    release = load().vllm_version
    return [replay_entry(e, release, doc["vllm"]) for e in doc["entries"]]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fp8_verify.tools.corpus", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("capture", help="run the corpus on the kernels loaded here and write it")
    c.add_argument("--out", type=Path, required=True)
    c.add_argument("--paths", nargs="*", help="only these rows")
    r = sub.add_parser("replay", help="recompute captured corpora here and compare")
    r.add_argument("corpora", nargs="+", type=Path)
    args = ap.parse_args(argv)
    if args.cmd == "capture":
        doc = capture(args.out, args.paths)
        bad = [e for e in doc["entries"] if "error" in e]
        print(f"{len(doc['entries'])} entries ({len(bad)} rejected) in {doc['seconds']} s on {doc['device']}")
        return 0
    failed = 0
    for corpus in args.corpora:
        results = replay(corpus)
        bad = [r for r in results if not r.ok]
        failed += len(bad)
        print(f"{corpus}: {len(results) - len(bad)} of {len(results)} replayed equal")
        for r in bad:
            print(f"  {r.path} {r.spec}: {r.detail} ({r.how})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
