"""Self-tests of the package's shape: the pipeline's folders import in one direction (no import cycle),
the product never imports the tooling or the CLI, no module grows past 500 lines, and a path's name is
spelled in one place only (its registry row)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from fp8_verify.subject.registry import PATHS

pytestmark = [pytest.mark.cpu, pytest.mark.selftest]

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "fp8_verify"
FRONT = ("fp8_verify.cli", "fp8_verify.__main__")  # the composition root: may import anything
TOOLS = "fp8_verify.tools"
MAX_LINES = 500


def _modules() -> dict[str, Path]:
    mods = {}
    for f in PKG.rglob("*.py"):
        name = ".".join(f.relative_to(ROOT).with_suffix("").parts)
        mods[name.removesuffix(".__init__")] = f
    return mods


def _imports(name: str, path: Path, mods: dict[str, Path]) -> set[str]:
    """The fp8_verify modules ``name`` imports (at any depth in the file, lazy imports included)."""
    out = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(parent + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        for t in targets:
            while t and t not in mods:
                t = t.rpartition(".")[0]
            if t and t != name and not name.startswith(t + "."):
                out.add(t)
    return out


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {m: _imports(m, f, mods) for m, f in mods.items()}


def test_no_import_cycle():
    """Tarjan's strongly connected components of the module import graph are all single modules."""
    graph = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_product_never_imports_tooling():
    """Outside fp8_verify/tools and the CLI nothing imports fp8_verify.tools (or the CLI)."""
    bad = {
        m: sorted(t for t in deps if t.startswith(TOOLS) or t in FRONT)
        for m, deps in _graph().items()
        if not m.startswith(TOOLS) and m not in FRONT
    }
    assert not {m: d for m, d in bad.items() if d}


def test_modules_are_small():
    big = {
        str(f.relative_to(ROOT)): n
        for f in PKG.rglob("*.py")
        if (n := len(f.read_text().splitlines())) > MAX_LINES
    }
    assert not big, f"modules over {MAX_LINES} lines: {big}"


def test_path_names_live_in_the_registry():
    """A path's report name appears as a string literal only in its registry row (docs aside)."""
    names = "|".join(re.escape(p.name) for p in PATHS)
    literal = re.compile(rf"""["']({names})["']""")
    registry = PKG / "subject" / "registry.py"
    files = [f for d in ("fp8_verify", "strategies", "tests", "repros") for f in (ROOT / d).rglob("*.py")]
    spelled = sorted(
        str(f.relative_to(ROOT)) for f in files if f != registry and literal.search(f.read_text())
    )
    assert not spelled, f"path names spelled outside the registry: {spelled}"


def test_plugin_exports_every_hook_and_fixture():
    """``fp8_verify.plugin`` (the name users load) exports every hook and fixture that
    ``fp8_verify.suite.plugin`` defines: one left out is silently never called."""
    import fp8_verify.plugin as public
    import fp8_verify.suite.plugin as impl

    defined = {
        name
        for name, obj in vars(impl).items()
        if getattr(obj, "__module__", None) == impl.__name__
        and (name.startswith("pytest_") or repr(obj).startswith("<pytest_fixture("))
    }
    assert "gemm" in defined and "pytest_configure" in defined
    assert defined <= set(public.__all__), sorted(defined - set(public.__all__))


def test_strategies_are_imported_as_fp8_verify_strategies():
    """The strategies are ``fp8_verify.strategies`` (the repository's ``strategies/``; in a checkout
    through the symlink ``fp8_verify/strategies``): a top-level ``strategies`` would collide with any
    other package of that name, so nothing of fp8-verify imports it."""
    import fp8_verify.strategies as strategies

    if (ROOT / "strategies").is_dir():  # a checkout
        assert Path(strategies.__file__).resolve().parent == (ROOT / "strategies").resolve()

    def top_level(node: ast.AST) -> bool:
        if isinstance(node, ast.ImportFrom):
            return node.level == 0 and (node.module or "").split(".")[0] == "strategies"
        return isinstance(node, ast.Import) and any(a.name.split(".")[0] == "strategies" for a in node.names)

    files = [f for d in ("fp8_verify", "strategies", "tests", "repros") for f in (ROOT / d).rglob("*.py")]
    found = sorted(
        f"{f.relative_to(ROOT)}:{node.lineno}"
        for f in files
        for node in ast.walk(ast.parse(f.read_text()))
        if top_level(node)
    )
    assert not found, f"imports of a top-level strategies package (use fp8_verify.strategies): {found}"


def test_every_row_writes_a_repro_call():
    """Each registry row's repro snippet renders and parses as Python: a failing example's script is
    built from it (a layer row's dict of switches once made that crash every layer failure report)."""
    from fp8_verify.subject.registry import default

    for path in default():
        code = path.repro()
        assert "{module}" not in code, path.name
        ast.parse(code)
