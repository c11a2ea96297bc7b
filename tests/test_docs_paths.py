"""docs/design.md's table of config paths is ``tune-ptycho paths --markdown``, kept equal here.

When a path, a default or a registry name changes, ``python docs/gen_paths.py`` rewrites it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from tune_ptycho.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _gen_paths():
    spec = importlib.util.spec_from_file_location("gen_paths", ROOT / "docs" / "gen_paths.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_design_md_lists_the_paths_that_tune_ptycho_paths_prints():
    gen = _gen_paths()
    doc = gen.DESIGN.read_text()
    assert doc.count(gen.BEGIN) == 1 and doc.count(gen.END) == 1
    assert gen.render(doc) == doc, "docs/design.md's config paths are out of date: run " \
                                   "python docs/gen_paths.py"


def test_markdown_lists_the_same_paths_as_the_plain_listing(capsys):
    assert main(["paths"]) == 0
    plain = [line.split()[0] for line in capsys.readouterr().out.splitlines()
             if line and not line.startswith("#")]
    assert main(["paths", "--markdown"]) == 0
    table = [line.split("`")[1] for line in capsys.readouterr().out.splitlines()
             if line.startswith("| `")]
    assert table == plain and {"collapse/stop", "train/layer_stats", "storage/log_to"} <= set(plain)
