"""``--compare A.json B.json``: runs made with different vLLM releases (or devices) in one table and
plot. Needs no GPU and no torch: it reads the JSON records only."""

from __future__ import annotations

import json
from pathlib import Path

from ...errors import UsageError
from .config import Config
from .outputs import SCHEMA, baseline_of, dump, find, fmt, log, paths_in, table, write_csv
from .plot import plot


def _load(files: list[str]) -> dict[str, dict]:
    """Every run in ``files``, keyed by its label (the file's stem added where labels repeat)."""
    runs: dict[str, dict] = {}
    for f in files:
        p = Path(f)
        try:
            doc = json.loads(p.read_text())
        except (OSError, ValueError) as e:
            raise UsageError(f"bench --compare: cannot read {f}: {e}") from None
        if doc.get("schema") != SCHEMA:
            raise UsageError(f"bench --compare: {f} is not a {SCHEMA} file")
        for label, run in doc["runs"].items():
            key = label if label not in runs else f"{label} ({p.stem})"
            run["label"] = key
            runs[key] = run
    if not runs:
        raise UsageError("bench --compare: no runs in the given files")
    return runs


def compare(files: list[str], cfg: Config) -> int:
    """Merge bench JSON files (each keyed by its run label) into one CSV, Markdown table and plot.
    Matches (shape, M); compares each run's baseline and its own production path (``--paths``
    picks others; ``production`` names each run's)."""
    runs = _load(files)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    sel: dict[str, list[str]] = {}
    for label, run in runs.items():
        want = cfg.paths or [baseline_of(run), "production"]
        names = [run.get("production_path") if w == "production" else w for w in want]
        sel[label] = [n for n in dict.fromkeys(names) if n in paths_in(run)]
    (out / "compare.json").write_text(dump({"schema": SCHEMA, "runs": runs}))
    write_csv(out / "compare.csv", runs)
    devices = {label: run["env"]["device"] for label, run in runs.items()}
    L = ["## fp8-verify bench: comparison", ""]
    L += [
        f"- `{label}`: vLLM {run['env']['vllm']}, torch {run['env']['torch']}, {devices[label]}, "
        f"production path `{run.get('production_path')}`"
        for label, run in runs.items()
    ]
    if len(set(devices.values())) > 1:
        L += ["", "**Runs come from different devices: compare with care.**"]
    L.append("")
    cols = [(label, pth) for label in runs for pth in sel[label]]
    order = list(dict.fromkeys(r["shape"] for run in runs.values() for r in run["rows"]))
    keys = sorted(
        {(r["shape"], r["m"]) for run in runs.values() for r in run["rows"]},
        key=lambda x: (order.index(x[0]), x[1]),
    )
    base = cols[0] if cols else None
    for mode in ("graph", "eager"):
        L += [f"### {mode} time per call, us (ratio to `{base[0]}: {base[1]}`)" if base else "", ""]
        body = []
        for sid, m in keys:
            cells = [sid, str(m)]
            tb = None
            for label, pth in cols:
                r = find(runs[label]["rows"], sid, m, pth)
                t = r.get(f"{mode}_us") if r else None
                if (label, pth) == base:
                    tb = t
                ratio = f" ({t / tb:.3f})" if t is not None and tb and (label, pth) != base else ""
                cells.append(f"{fmt(t)}{ratio}")
            body.append(cells)
        L += table(["shape", "M", *[f"{lb}: {p}" for lb, p in cols]], body)
    (out / "compare.md").write_text("\n".join(L) + "\n")
    files = [out / "compare.json", out / "compare.csv", out / "compare.md"]
    if cfg.plot:
        for mode in ("graph", "eager"):
            png = out / f"compare-{mode}.png"
            why = plot(runs, png, mode, sel, title=f"{mode} time: " + " vs ".join(runs))
            if why:
                log(why)
            else:
                files.append(png)
    log("wrote " + ", ".join(str(f) for f in files))
    return 0
