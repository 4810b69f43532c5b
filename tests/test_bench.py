"""Self-tests of ``fp8-verify bench`` that run on any machine: its dry run end to end on the CPU double
(every timed registry path gets its rows in every output), ``--compare`` on what it wrote, and the
package's shape (small modules, paths read from the registry, no CLI or plugin imports)."""

from __future__ import annotations

import argparse
import ast
import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from fp8_verify.subject import registry
from fp8_verify.subject.registry import CUTLASS_SM90
from fp8_verify.subject.releases import kernel_m_rule
from fp8_verify.subject.vllm import load
from fp8_verify.suite.findings import FINDINGS
from fp8_verify.tools.bench import main
from fp8_verify.tools.bench.outputs import CSV_FIELDS, SCHEMA

pytestmark = [pytest.mark.cpu, pytest.mark.selftest]

BENCH = Path(__file__).resolve().parent.parent / "fp8_verify" / "tools" / "bench"
MODULES = sorted(BENCH.glob("*.py"))
MAX_LINES = 400
MS = (3, 4)  # one M the kernel rejects (timed on roundup(M, 4) rows), one it takes
REFERENCE = "always_pad"


def _timed() -> dict[str, str]:
    """Path -> kernel of every path the bench should time here by default: the registry's rows with a
    bench label that are available (FV-001's are off without --include-dynamic-compiled), and the
    reference."""
    reg = registry.default()
    out = {
        s.name: s.kernel
        for s in reg.specs()
        if s.bench is not None and reg.get(s.name).available and not FINDINGS["FV-001"].where(s)
    }
    return {**out, REFERENCE: CUTLASS_SM90}


def _expected_rows() -> set[tuple[str, int]]:
    return {(p, m) for p in _timed() for m in MS if p != REFERENCE or m % 4 == 0}


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One dry run: the smaller tiny shape (a partial last N block), two M, no plots."""
    out = tmp_path_factory.mktemp("bench")
    extra = ["--dry-run", "--shapes", "tiny.partial_n", "--ms", ",".join(map(str, MS)), "--no-plot"]
    assert main(argparse.Namespace(out=str(out), quick=False), extra) == 0
    return out


def _only(out: Path, suffix: str) -> Path:
    (f,) = out.glob(f"bench-*{suffix}")
    return f


def test_dry_run_csv_has_a_row_per_timed_path(dry_run: Path):
    with _only(dry_run, ".csv").open() as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames or ()) == CSV_FIELDS
        rows = list(reader)
    assert {(r["path"], int(r["m"])) for r in rows} == _expected_rows()
    for r in rows:
        assert r["error"] == "", r
        assert float(r["graph_us"]) > 0 and float(r["eager_us"]) > 0, r
        if _timed()[r["path"]] == CUTLASS_SM90:
            # M=3: the kernel runs on 4 rows, whoever pads them, where it needs M % 4 == 0 (before 0.24)
            rows_run = 4 if kernel_m_rule(load().vllm_version).aligned else int(r["m"])
            assert int(r["m_kernel"]) == max(rows_run, int(r["m"])), r
            assert r["bitwise_equal_bypass"] == "True", r  # one kernel: the baseline's bits


def test_dry_run_json_records_every_bench_row(dry_run: Path):
    doc = json.loads(_only(dry_run, ".json").read_text())
    assert doc["schema"] == SCHEMA
    (run,) = doc["runs"].values()
    bench_rows = [s.name for s in registry.default().specs() if s.bench is not None]
    base = run["baseline"]
    assert list(run["paths"]) == [base, *(n for n in bench_rows if n != base), REFERENCE]  # baseline first
    assert {n for n, info in run["paths"].items() if info["available"]} == set(_timed())
    for name, info in run["paths"].items():
        assert info["available"] or info["reason"], name
    assert {(r["path"], r["m"]) for r in run["rows"]} == _expected_rows()
    assert run["production_path"] in _timed()
    if any(s.pads_m for s in registry.default().specs() if registry.default().get(s.name).available):
        assert run["overhead"], "no padding overheads derived"
    assert set(run["launches"]) == set(_timed())


def test_dry_run_markdown_has_every_timed_path(dry_run: Path):
    md = _only(dry_run, ".md").read_text()
    lines = md.splitlines()
    for mode in ("graph", "eager"):
        i = next(i for i, line in enumerate(lines) if line.endswith(f": {mode} time, us (spread)"))
        columns = [c.strip() for c in lines[i + 2].strip("|").split("|")]
        paths = [c for c in columns[1:] if "TF/s" not in c and "peak" not in c]  # the rest: TF/s, % of peak
        assert paths == list(_timed())  # M, a column per path, then the production path's rates
    for name in _timed():
        assert f"- `{name}` " in md and f"| `{name}` |" in md  # listed, and in the launch table


def test_compare_reads_the_dry_run(dry_run: Path, tmp_path: Path):
    json_file = str(_only(dry_run, ".json"))
    extra = ["--compare", json_file, json_file, "--no-plot"]
    assert main(argparse.Namespace(out=str(tmp_path), quick=False), extra) == 0
    md = (tmp_path / "compare.md").read_text()
    doc = json.loads((tmp_path / "compare.json").read_text())
    assert len(doc["runs"]) == 2
    run = next(iter(doc["runs"].values()))
    assert f": {run['baseline']} |" in md and f": {run['production_path']} |" in md


@pytest.mark.parametrize("module", MODULES, ids=[m.name for m in MODULES])
def test_modules_are_small(module: Path):
    n = len(module.read_text().splitlines())
    assert n <= MAX_LINES, f"{module.name} has {n} lines (at most {MAX_LINES})"


def _imports(module: Path) -> set[str]:
    """Absolute names of the modules ``module`` imports (relative imports resolved)."""
    package = ["fp8_verify", "tools", "bench"]
    names = set()
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            mod = ".".join([*base, *(node.module.split(".") if node.module else [])])
            names |= {mod} | {f"{mod}.{a.name}" for a in node.names}
    return names


def test_no_cli_or_plugin_imports_and_no_path_names():
    names = [s.name for s in registry.default().specs()]
    for module in MODULES:
        imported = _imports(module)
        assert not imported & {"fp8_verify.cli", "fp8_verify.suite.plugin", "fp8_verify.plugin"}, module.name
        text = module.read_text()
        kept = [n for n in names if f'"{n}"' in text or f"'{n}'" in text]
        assert not kept, f"{module.name} names registry paths {kept}: read them from the registry"


def test_options_import_without_torch():
    code = (
        "import argparse, sys\n"
        "from fp8_verify.tools.bench import add_arguments\n"
        "add_arguments(argparse.ArgumentParser())\n"
        "assert 'torch' not in sys.modules, 'the CLI parser pulled in torch'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
