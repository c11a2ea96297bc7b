"""The tree passes the project's pinned ruff rules (pyproject.toml), line length 100 included."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_passes_on_the_whole_tree():
    p = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--exclude", ".venv",
                        str(ROOT)], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
