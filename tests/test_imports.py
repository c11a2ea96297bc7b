"""Dependencies point one way, and no two modules import each other.

``ptycho_model`` (torch, numpy, scikit-image) <- ``trainables`` (adds ray) <- ``tune_ptycho``
(adds optuna and the CLI); ``search_spaces`` (optuna) is imported by ``tune_ptycho`` only. The
static checks read every module's imports with :mod:`ast`, function-level ones included, so a
lazy import cannot hide a wrong-way dependency; the cycle check follows module-level imports
(those that run at import time; ``if TYPE_CHECKING:`` blocks excluded).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ptycho_model", "trainables", "search_spaces", "tune_ptycho")
# package -> the project packages and third-party roots it may import
ALLOWED = {
    "ptycho_model": set(),
    "trainables": {"ptycho_model"},
    "search_spaces": {"ptycho_model"},
    "tune_ptycho": {"ptycho_model", "trainables", "search_spaces"},
}
FORBIDDEN_THIRD_PARTY = {"ptycho_model": {"ray", "optuna"}, "search_spaces": {"ray"},
                         "trainables": {"optuna"}}


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for f in sorted((ROOT / pkg).rglob("*.py")):
            parts = f.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _imports(module: str, path: Path, top_level_only: bool) -> set[str]:
    """Absolute names of what ``module`` imports (``from .x import y`` resolved)."""
    is_pkg = path.name == "__init__.py"
    base = module.split(".") if is_pkg else module.split(".")[:-1]
    found: set[str] = set()

    def visit(nodes, top: bool) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and _is_type_checking(node):
                continue
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    stem = ".".join(base[:len(base) - node.level + 1])
                    target = f"{stem}.{node.module}" if node.module else stem
                else:
                    target = node.module or ""
                found.add(target)
                found.update(f"{target}.{a.name}" for a in node.names)
            elif top_level_only and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                      ast.Lambda)):
                continue
            else:
                visit(ast.iter_child_nodes(node), top)

    visit(ast.parse(path.read_text()).body, True)
    return found


def test_dependencies_point_one_way():
    wrong = []
    for module, path in _modules().items():
        pkg = module.split(".")[0]
        for name in _imports(module, path, top_level_only=False):
            root = name.split(".")[0]
            if root in PACKAGES and root != pkg and root not in ALLOWED[pkg]:
                wrong.append(f"{module} imports {name}")
            if root in FORBIDDEN_THIRD_PARTY.get(pkg, ()):
                wrong.append(f"{module} imports {name}")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle_between_modules():
    mods = _modules()
    graph = {m: {n for n in _imports(m, p, top_level_only=True) if n in mods and n != m}
             for m, p in mods.items()}
    # a package's __init__ importing its own submodules is not a cycle of concern; a submodule
    # importing its package's __init__ back is what would make one
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state and (cycle := dfs(n)):
                return cycle
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (cycle := dfs(m)):
            pytest.fail("import cycle: " + " -> ".join(cycle))
    assert len(graph) > 40  # the scan saw the whole tree


def test_ptycho_model_imports_neither_ray_nor_optuna():
    code = (
        "import sys, ptycho_model.train, ptycho_model.evaluate, ptycho_model.presets;"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'optuna'));"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
