"""The code's shape (issue 12): no module imports itself through others, the layers of
docs/design.md hold (import-linter's contract in pyproject.toml), and canaryd.core is pure:
it imports nothing of canaryd outside itself, and nothing that reads files, the clock or
the network; no module is over 500 lines."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import grimp
from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "canaryd" / "core"
# What the pure layer may not import: I/O, processes, the clock, randomness, the event loop.
IMPURE = {"asyncio", "io", "os", "pathlib", "random", "shutil", "socket", "subprocess",
          "tempfile", "time", "importlib", "urllib.request", "http.client", "yaml", "aiohttp",
          "kubernetes_asyncio", "prometheus_api_client", "prometheus_client", "structlog",
          "tenacity", "requests"}
CLOCK_READS = {"now", "utcnow", "today", "time", "monotonic"}


def test_no_module_imports_itself_through_others() -> None:
    graph = grimp.build_graph("canaryd", cache_dir=None)
    sorter = graphlib.TopologicalSorter(
        {m: graph.find_modules_directly_imported_by(m) for m in graph.modules})
    try:
        sorter.prepare()
    except graphlib.CycleError as exc:
        raise AssertionError(f"import cycle: {' -> '.join(exc.args[1])}") from None


def test_the_layers_of_the_design_hold() -> None:
    code = lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True,
                        no_logo=True)
    assert code == 0, "a layer imports one above it (lint-imports says which, above)"


def test_core_imports_nothing_of_canaryd_outside_core() -> None:
    graph = grimp.build_graph("canaryd", cache_dir=None)
    outside = {
        (module, imported)
        for module in graph.find_descendants("canaryd.core") | {"canaryd.core"}
        for imported in graph.find_modules_directly_imported_by(module)
        if imported != "canaryd.core" and not imported.startswith("canaryd.core.")
    }
    assert outside == set()


def _impurities(path: Path, root: Path = ROOT) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        found += [f"imports {n}" for n in names
                  if any(n == m or n.startswith(m + ".") for m in IMPURE)]
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in {"open", "input", "print"}:
                found.append(f"calls {func.id}()")
            if isinstance(func, ast.Attribute) and func.attr in CLOCK_READS:
                found.append(f"calls .{func.attr}() (a clock read)")
    return [f"{path.relative_to(root)}:{what}" for what in found]


def test_core_has_no_io_and_no_clock_reads() -> None:
    assert [bad for path in sorted(CORE.glob("*.py")) for bad in _impurities(path)] == []


def test_the_impurity_check_sees_what_it_looks_for(tmp_path: Path) -> None:
    """The check above cannot pass by looking at nothing."""
    probe = tmp_path / "probe.py"
    probe.write_text("import os\nfrom pathlib import Path\nfrom datetime import datetime\n"
                     "x = datetime.now()\ny = open('f')\n")
    found = [what.split(":", 1)[1] for what in _impurities(probe, tmp_path)]
    assert found == ["imports os", "imports pathlib", "calls .now() (a clock read)",
                     "calls open()"]



def test_no_module_of_canaryd_is_over_500_lines() -> None:
    """Issue 12: a module that grows past 500 lines is split along its seams."""
    long = {str(p.relative_to(ROOT)): n for p in sorted((ROOT / "canaryd").rglob("*.py"))
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 500}
    assert long == {}
