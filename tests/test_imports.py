"""Dependencies point one way, and no two modules import each other.

``ptycho_model`` (torch, numpy, scikit-image) <- ``trainables`` (adds ray) <- ``tune_ptycho``
(adds optuna and the CLI); ``search_spaces`` (optuna) is imported by ``tune_ptycho`` only. The
static checks read every module's imports with :mod:`ast`, function-level ones included, so a
lazy import cannot hide a wrong-way dependency or a cycle. Only ``if TYPE_CHECKING:`` blocks are
left out (they never run).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

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


def _imports(module: str, path: Path, modules: Iterable[str] = ()) -> set[str]:
    """Absolute names of what ``module`` imports anywhere in it, inside functions too
    (``from .x import y`` resolved; ``if TYPE_CHECKING:`` blocks left out).

    ``from pkg import sub`` where ``pkg.sub`` is one of ``modules`` imports that submodule, as
    ``import pkg.sub`` does: ``pkg`` itself counts only for a name its ``__init__`` defines.
    (Python imports a module's packages before the module, whatever the spelling; counted,
    every package whose ``__init__`` imports a submodule would make a loop.)"""
    submodules = set(modules)
    is_pkg = path.name == "__init__.py"
    base = module.split(".") if is_pkg else module.split(".")[:-1]
    found: set[str] = set()

    def visit(nodes) -> None:
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
                names = {f"{target}.{a.name}" for a in node.names}
                found.update(names)
                if not names <= submodules:
                    found.add(target)
            else:
                visit(ast.iter_child_nodes(node))

    visit(ast.parse(path.read_text()).body)
    return found


def test_dependencies_point_one_way():
    wrong = []
    for module, path in _modules().items():
        pkg = module.split(".")[0]
        for name in _imports(module, path):
            root = name.split(".")[0]
            if root in PACKAGES and root != pkg and root not in ALLOWED[pkg]:
                wrong.append(f"{module} imports {name}")
            if root in FORBIDDEN_THIRD_PARTY.get(pkg, ()):
                wrong.append(f"{module} imports {name}")
    assert not wrong, "\n".join(wrong)


def _graph(mods: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the modules of ``mods`` it imports. Every import counts, those inside functions
    too: a lazy import that closes a loop still ties the two modules together (each needs the
    other to work). A package's ``__init__`` importing its own submodules makes no loop by itself;
    a submodule importing its package's ``__init__`` back would."""
    return {m: {n for n in _imports(m, p, mods) if n in mods and n != m} for m, p in mods.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (``a -> b -> ... -> a``) per group of modules that import each other
    (a strongly connected component of more than one module), in name order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    groups: list[set[str]] = []

    def connect(m: str) -> None:  # Tarjan's algorithm
        index[m] = low[m] = len(index)
        stack.append(m)
        on_stack.add(m)
        for n in sorted(graph[m]):
            if n not in index:
                connect(n)
                low[m] = min(low[m], low[n])
            elif n in on_stack:
                low[m] = min(low[m], index[n])
        if low[m] == index[m]:
            group = set()
            while True:
                n = stack.pop()
                on_stack.discard(n)
                group.add(n)
                if n == m:
                    break
            if len(group) > 1:
                groups.append(group)

    for m in sorted(graph):
        if m not in index:
            connect(m)
    out = []
    for group in sorted(groups, key=min):
        start = min(group)
        paths = {start: [start]}  # breadth first, inside the group: the shortest way back
        todo = [start]
        while todo:
            m = todo.pop(0)
            for n in sorted(graph[m] & group):
                if n == start:
                    out.append(paths[m] + [start])
                    todo = []
                    break
                if n not in paths:
                    paths[n] = paths[m] + [n]
                    todo.append(n)
    return out


def test_no_import_cycle_between_modules():
    graph = _graph(_modules())
    cycles = _cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)
    assert len(graph) > 40  # the scan saw the whole tree


def test_cycle_check_sees_imports_inside_functions(tmp_path):
    """The check itself: a loop closed by an import inside a function is a cycle; one inside
    ``if TYPE_CHECKING:`` is not (it never runs)."""
    (tmp_path / "pkg").mkdir()
    files = {"pkg/__init__.py": "",
             "pkg/a.py": "from . import b\n",
             "pkg/b.py": "def f():\n    from .c import g\n    return g\n",
             "pkg/c.py": "def g():\n    import pkg.a\n    return pkg.a\n",
             "pkg/d.py": ("from typing import TYPE_CHECKING\n"
                          "if TYPE_CHECKING:\n    from .e import x\n"),
             "pkg/e.py": "from .d import TYPE_CHECKING\n"}
    mods = {}
    for rel, text in files.items():
        (tmp_path / rel).write_text(text)
        parts = Path(rel).with_suffix("").parts
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = tmp_path / rel
    assert _cycles(_graph(mods)) == [["pkg.a", "pkg.b", "pkg.c", "pkg.a"]]


def test_ptycho_model_imports_neither_ray_nor_optuna():
    code = (
        "import sys, ptycho_model.train, ptycho_model.evaluate, ptycho_model.presets;"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'optuna'));"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
