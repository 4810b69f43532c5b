"""A run's record as JSON (schema ``fp8-verify-bench/1``), CSV and Markdown, and the helpers that read a
run record (also one loaded from an older file, for ``--compare``). No torch here: a record is plain
dicts and lists."""

from __future__ import annotations

import csv
import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any

from ...report.tables import markdown_table
from .config import Config
from .measure import RESOLVED

SCHEMA = "fp8-verify-bench/1"

CSV_FIELDS = (
    "label",
    "vllm",
    "device",
    "shape",
    "model",
    "layer",
    "n",
    "k",
    "m",
    "m_mod4",
    "m_kernel",
    "path",
    "graph_us",
    "graph_spread",
    "graph_rounds",
    "graph_converged",
    "graph_tflops",
    "graph_peak_frac",
    "eager_us",
    "eager_spread",
    "eager_rounds",
    "eager_converged",
    "eager_tflops",
    "eager_peak_frac",
    "n_sets",
    "bitwise_equal_bypass",
    "max_abs_diff_bypass",
    "error",
)

# -- reading a run record ---------------------------------------------------------------------------


def paths_in(run: dict) -> list[str]:
    """The paths with rows, in the run's table order (its ``paths`` record)."""
    seen = {r["path"] for r in run["rows"]}
    return [p for p in run["paths"] if p in seen]


def baseline_of(run: dict) -> str:
    """The path the others are compared with; files written before the key existed list it first."""
    return run.get("baseline") or next(iter(run["paths"]))


def find(rows: list[dict], sid: str, m: int, path: str) -> dict | None:
    return next((r for r in rows if r["shape"] == sid and r["m"] == m and r["path"] == path), None)


def _nk(rows: list[dict], sid: str) -> str:
    r = next(r for r in rows if r["shape"] == sid)
    return f"{r['n']} x {r['k']}"


def tag(label: str) -> str:
    """``label`` as a file name part (``0.23.0`` -> ``vllm-0.23.0``)."""
    keep = "".join(c if c.isalnum() or c in "._-" else "_" for c in label)
    return f"vllm-{keep}" if keep[:1].isdigit() else keep


def fmt(x: float | None, nd: int = 1) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def _pct(x: float | None) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:+.1f}%"


def _spread_pct(r: dict, mode: str) -> float | None:
    s = r.get(f"{mode}_spread")
    return None if s is None or math.isinf(s) else 100 * s


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table and the blank line after it."""
    return [*markdown_table(header, rows), ""]


# -- CSV and JSON ---------------------------------------------------------------------------------


def write_csv(path: Path, runs: dict[str, dict]) -> None:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        w.writeheader()
        for run in runs.values():
            for r in run["rows"]:
                w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in CSV_FIELDS})


def _clean(o: Any) -> Any:
    """JSON-safe: NaN and infinities become null (strict JSON has neither)."""
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_clean(v) for v in o]
    return o


def dump(doc: dict) -> str:
    return json.dumps(_clean(doc), indent=1, default=str, allow_nan=False) + "\n"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- Markdown -------------------------------------------------------------------------------------


def _header(run: dict) -> list[str]:
    env, c = run["env"], run["config"]
    prod = run.get("production_path")
    L = [f"## fp8-verify bench: {run['label']}", ""]
    L += [
        f"- vLLM {env['vllm']}, torch {env['torch']}, fp8-verify {env['fp8_verify']}",
        f"- device: {env['device']}; kernel: {env['backend']} ({env['backend_reason']})",
        f"- FP8 dense peak used: {env.get('peak_tflops')} TFLOP/s ({env.get('peak_source')})",
        f"- torch.compile backend: {env.get('compile_backend')}; graphs compiled: {run.get('compile_count')}",
        f"- production path (what CutlassFp8BlockScaledMMKernel calls on Hopper): "
        f"`{prod}` (`{env.get('production_op')}` inside torch.compile)",
        f"- timer: {env['timer']}; target spread {c['target_spread']:.0%}, rounds "
        f"{c['min_rounds']}..{c['max_rounds']} (eager ..{c.get('max_rounds_eager')}), "
        f"{c['samples_per_round']} samples/round",
        f"- wall time {run.get('wall_s', 0):.0f} s"
        + (f"; TRUNCATED: {run['truncated']}" if run.get("truncated") else ""),
        "",
    ]
    if env.get("nvidia_smi_start"):
        L += [
            f"- nvidia-smi at start: `{env['nvidia_smi_start']}`",
            f"- nvidia-smi at end: `{env.get('nvidia_smi_end')}`",
            "",
        ]
    L += ["Paths:", ""]
    for name, info in run["paths"].items():
        state = "timed" if info["available"] else f"not timed: {info['reason']}"
        L.append(f"- `{name}` ({info['origin']}): {info['what']} -- {state}")
    return [*L, ""]


def _summary(run: dict, shapes: list[str], peak: float | None) -> list[str]:
    """The production path per shape at a few M."""
    rows, prod = run["rows"], run.get("production_path")
    pick = [m for m in (1, 4, 16, 128, 1024, 4096, 8192) if any(r["m"] == m for r in rows)]
    body = []
    for sid in shapes:
        cells = [f"{sid} ({_nk(rows, sid)})"]
        for m in pick:
            r = find(rows, sid, m, prod)
            if r is None or r.get("graph_us") is None:
                cells.append("")
                continue
            frac = f", {r['graph_tflops'] / peak:.0%}" if peak else ""
            cells.append(f"{r['graph_us']:.1f} us, {r['graph_tflops']:.0f} TF/s{frac}")
        body.append(cells)
    L = [f"### Summary: `{prod}`, CUDA-graph time, TFLOP/s and fraction of peak", ""]
    return L + table(["shape (N x K)"] + [f"M={m}" for m in pick], body)


def _overhead(ov: list[dict], shapes: list[str]) -> list[str]:
    L = [
        "### Padding overhead: t_a / t_b - 1 (paired by round), median over the M of the "
        "class [min, max]; resolved: M where the ratios' IQR excludes 0 and |median| > "
        f"{RESOLVED:.0%}",
        "",
    ]
    metrics = list(dict.fromkeys(o["metric"] for o in ov))
    body = []
    for sid in shapes:
        for aligned in (True, False):
            for met in metrics:
                xs = [
                    o
                    for o in ov
                    if o["shape"] == sid and o["metric"] == met and (o["m_mod4"] == 0) == aligned
                ]
                if not xs:
                    continue
                cells = [sid, "M%4==0" if aligned else "M%4!=0", f"`{met}`"]
                for mode in ("graph", "eager"):
                    v = [o[mode] for o in xs if o.get(mode) is not None]
                    rng = f" [{_pct(min(v))}, {_pct(max(v))}]" if v else ""
                    cells.append(f"{_pct(statistics.median(v))}{rng}" if v else "")
                nres = sum(bool(o.get("graph_resolved")) for o in xs)
                cells.append(f"{nres}/{len(xs)}")
                body.append(cells)
    return L + table(["shape", "M class", "metric", "graph", "eager", "graph resolved"], body)


def _launches(launches: dict[str, dict]) -> list[str]:
    body = []
    for name, per_m in launches.items():
        for m, info in per_m.items():
            if "error" in info:
                body.append([f"`{name}`", m, "", info["error"]])
            else:
                body.append([f"`{name}`", m, str(info["count"]), ", ".join(info["launches"])])
    L = ["### What one call launches (torch.profiler; first shape)", ""]
    return L + table(["path", "M", "launches", "kernels / ops"], body)


def _times(run: dict, sid: str, mode: str, peak: float | None) -> list[str]:
    """Every path at every M of one shape, in one timing mode."""
    rows, paths, base = run["rows"], paths_in(run), baseline_of(run)
    key = run.get("production_path") or base
    ms = sorted({r["m"] for r in rows if r["shape"] == sid})
    body = []
    for m in ms:
        cells = [str(m)]
        for pth in paths:
            r = find(rows, sid, m, pth)
            if r is None:
                cells.append("")
            elif r.get("error"):
                cells.append("error")
            else:
                at = f" @{r['m_kernel']}" if pth == base and r["m_kernel"] != m else ""
                cells.append(f"{fmt(r.get(f'{mode}_us'))} ({fmt(_spread_pct(r, mode), 1)}%){at}")
        r = find(rows, sid, m, key)
        tf = r.get(f"{mode}_tflops") if r else None
        cells.append(fmt(tf, 0))
        if peak:
            cells.append(fmt(100 * tf / peak, 1) if tf else "")
        body.append(cells)
    L = [f"### {sid} ({_nk(rows, sid)}): {mode} time, us (spread)", ""]
    return L + table(["M", *paths, f"{key} TF/s"] + (["% peak"] if peak else []), body)


def markdown_run(run: dict) -> str:
    """The run as Markdown: environment, summary, padding overheads, launches, full tables."""
    peak = run["env"].get("peak_tflops")
    rows = run["rows"]
    shapes = list(dict.fromkeys(r["shape"] for r in rows))
    L = _header(run)
    if run.get("production_path") in paths_in(run):
        L += _summary(run, shapes, peak)
    if run.get("overhead"):
        L += _overhead(run["overhead"], shapes)
    if run.get("launches"):
        L += _launches(run["launches"])
    for sid in shapes:
        for mode in ("graph", "eager"):
            if any(r.get(f"{mode}_us") is not None for r in rows if r["shape"] == sid):
                L += _times(run, sid, mode, peak)
    errs = [r for r in rows if r.get("error")]
    if errs:
        L += ["### Errors", ""]
        L += [f"- {r['shape']} M={r['m']} `{r['path']}`: {r['error']}" for r in errs]
        L += [""]
    return "\n".join(L)


def write_outputs(run: dict, cfg: Config) -> list[Path]:
    """``bench-<label>.{json,csv,md}`` under ``--out`` (rewritten after every shape: a cut run keeps
    what it measured)."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    t = tag(run["label"])
    files = [out / f"bench-{t}.json", out / f"bench-{t}.csv", out / f"bench-{t}.md"]
    files[0].write_text(dump({"schema": SCHEMA, "runs": {run["label"]: run}}))
    write_csv(files[1], {run["label"]: run})
    files[2].write_text(markdown_run(run) + "\n")
    return files
