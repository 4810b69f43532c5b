"""Latency-vs-M plots (matplotlib, optional): a subplot per shape, a line per (run, path); and the
overhead plot, each path's time over the baseline's, where the log-log plot hides the differences."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from .config import Config
from .measure import paired
from .outputs import baseline_of, log, paths_in, tag

MARKERS = "os^vDxP*hX"


def _points(run: dict, sid: str, pth: str, mode: str, ratio: bool) -> list[tuple[int, float]]:
    """``(M, time)``, or ``(M, percent over the baseline)`` paired by round as in the overhead table."""
    mine = sorted(
        (
            r
            for r in run["rows"]
            if r["shape"] == sid and r["path"] == pth and r.get(f"{mode}_us") is not None
        ),
        key=lambda r: r["m"],
    )
    if not ratio:
        return [(r["m"], r[f"{mode}_us"]) for r in mine]
    base = {
        r["m"]: r
        for r in run["rows"]
        if r["shape"] == sid and r["path"] == baseline_of(run) and r.get(f"{mode}_us")
    }
    return [
        (r["m"], 100 * (statistics.median(paired(r, base[r["m"]], mode)) - 1)) for r in mine if r["m"] in base
    ]


def plot(
    runs: dict[str, dict],
    png: Path,
    mode: str,
    only: dict[str, list[str]] | None = None,
    title: str = "",
    ratio: bool = False,
) -> str | None:
    """Latency vs M, log-log, a subplot per shape, a line per (run, path); says why if no plot.
    ``ratio``: each path's time over its run's baseline at the same M, in percent (linear axis):
    where the paths differ, which the log-log latency plot hides."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.lines import Line2D
    except ImportError:
        return "matplotlib is not installed: no plot"
    shapes = list(dict.fromkeys(r["shape"] for run in runs.values() for r in run["rows"]))
    if not shapes:
        return "nothing to plot"
    ncol = min(3, len(shapes))
    nrow = math.ceil(len(shapes) / ncol)
    fig, axes = plt.subplots(
        nrow, ncol, figsize=(5.2 * ncol, 3.8 * nrow + 0.8), squeeze=False, layout="constrained"
    )
    styles = ["-", "--", ":", "-."]
    every = list(dict.fromkeys(p for run in runs.values() for p in run["paths"]))
    colors = {p: f"C{i}" for i, p in enumerate(every)}
    markers = {p: MARKERS[i % len(MARKERS)] for i, p in enumerate(every)}
    for ax, sid in zip(axes.flat, shapes, strict=False):
        for ri, (label, run) in enumerate(runs.items()):
            for pth in (only or {}).get(label) or paths_in(run):
                if ratio and pth == baseline_of(run):
                    continue
                pts = _points(run, sid, pth, mode, ratio)
                if not pts:
                    continue
                kw = {"color": colors.get(pth), "marker": markers.get(pth, "."), "ms": 3.5}
                if len(runs) == 1:  # aligned and unaligned M as two lines: no zig-zag
                    for sel, ls, fill in ((0, "-", None), (1, ":", "none")):
                        xy = [p for p in pts if (p[0] % 4 != 0) == bool(sel)]
                        if xy:
                            name = pth if sel == 0 or all(q[0] % 4 for q in pts) else None
                            ax.plot(
                                [p[0] for p in xy], [p[1] for p in xy], ls, lw=1.1, mfc=fill, label=name, **kw
                            )
                else:
                    ax.plot(
                        [p[0] for p in pts],
                        [p[1] for p in pts],
                        styles[ri % len(styles)],
                        lw=1.1,
                        mfc="none",
                        label=f"{label}: {pth}",
                        **kw,
                    )
        nk = next(
            (f"N={r['n']} K={r['k']}" for run in runs.values() for r in run["rows"] if r["shape"] == sid), ""
        )
        ax.set_title(f"{sid}  {nk}", fontsize=9)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("M (tokens)")
        if ratio:
            ax.axhline(0, color="k", lw=0.6)
            ax.set_ylabel(f"{mode} time over {baseline_of(next(iter(runs.values())))} (%)")
        else:
            ax.set_yscale("log")
            ax.set_ylabel(f"{mode} time per call (us)")
        ax.grid(True, which="both", alpha=0.3)
    for ax in list(axes.flat)[len(shapes) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if len(runs) == 1:
        handles += [Line2D([], [], color="gray", ls="-"), Line2D([], [], color="gray", ls=":")]
        labels += ["M % 4 == 0", "M % 4 != 0"]
    fig.legend(
        handles,
        labels,
        loc="outside upper center",
        ncol=min(4, max(1, len(labels))),
        fontsize=8,
        title=title,
        title_fontsize=10,
        frameon=False,
    )
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return None


def write_plots(run: dict, cfg: Config) -> list[Path]:
    """``bench-<label>-{graph,eager,overhead}.png`` under ``--out``; says on stderr why one is missing."""
    out = Path(cfg.out)
    t = tag(run["label"])
    files = []
    for mode in ("graph", "eager") if cfg.eager else ("graph",):
        png = out / f"bench-{t}-{mode}.png"
        how = {"graph": "CUDA graph replay", "eager": "eager calls, launches included"}[mode]
        if run["env"]["backend"] != "real":
            how = "CPU double, plain calls: plumbing only, not a measurement"
        why = plot(
            {run["label"]: run},
            png,
            mode,
            title=f"vLLM {run['label']} on {run['env']['device']}: {mode} time ({how})",
        )
        if why:
            log(why)
        else:
            files.append(png)
    png = out / f"bench-{t}-overhead.png"
    base = baseline_of(run)
    at4 = any(r["path"] == base and r["m_kernel"] != r["m"] for r in run["rows"])
    title = f"vLLM {run['label']} on {run['env']['device']}: CUDA-graph time over {base} at the same M"
    title += f" ({base} at roundup(M, 4) where M % 4 != 0)" if at4 else ""
    if not plot({run["label"]: run}, png, "graph", title=title, ratio=True):
        files.append(png)
    return files
