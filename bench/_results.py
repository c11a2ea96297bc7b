"""Each benchmark's result as data: one JSON file per script in ``docs/bench/results/``.

BENCHMARKS.md's summary table is generated from these files (``python bench/summary.py``), and
``tests/test_bench_summary.py`` fails when a figure's commit is older than the last change to the
code it measures (the ``modules`` a script lists). Nothing here imports torch or Ray.

A figure carries its spread over repeats and a verdict against its target, decided from the
spread, never from one number:

* ``met``: every repeat is on the right side of the target;
* ``missed``: every repeat is on the wrong side;
* ``not resolvable``: the repeats straddle the target (the noise is larger than the margin);
* ``reported``: no target.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "docs" / "bench" / "results"
VERDICTS = ("met", "missed", "not resolvable", "reported")


_OPS = {"<=": lambda x, b: x <= b, ">=": lambda x, b: x >= b,
        "<": lambda x, b: x < b, ">": lambda x, b: x > b}


@dataclass(frozen=True)
class Target:
    """``value <op> bound``, ``op`` one of ``<=``, ``>=``, ``<``, ``>``."""

    op: str
    bound: float

    def __post_init__(self) -> None:
        if self.op not in _OPS:
            raise ValueError(f"Target.op must be one of {', '.join(_OPS)}; got {self.op!r}")
        if not math.isfinite(self.bound):
            raise ValueError(f"Target.bound must be a finite number, got {self.bound!r}")

    def holds(self, x: float) -> bool:
        return bool(_OPS[self.op](x, self.bound))

    def __str__(self) -> str:
        return f"{self.op} {self.bound:g}"


@dataclass
class Figure:
    """One measured quantity: its repeats, and the summary the table shows."""

    name: str
    unit: str
    repeats: list[float]
    target: str | None = None
    verdict: str = "reported"
    min: float = float("nan")
    median: float = float("nan")
    max: float = float("nan")
    n: int = 0
    note: str = ""

    def line(self) -> str:
        """``RESULT name: median (min-max, n) unit (target ...) -> verdict``, one printed line."""
        target = f"target {self.target}" if self.target else "no target"
        unit = f" {self.unit}" if self.unit else ""
        return (f"RESULT {self.name}: {self.median:.4g}{unit} (min {self.min:.4g}, max "
                f"{self.max:.4g}, n {self.n}; {target}) -> {self.verdict}")


def figure(name: str, repeats: Sequence[float], unit: str = "", target: Target | None = None,
           note: str = "") -> Figure:
    """A :class:`Figure` from its repeats; the verdict follows the module docstring's rule."""
    xs = [float(x) for x in repeats]
    if not xs:
        raise ValueError(f"figure {name!r} has no repeats")
    bad = [x for x in xs if not math.isfinite(x)]
    if bad:
        raise ValueError(f"figure {name!r}: repeats must be finite numbers, got {bad} in {xs}")
    if target is None:
        verdict = "reported"
    else:
        sides = {target.holds(x) for x in xs}
        verdict = "met" if sides == {True} else "missed" if sides == {False} else "not resolvable"
    return Figure(name=name, unit=unit, repeats=xs, target=None if target is None else str(target),
                  verdict=verdict, min=min(xs), median=statistics.median(xs), max=max(xs),
                  n=len(xs), note=note)


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                          check=True).stdout.strip()


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def machine() -> dict[str, Any]:
    from _common import cores, cpu_model  # bench/ is on sys.path when a script runs

    out: dict[str, Any] = {"cpu": cpu_model(), "cores": cores(),
                           "platform": platform.platform(), "python": platform.python_version()}
    try:
        import torch

        out["torch"] = torch.__version__
        out["threads"] = torch.get_num_threads()
    except ImportError:
        pass
    return out


@dataclass
class Result:
    """What a script writes: when, where, on which code, with which settings, what it found."""

    script: str
    modules: list[str]
    settings: dict[str, Any]
    figures: list[Figure]
    load_start: list[float] = field(default_factory=list)
    duration_s: float = float("nan")
    commit: str = ""
    dirty: bool = False
    date: str = ""
    machine: dict[str, Any] = field(default_factory=dict)
    quick: bool = False


def write_result(script: str, modules: Sequence[str], settings: dict[str, Any],
                 figures: Sequence[Figure], *, load_start: Sequence[float] = (),
                 duration_s: float = float("nan"), quick: bool = False,
                 out_dir: Path | None = None) -> Path:
    """Write ``<out_dir>/<script stem>.json`` (``docs/bench/results/`` by default).

    ``modules`` are the repository paths (files or folders) whose code the figures measure: a
    later commit touching any of them makes the result stale. A ``quick`` run (a smoke, not a
    measurement) is never written to ``docs/bench/results/``: pass ``out_dir``."""
    missing = [m for m in modules if not (REPO / m).exists()]
    if missing:
        raise ValueError(f"{script}: modules not in the repository: {missing}")
    if quick and out_dir is None:
        raise ValueError(f"{script}: a --quick run is a smoke; give it its own out_dir")
    res = Result(script=script, modules=list(modules), settings=dict(settings),
                 figures=list(figures), load_start=list(load_start), duration_s=duration_s,
                 commit=_git("rev-parse", "HEAD"),
                 dirty=bool(_git("status", "--porcelain", "--untracked-files=no", "--",
                                 *modules)),
                 date=time.strftime("%Y-%m-%d %H:%M:%S %Z"), machine=machine(), quick=quick)
    folder = out_dir or RESULTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{Path(script).stem}.json"
    path.write_text(json.dumps(asdict(res), indent=1, allow_nan=True) + "\n")
    return path


def publish(script: str, modules: Sequence[str], settings: dict[str, Any],
            figures: Sequence[Figure], *, load_start: Sequence[float], started: float,
            quick: bool, out_dir: Path | None) -> Path:
    """Print each figure's ``RESULT`` line, write the result (:func:`write_result`) and say where.
    ``started``: ``time.perf_counter()`` at the script's start, for ``duration_s``."""
    print()
    for f in figures:
        print(f.line())
    path = write_result(script, modules, settings, figures, load_start=load_start,
                        duration_s=round(time.perf_counter() - started, 1), quick=quick,
                        out_dir=out_dir)
    print(f"wrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
    return path


def read_results(folder: Path | None = None) -> list[dict[str, Any]]:
    """Every result in ``folder`` (``docs/bench/results/``), sorted by script."""
    folder = folder or RESULTS_DIR
    return sorted((json.loads(p.read_text()) for p in folder.glob("*.json")),
                  key=lambda r: r["script"])
