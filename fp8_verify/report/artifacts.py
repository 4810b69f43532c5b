"""What a failing example leaves behind for the person reading the CI log: a standalone repro script
(torch and vLLM only) with its inputs, and an error-map PNG.

The plugin makes one :class:`ArtifactWriter` per session (a folder beside the report) and the
``fp8_record`` fixture hands it each failing verdict. Hypothesis runs the minimal failing example last,
so the files a test leaves are those of its shrunk counterexample. The call written into the script is
the path's own repro snippet (:class:`fp8_verify.subject.registry.PathSpec`).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from ..judge.bound import Oracle
from ..judge.verdict import Verdict
from ..problem import BlockScaledProblem
from ..subject.registry import GEMM, LAYER, GemmPath
from ..subject.vllm import Subject

#: The names a repro script gives a problem's inputs, by family (a row's repro snippet uses them).
INPUT_NAMES = {GEMM: ("a", "b", "a_s", "b_s"), LAYER: ("x", "w", "w_s")}

SCRIPT = '''"""fp8-verify repro: {test} -- {path} on {problem}

Needs only torch and vLLM ({vllm}); inputs, float64 reference and the FP8 bound are in {data}.
Run it (python {script}) on a machine like the one that failed ({device}).
Exit status 1 while the output is outside the bound, 0 when it is within.
"""

import sys
from pathlib import Path

import torch

d = torch.load(Path(__file__).with_name("{data}"), weights_only=True)
dev = "cuda" if torch.cuda.is_available() else "cpu"
{names} = (d[k].to(dev) for k in {keys})  # layouts kept
block, out_dtype = d["block"].tolist(), getattr(torch, "{dtype}")
ref, bound = d["ref"].to(dev), d["bound"].to(dev)
{call}
err = (out.double() - ref).abs()
bad = ~(err <= bound) & ~(torch.isnan(out) & torch.isnan(ref))
n = int(bad.sum())
if n:
    ratio = torch.nan_to_num(err / bound, nan=float("inf"))
    i, j = divmod(int(ratio.argmax()), ratio.shape[1])
    print(f"FAIL: {{n}} of {{err.numel()}} elements outside the FP8 bound; worst at ({{i}}, {{j}}): "
          f"out={{float(out[i, j])!r}} ref={{float(ref[i, j])!r}} bound={{float(bound[i, j]):.4g}}")
    sys.exit(1)
print("PASS: every element within the FP8 bound")
'''


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")[:120]


class ArtifactWriter:
    """Writes the repro script, its data and the error map of a failure into ``folder``."""

    def __init__(self, folder: Path, subject: Subject) -> None:
        self.folder = folder
        self.subject = subject

    def write(
        self, test: str, p: BlockScaledProblem, path: GemmPath, v: Verdict, out: torch.Tensor, o: Oracle
    ) -> dict[str, str]:
        """The files for this failure; returns their paths as ``{"repro": ..., "error_map": ...}``."""
        self.folder.mkdir(parents=True, exist_ok=True)
        stem = _safe(test) or "failure"
        data = f"{stem}.pt"
        names = INPUT_NAMES[path.family]
        torch.save(
            {
                **{k: t.cpu() for k, t in zip(names, p.args(), strict=True)},
                "block": torch.tensor(list(p.block)),
                "ref": o.ref.cpu(),
                "bound": o.bound.cpu(),
            },
            self.folder / data,
        )
        script = self.folder / f"{stem}.py"
        script.write_text(
            SCRIPT.format(
                test=test,
                path=path.name,
                problem=p.describe(),
                vllm=self.subject.vllm_version,
                data=data,
                script=script.name,
                device=self.subject.device_name(),
                dtype=str(p.out_dtype).removeprefix("torch."),
                names=", ".join(names),
                keys=repr(names),
                call=path.repro(),
            )
        )
        entry = {"repro": str(script)}
        png = error_map(out, o, p, v, self.folder / f"{stem}.png")
        if png:
            entry["error_map"] = str(png)
        return entry


def error_map(out: torch.Tensor, o: Oracle, p: BlockScaledProblem, v: Verdict, dest: Path) -> Path | None:
    """Rows by N-blocks, colour = worst |err| / bound in the cell (rows max-pooled above 512)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.colors import LogNorm
    except ImportError:
        return None
    ratio = torch.nan_to_num(((out.double() - o.ref).abs() / o.bound).cpu(), nan=1e6, posinf=1e6)
    bn = p.block[0]
    nb = -(-p.n // bn)
    cells = torch.nn.functional.pad(ratio, (0, nb * bn - p.n)).view(p.m, nb, bn).amax(dim=2)
    if p.m > 512:
        f = -(-p.m // 512)
        cells = torch.nn.functional.pad(cells, (0, 0, 0, f * 512 - p.m)).view(512, f, nb).amax(dim=1)
    fig, ax = plt.subplots(figsize=(max(7.0, min(14.0, 3 + 0.4 * nb)), 5))
    im = ax.imshow(
        cells.clamp_min(1e-4).numpy(),
        aspect="auto",
        interpolation="nearest",
        norm=LogNorm(vmin=1e-4, vmax=max(10.0, float(cells.max()))),
        cmap="magma",
    )
    fig.colorbar(im, ax=ax, label="max |out - ref| / bound in cell (>1 fails)")
    ax.set_xlabel(f"N-block ({bn} columns)")
    from matplotlib.ticker import FixedLocator, MaxNLocator

    for axis, count in ((ax.xaxis, nb), (ax.yaxis, cells.shape[0])):  # one tick per cell when few
        axis.set_major_locator(MaxNLocator(integer=True) if count > 32 else FixedLocator(range(count)))
    ax.set_ylabel("row" + (" (max-pooled)" if p.m > 512 else ""))
    import textwrap

    head = f"{v.path}: {v.bad_elements} elements in {len(v.bad_rows)} rows out of bound"
    ax.set_title(head + "\n" + textwrap.fill(p.describe(), 80), fontsize=8)
    fig.tight_layout()
    fig.savefig(dest, dpi=100)
    plt.close(fig)
    return dest
