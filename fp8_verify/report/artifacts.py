"""What a failing example leaves behind for the person reading the CI log: a standalone repro script
(torch and vLLM only) with its inputs, and an error-map PNG.

The plugin points :data:`DIR` at a folder beside the report and names the running test; the
within-bound check calls :func:`record_failure`. Hypothesis runs the minimal failing example last, so
the files a test leaves are those of its shrunk counterexample.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from .bound import Oracle
from .problem import BlockScaledProblem
from .verdict import Verdict

DIR: Path | None = None
TEST: str = "test"
WRITTEN: dict[str, dict[str, str]] = {}  # test -> {"repro": path, "error_map": path}

# How each path is called, written out with vLLM's own names only (no fp8-verify import).
CALLS = {
    "bypass": (
        "from vllm.model_executor.kernels.linear.scaled_mm.cutlass import cutlass_scaled_mm\n"
        "out = cutlass_scaled_mm(a, b, a_s, b_s, block, out_dtype)"
    ),
    "padded": "out = torch.ops.vllm.padded_cutlass(a, b, a_s, b_s, block, out_dtype)",
    "dynamic_eager": "out = torch.ops.vllm.dynamic_padded_cutlass(a, b, a_s, b_s, block, out_dtype)",
    "dynamic_compiled": (
        "from vllm.model_executor.kernels.linear.scaled_mm.cutlass import _dynamic_padded_cutlass\n"
        "for t in (a, a_s):\n    torch._dynamo.mark_dynamic(t, 0)\n"
        "f = torch.compile(lambda a, b, x, y: _dynamic_padded_cutlass(a, b, x, y, block, out_dtype),"
        " fullgraph=True)\nout = f(a, b, a_s, b_s)"
    ),
    "compiled_op": (
        "for t in (a, a_s):\n    torch._dynamo.mark_dynamic(t, 0)\n"
        "f = torch.compile(lambda a, b, x, y: torch.ops.vllm.dynamic_padded_cutlass("
        "a, b, x, y, block, out_dtype), fullgraph=True)\nout = f(a, b, a_s, b_s)"
    ),
}

SCRIPT = '''"""fp8-verify repro: {test} -- {path} on {problem}

Needs only torch and vLLM ({vllm}); inputs, float64 reference and the FP8 bound are in {data}.
Run it (python {script}) on a machine like the one that failed ({device}).
Exit status 1 while the output is outside the bound, 0 when it is within.
"""

import sys
from pathlib import Path

import torch

import vllm.model_executor.kernels.linear.scaled_mm.cutlass  # noqa: F401  registers the vLLM ops

d = torch.load(Path(__file__).with_name("{data}"), weights_only=True)
dev = "cuda" if torch.cuda.is_available() else "cpu"
a, b, a_s, b_s = (d[k].to(dev) for k in ("a", "b", "a_scale", "b_scale"))  # layouts kept
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


def record_failure(p: BlockScaledProblem, path: str, v: Verdict, out: torch.Tensor, o: Oracle) -> None:
    """Write the repro script, its data and the error map for this failure (if enabled)."""
    if DIR is None:
        return
    from .subject import load

    DIR.mkdir(parents=True, exist_ok=True)
    stem = _safe(f"{TEST}") or "failure"
    data = f"{stem}.pt"
    torch.save(
        {
            "a": p.a.cpu(),
            "b": p.b.cpu(),
            "a_scale": p.a_scale.cpu(),
            "b_scale": p.b_scale.cpu(),
            "block": torch.tensor(list(p.block)),
            "ref": o.ref.cpu(),
            "bound": o.bound.cpu(),
        },
        DIR / data,
    )
    s = load()
    script = DIR / f"{stem}.py"
    script.write_text(
        SCRIPT.format(
            test=TEST,
            path=path,
            problem=p.describe(),
            vllm=s.vllm_version,
            data=data,
            script=script.name,
            device=s.device_name(),
            dtype=str(p.out_dtype).removeprefix("torch."),
            call=CALLS[path],
        )
    )
    entry = {"repro": str(script)}
    png = error_map(out, o, p, v, DIR / f"{stem}.png")
    if png:
        entry["error_map"] = str(png)
    WRITTEN[TEST] = entry


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
