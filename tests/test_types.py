"""The model core and the search spaces type-check clean under mypy ([tool.mypy] in pyproject.toml).

A cold check (an empty cache, as in a fresh clone) takes about 12 s on 2 cores: the config skips
torch's compiler and distributed stacks, which nothing here uses.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(120)
def test_mypy_passes_on_the_model_core_and_the_search_spaces(tmp_path):
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    assert {"ptycho_model", "search_spaces"} <= set(config["files"])  # not silently narrowed
    p = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "cache")],
                       capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
    assert "Success: no issues found" in p.stdout, p.stdout[-4000:]
