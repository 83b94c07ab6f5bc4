"""House rules that keep the package easy to change: packages by concern in a declared order with every import
pointing down, no import cycle among modules, functions of a readable size, and a plugin that stays light in every
pytest run of the environment.

The rule a maintainer reads: a module that outgrows its concern becomes a folder, never a ``<name>_<suffix>``
sibling; a new folder takes its place in :data:`LAYERS`.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "pytest_longeff"
MAX_FUNCTION_LINES = 60

#: The package's layers, lowest first. A module may import from its own layer and the layers below it. ``base`` is
#: the flat leaves every layer uses; ``plugin``, ``cli``, ``ab`` (which drives both sides through the plugin) and
#: ``api`` (the facade ``__init__``) sit on top.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("base",),
    ("energy",),
    ("tasks",),
    ("record",),
    ("measure",),
    ("data",),
    ("models",),
    ("cell",),
    ("gate",),
    ("report",),
    ("ci",),
    ("config",),
    ("plugin", "cli", "ab"),
    ("api",),
)
BASE_MODULES = {"errors", "units", "stats", "profiles", "matrix", "choices", "hookspecs", "_version", "_lazy", "text"}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def runtime_imports(path: Path, package: str) -> Iterator[tuple[str, int]]:
    """The package's own modules that ``path`` imports at run time (module level and inside functions; imports under
    ``if TYPE_CHECKING:`` are for the type checker only), with the line of each."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(
        node.test) for stmt in node.body for n in ast.walk(stmt)}
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}:{node.lineno}: a relative import; the house writes absolute ones")
        own = isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == package
        if isinstance(node, ast.ImportFrom) and own and node.module:
            for alias in node.names:
                yield f"{node.module}.{alias.name}", node.lineno
        elif isinstance(node, ast.Import):
            yield from ((a.name, node.lineno) for a in node.names if a.name.split(".")[0] == package)


def import_graph(root: Path, package: str) -> dict[str, set[tuple[str, int]]]:
    """Each module and the package modules it imports: ``from pkg.mod import name`` names ``pkg.mod.name`` where
    that is a module, else ``pkg.mod``."""
    modules = {module_name(p, root): p for p in (root / package).rglob("*.py")}
    graph: dict[str, set[tuple[str, int]]] = {m: set() for m in modules}
    for name, path in modules.items():
        for target, line in runtime_imports(path, package):
            target = target if target in modules else target.rpartition(".")[0]
            if target != name and target in modules:
                graph[name].add((target, line))
    return graph


def layer_of(module: str, root: Path) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "api"
    if (root / parts[0] / parts[1]).is_dir():
        return parts[1]
    return "base" if parts[1] in BASE_MODULES else parts[1]


def rank(layer: str) -> int:
    for i, names in enumerate(LAYERS):
        if layer in names:
            return i
    raise AssertionError(f"{layer}: not in LAYERS; a new concern takes its place in the declared order")


def upward_imports(root: Path, package: str) -> list[str]:
    """Every import that points to a higher layer, as ``module:line -> target``."""
    graph = import_graph(root, package)
    for module in graph:
        rank(layer_of(module, root))
    return sorted(f"{m}:{line} -> {t}" for m, targets in graph.items() for t, line in targets
                  if rank(layer_of(t, root)) > rank(layer_of(m, root)))


def cycles(root: Path, package: str) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    graph = {m: {t for t, _ in ts} for m, ts in import_graph(root, package).items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_import_points_down() -> None:
    assert upward_imports(ROOT, "pytest_longeff") == []


def test_no_import_cycle_among_the_package_modules() -> None:
    assert cycles(ROOT, "pytest_longeff") == []


def test_concerns_are_folders_not_prefixed_siblings() -> None:
    flat = {p.stem for p in PACKAGE.glob("*.py")}
    siblings = sorted(n for n in flat if n.split("_")[0] in {"gate", "plot", "plots", "report", "batch", "energy"}
                      or n.startswith("report"))
    assert siblings == []
    assert (PACKAGE / "gate" / "__init__.py").is_file() and (PACKAGE / "report" / "__init__.py").is_file()
    assert flat <= BASE_MODULES | {"__init__", "plugin", "cli"}, "a new flat module: a concern of its own is a folder"


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / "pytest_longeff" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_the_layering_check_finds_an_upward_import(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "__init__.py": "", "errors.py": "", "record/__init__.py": "", "gate/__init__.py": "",
        "gate/check.py": "from pytest_longeff.record import sections\n",
        "record/sections.py": "def f():\n    from pytest_longeff.gate.check import x\n",
        "record/figures.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                             "    from pytest_longeff.gate import check\n",
    })
    assert upward_imports(root, "pytest_longeff") == ["pytest_longeff.record.sections:2 -> pytest_longeff.gate.check"]
    assert cycles(root, "pytest_longeff") == [["pytest_longeff.gate.check", "pytest_longeff.record.sections"]]


def test_a_folder_without_a_layer_is_refused(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"__init__.py": "", "misc/__init__.py": "", "misc/helpers.py": ""})
    with pytest.raises(AssertionError, match="misc: not in LAYERS"):
        upward_imports(root, "pytest_longeff")


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_functions_stay_readable(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    long = [f"{node.name} ({node.end_lineno - node.lineno + 1} lines)" for node in ast.walk(ast.parse(text))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno is not None
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, f"{path.name}: {', '.join(long)}"


def test_loading_the_plugin_imports_neither_the_gate_nor_energy_nor_a_heavy_library() -> None:
    code = ("import sys, pytest_longeff, pytest_longeff.plugin; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'datasets', "
            "'pynvml', 'matplotlib', 'numpy') or m.startswith(('pytest_longeff.gate', 'pytest_longeff.energy'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
