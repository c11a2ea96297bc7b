"""Shared helpers of the benchmarks: machine banner, load check, interleaved repeats, a private Ray,
experiment results, tables.

Nothing here imports Ray at module level: ``bench/throughput.py`` must run on a machine that has
torch but no Ray. Ray is imported inside :func:`start_ray` only.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as `python bench/x.py` from a checkout that is not installed
    sys.path.insert(0, str(REPO))

# Local, hermetic Ray: no token prompt, no snapshot-sync warnings, trials keep the driver's cwd.
RAY_ENV = {
    "RAY_AUTH_MODE": "disabled",
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
    "RAY_CHDIR_TO_TRIAL_DIR": "0",
    "RAY_AIR_NEW_OUTPUT": "0",  # as the launcher: no configuration table, no temp paths
}


def set_ray_env() -> None:
    for k, v in RAY_ENV.items():
        os.environ.setdefault(k, v)
    os.environ.pop("RAY_ADDRESS", None)  # never join someone else's cluster


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cores() -> str:
    n = os.cpu_count() or 0
    aff = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else n
    return f"{aff} usable of {n}"


def device_line() -> str:
    import torch

    if torch.cuda.is_available():
        i = torch.cuda.current_device()
        p = torch.cuda.get_device_properties(i)
        return f"cuda:{i} {p.name} ({p.total_memory / 2**30:.0f} GiB), CUDA {torch.version.cuda}"
    return "cpu (no CUDA device)"


def banner(title: str, settings: dict[str, Any] | None = None) -> None:
    import torch

    try:
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "?"
    print(f"== {title}")
    print(f"date      {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    print(f"platform  {platform.platform()}, Python {platform.python_version()}")
    print(f"cpu       {cpu_model()}, {cores()} cores, load avg {load}")
    print(f"torch     {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"device    {device_line()}")
    if settings:
        print("settings  " + ", ".join(f"{k}={v}" for k, v in settings.items()))
    print(flush=True)


def short_tmp(prefix: str) -> str:
    """A short directory under /tmp: Ray's AF_UNIX socket paths are capped at 107 bytes."""
    return tempfile.mkdtemp(prefix=prefix, dir="/tmp")


def table(header: list[str], rows: list[list[Any]]) -> str:
    cells = [[_cell(c) for c in r] for r in [header, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = []
    for j, r in enumerate(cells):
        lines.append("  ".join(c.rjust(w) if j and _numeric(c) else c.ljust(w)
                               for c, w in zip(r, widths, strict=False)).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _numeric(s: str) -> bool:
    try:
        float(s.replace(",", "").rstrip("x%s"))
        return True
    except ValueError:
        return False


def _cell(c: Any) -> str:
    if isinstance(c, float):
        if math.isnan(c):
            return "-"
        if abs(c) >= 1000:
            return f"{c:,.0f}"
        if abs(c) >= 10:
            return f"{c:.1f}"
        return f"{c:.3g}" if abs(c) < 0.01 and c else f"{c:.3f}"
    return "-" if c is None else str(c)


def verdict(name: str, value: float, target: str, ok: bool | None) -> None:
    mark = "n/a" if ok is None else ("meets target" if ok else "MISSES target")
    print(f"RESULT {name}: {value:.3f} (target {target}) -> {mark}")


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


# ------------------------------------------------------------------ timing hygiene
MIN_REPEATS = 5  # the fewest repeats per arm a measurement may have (a --quick smoke: 1)
LOAD_LIMIT = 0.5  # 1-minute load average above which timings are not comparable

Measure = dict[str, float]  # one repeat of one arm: named measurements (seconds, counts, ...)


def add_timing_args(p: argparse.ArgumentParser) -> None:
    """``--repeats``, ``--allow-load`` and ``--out-dir``, the same in every timing script."""
    p.add_argument("--repeats", type=int, default=None,
                   help=f"repeats of each arm, interleaved A B A B ... (default {MIN_REPEATS}, "
                        f"at least {MIN_REPEATS}; --quick: 1)")
    p.add_argument("--allow-load", action="store_true",
                   help=f"run even when the 1-minute load average is above {LOAD_LIMIT} "
                        "(the figures are then not comparable; the load is recorded)")
    p.add_argument("--out-dir", type=Path, default=None,
                   help="where the JSON result goes (default docs/bench/results; --quick: a "
                        "new temp dir)")


def check_repeats(repeats: int | None, quick: bool) -> int:
    """The repeats to run: ``MIN_REPEATS`` by default, 1 for a quick smoke; fewer than
    ``MIN_REPEATS`` are refused outside ``--quick``."""
    if repeats is None:
        return 1 if quick else MIN_REPEATS
    if repeats < 1:
        raise SystemExit(f"--repeats {repeats}: give at least 1")
    if repeats < MIN_REPEATS and not quick:
        raise SystemExit(f"--repeats {repeats}: a measurement needs at least {MIN_REPEATS} "
                         "repeats per arm (fewer only with --quick, a smoke)")
    return repeats


def check_load(allow: bool, quick: bool, limit: float = LOAD_LIMIT) -> list[float]:
    """The load averages at start (1, 5, 15 min). Above ``limit`` (1-minute) prints a WARNING
    line naming the load, and refuses to go on unless ``allow`` or ``quick`` (a smoke)."""
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        print("WARNING: the load average cannot be read on this platform; not checked")
        return []
    if load[0] > limit:
        go_on = allow or quick
        print(f"WARNING: 1-minute load average {load[0]:.2f} is above {limit:g} (load "
              f"{' '.join(f'{x:.2f}' for x in load)}): other work is running and the timings "
              "will not be comparable"
              + ("; going on (--allow-load or --quick)" if go_on else
                 "; refused (wait for a quiet machine, or pass --allow-load)"), flush=True)
        if not go_on:
            raise SystemExit(2)
    return load


def result_dir(out_dir: Path | None, quick: bool) -> Path | None:
    """Where the JSON goes: ``out_dir``; else a new temp dir for a quick smoke (never
    ``docs/bench/results``), else None (``write_result``'s default)."""
    if out_dir is not None:
        return out_dir
    return Path(tempfile.mkdtemp(prefix="tp-bench-quick-")) if quick else None


@dataclass
class Interleaved:
    """Each arm's measurements, one :data:`Measure` per repeat, in the order they ran."""

    runs: dict[str, list[Measure]]

    def values(self, arm: str, key: str) -> list[float]:
        """``key`` of ``arm``, one value per repeat."""
        try:
            return [m[key] for m in self.runs[arm]]
        except KeyError as e:
            raise KeyError(f"no measurement {key!r} of arm {arm!r}; arms "
                           f"{sorted(self.runs)}, measures {self.keys(arm)}") from e

    def keys(self, arm: str) -> list[str]:
        return list(self.runs[arm][0]) if self.runs.get(arm) else []

    def ratios(self, num: str, den: str, key: str) -> list[float]:
        """``num``'s ``key`` over ``den``'s, per repeat pair (repeat i of one over repeat i of
        the other, which ran next to it): the ratio's own spread, not a ratio of medians."""
        return [a / b if b else float("nan")
                for a, b in zip(self.values(num, key), self.values(den, key), strict=True)]

    def spread_rows(self, pairs: Sequence[tuple[str, str]] = ()) -> list[list[Any]]:
        """Rows of (what, measure, n, min, median, max) for each arm and each ratio pair."""
        rows = []
        for arm, ms in self.runs.items():
            for key in self.keys(arm):
                rows.append([arm, key, *_spread([m[key] for m in ms])])
        for num, den in pairs:
            for key in (k for k in self.keys(num) if k in self.keys(den)):
                rows.append([f"{num} / {den}", key, *_spread(self.ratios(num, den, key))])
        return rows


def _spread(xs: list[float]) -> list[Any]:
    finite = [x for x in xs if math.isfinite(x)]
    if not finite:
        return [len(xs), None, None, None]
    return [len(xs), min(finite), statistics.median(finite), max(finite)]


def interleave(arms: dict[str, Callable[[int], Measure | float]], repeats: int,
               pairs: Sequence[tuple[str, str]] = ()) -> Interleaved:
    """Run the arms interleaved, ``repeats`` rounds of A B (C ...), so that drift of the host
    hits every arm alike; each arm is called with the repeat's index (0-based) and returns its
    measurements (a bare number is ``{"value": x}``). Prints min / median / max of every arm's
    measurements and of each ratio ``num / den`` in ``pairs``, taken per repeat pair."""
    if repeats < 1:
        raise ValueError(f"interleave: repeats must be >= 1, got {repeats}")
    if not arms:
        raise ValueError("interleave: no arms to run")
    runs: dict[str, list[Measure]] = {name: [] for name in arms}
    order = " ".join(arms)
    for i in range(repeats):
        for name, one in arms.items():
            print(f"repeat {i + 1}/{repeats} [{order}]: {name} ...", flush=True)
            m = one(i)
            runs[name].append({"value": float(m)} if isinstance(m, int | float) else dict(m))
    res = Interleaved(runs)
    print()
    print(f"spread over {repeats} repeat(s) per arm, run interleaved ({order} x {repeats}); "
          "ratios per repeat pair")
    print(table(["arm", "measure", "n", "min", "median", "max"], res.spread_rows(pairs)))
    return res


# ------------------------------------------------------------------ Ray, in this process
class LocalRay:
    """``with LocalRay(num_cpus=2) as r:`` an embedded Ray with its sockets in a short temp dir, a
    private dataset cache and a private storage root; everything removed at exit.

    When Ray is already initialised in this process (a test session's Ray), it is used as it is
    and left running at exit: ``num_cpus`` is then the existing Ray's, and ``start_s`` is 0."""

    def __init__(self, num_cpus: int = 2, keep: bool = False, prefix: str = "tpb"):
        self.num_cpus = num_cpus
        self.keep = keep
        self.prefix = prefix
        self.start_s = float("nan")
        self.owned = False
        self._saved_cache: str | None = None

    def __enter__(self) -> LocalRay:  # noqa: PYI034
        set_ray_env()
        self.tmp = short_tmp(self.prefix)
        self.root = Path(self.tmp)
        self.storage = self.root / "runs"
        self.cache = self.root / "cache"
        self.storage.mkdir()
        self.cache.mkdir()
        self._saved_cache = os.environ.get("TUNE_PTYCHO_CACHE")
        os.environ["TUNE_PTYCHO_CACHE"] = str(self.cache)
        import ray

        if ray.is_initialized():
            self.start_s = 0.0
            return self
        t0 = time.perf_counter()
        ray.init(address="local", num_cpus=self.num_cpus, num_gpus=0, include_dashboard=False,
                 object_store_memory=200 * 1024**2, log_to_driver=False,
                 _temp_dir=str(self.root / "ray"))
        self.owned = True
        self.start_s = time.perf_counter() - t0
        return self

    def __exit__(self, *exc) -> None:
        import ray

        if self.owned:
            ray.shutdown()
        if self._saved_cache is None:
            os.environ.pop("TUNE_PTYCHO_CACHE", None)
        else:
            os.environ["TUNE_PTYCHO_CACHE"] = self._saved_cache
        if self.keep:
            print(f"(kept {self.root})")
        else:
            shutil.rmtree(self.root, ignore_errors=True)

    def started_line(self) -> str:
        """How Ray came up, for the log."""
        if not self.owned:
            return "Ray already running in this process: joined it (its start-up not counted)"
        return f"Ray started in {self.start_s:.1f} s (not counted)"

    def warm_dataset(self, preset: str, updates: dict | None = None) -> None:
        """Simulate the preset's dataset into the private cache, outside any timing."""
        from ptycho_model.presets import preset_config
        from tune_ptycho.storage.dataset_cache import get_datasets

        with contextlib.redirect_stdout(io.StringIO()):
            get_datasets(preset_config(preset, updates).data, self.cache)

    def warm_up(self, preset: str, trials: int = 2) -> float:
        """An untimed study of ``trials`` one-epoch trials, two at a time: the first study of a
        Ray session pays one-off costs (Tune's and Optuna's first imports and code paths in the
        driver, worker start-up, page cache) that would bias whichever timed arm ran first."""
        _, wall, _ = self.run_cli("warm-up", [
            "--preset", preset, "--space", "seeds", "--num-samples", str(trials),
            "--max-epochs", "1", "--no-asha", "--max-concurrent", "2", "--cpus-per-trial", "1"])
        return wall

    def run_cli(self, name: str, args: list[str], quiet: bool = True) -> tuple[int, float, Path]:
        """``tune-ptycho run ARGS --storage <private> --name NAME`` on this Ray:
        (exit code, wall seconds of main(), experiment dir). Its stdout is shown on failure."""
        from tune_ptycho.cli import main

        argv = ["run", *args, "--storage", str(self.storage), "--name", name,
                "--no-dashboard", "--no-progress"]
        buf = io.StringIO()
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(buf) if quiet else contextlib.nullcontext():
            code = main(argv)
        wall = time.perf_counter() - t0
        if code != 0:
            print(f"tune-ptycho {' '.join(argv)} exited {code}:\n{buf.getvalue()}", file=sys.stderr)
        return code, wall, self.storage / name


# ------------------------------------------------------------------ experiment results
def read_trials(exp_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """trial id -> its per-epoch result rows (sorted by epoch)."""
    from tune_ptycho.storage.tune_files import newest_per_epoch, result_rows

    out = {}
    for d in sorted(Path(exp_dir).glob("trial_*")):
        if d.is_dir():
            out[d.name.removeprefix("trial_")] = newest_per_epoch(result_rows(d))
    return out


def trials_span(trials: dict[str, list[dict[str, Any]]]) -> float:
    """Seconds from the first trial's start to the last report of any trial."""
    starts = [r[0]["trial_start_ts"] for r in trials.values() if r and "trial_start_ts" in r[0]]
    ends = [r[-1]["report_ts"] for r in trials.values() if r and "report_ts" in r[-1]]
    return max(ends) - min(starts) if starts and ends else float("nan")
