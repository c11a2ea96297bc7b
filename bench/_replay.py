"""The replay benchmark's shared parts: its grids, the recorded table, the seed arms on a grid and
the service's spec restricted to a grid (``bench/replay_record.py`` writes the table,
``bench/replay.py`` replays search methods on it).

A *grid* is a full factorial of *axes*; each axis has *levels*, each level a set of config
updates (``{"optim/lr": 4e-3}``), laid over the preset and the grid's fixed updates. A grid
*point* is one level per axis, named ``arch=hybrid,lr=0.004,warmup=2,clip=agc0.01``. Every axis
also says how the service's search space expresses its levels (a spec file's ``search.params``
fragment: categorical choices), so that the live service searches exactly the recorded points.

The table is JSON lines, one finished run each: the point, its updates, the training seed and
the per-epoch lists the Trainer reports (:data:`PER_EPOCH`). Its sidecar ``recording.json`` (in
the table's folder: one table per folder) holds the grid, what it leaves out, and the recording
sessions (commit, date, CPU, wall seconds).

No torch and no Ray at import: the replay imports this in many processes.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import _common

REPO = _common.REPO
TABLE = REPO / "docs" / "bench" / "replay" / "table.jsonl"
SIDECAR = "recording.json"

# What every row keeps per epoch: the Trainer's metric names (ptycho_model.names).
PER_EPOCH = ("objective", "val_loss", "train_loss", "best_val_loss", "best_epoch", "collapsed",
             "collapse_kind", "diverged", "output_std", "amp_iqr", "lr", "epoch_time_s")

# The base space the service's grid search starts from (model/arch x clip/algorithm); the grid's
# axes lay their categorical choices over it and add the paths it lacks.
BASE_SPACE = "stage_a"


# ------------------------------------------------------------------ the grid
@dataclass(frozen=True)
class Level:
    """One value of an axis: a label for point names and the config updates it stands for."""

    label: str
    updates: dict[str, Any]


@dataclass(frozen=True)
class Axis:
    """A grid axis: its levels, and ``ranges``, the ``search.params`` fragment that makes the
    service's space choose among exactly these levels."""

    name: str
    levels: tuple[Level, ...]
    ranges: dict[str, Any]

    def labels(self) -> list[str]:
        return [lv.label for lv in self.levels]


@dataclass(frozen=True)
class Grid:
    """A full-factorial grid of points, each trained once per seed."""

    name: str
    preset: str
    fixed: dict[str, Any]  # updates common to every point (and ``--set`` in the live service)
    axes: tuple[Axis, ...]
    seeds: tuple[int, ...]
    left_out: tuple[str, ...]

    def coords(self) -> Iterator[tuple[int, ...]]:
        """Every point's level indices, the first axis slowest."""
        def rec(i: int, prefix: tuple[int, ...]) -> Iterator[tuple[int, ...]]:
            if i == len(self.axes):
                yield prefix
                return
            for j in range(len(self.axes[i].levels)):
                yield from rec(i + 1, (*prefix, j))
        return rec(0, ())

    def point_id(self, coord: tuple[int, ...]) -> str:
        if len(coord) != len(self.axes):
            raise ValueError(f"coordinate {coord} has {len(coord)} entries; the grid "
                             f"{self.name!r} has {len(self.axes)} axes")
        return ",".join(f"{a.name}={a.levels[j].label}" for a, j in zip(self.axes, coord,
                                                                          strict=True))

    def coord_of(self, point: str) -> tuple[int, ...]:
        """The level indices of ``point``; ValueError naming the point when it is not on the
        grid."""
        parts = dict(p.split("=", 1) for p in point.split(",") if "=" in p)
        out = []
        for a in self.axes:
            if parts.get(a.name) not in a.labels():
                raise ValueError(f"point {point!r} is not on grid {self.name!r}: axis {a.name} "
                                 f"takes {a.labels()}")
            out.append(a.labels().index(parts[a.name]))
        return tuple(out)

    def updates(self, point: str) -> dict[str, Any]:
        """The config updates of ``point``: the fixed ones, then each axis' level."""
        out = dict(self.fixed)
        for a, j in zip(self.axes, self.coord_of(point), strict=True):
            out.update(a.levels[j].updates)
        return out

    def points(self) -> list[str]:
        return [self.point_id(c) for c in self.coords()]

    def runs(self) -> list[tuple[str, int]]:
        """Every (point, seed), seed-major: a partial recording covers every point once first."""
        return [(p, s) for s in self.seeds for p in self.points()]

    def search_params(self) -> dict[str, Any]:
        """The spec's ``search.params``: every axis' categorical choices."""
        out: dict[str, Any] = {}
        for a in self.axes:
            out.update(a.ranges)
        return out

    def signature(self) -> dict[str, Any]:
        """What the recorded runs depend on (not the prose of what the grid leaves out)."""
        d = self.to_dict()
        return {k: d[k] for k in ("name", "preset", "fixed", "axes", "seeds")}

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "preset": self.preset, "fixed": self.fixed,
                "axes": {a.name: {lv.label: lv.updates for lv in a.levels} for a in self.axes},
                "seeds": list(self.seeds), "points": len(self.points()),
                "runs": len(self.runs()), "left_out": list(self.left_out)}


def _levels(path: str, values: list[Any], fmt: str = "{:g}") -> tuple[Level, ...]:
    return tuple(Level(fmt.format(v), {path: v}) for v in values)


def _lr_axis(values: list[float]) -> Axis:
    return Axis("lr", _levels("optim/lr", values), {"optim/lr": {"choices": values}})


def _warmup_axis(values: list[int]) -> Axis:
    return Axis("warmup", _levels("sched/warmup_epochs", values),
                {"sched/warmup_epochs": {"choices": values}})


_CLIP_LEVELS = {
    "none": Level("none", {"clip/algorithm": "none"}),
    "norm": Level("norm1", {"clip/algorithm": "norm", "clip/threshold": 1.0}),
    "agc": Level("agc0.01", {"clip/algorithm": "agc", "clip/threshold": 0.01}),
}


def _clip_axis(algorithms: list[str]) -> Axis:
    levels = tuple(_CLIP_LEVELS[a] for a in algorithms)
    # one value per algorithm as a float range with low == high: Optuna refuses one name with
    # different categorical choices, and the service's own clip/threshold ranges are log floats
    thresholds = [{"low": lv.updates["clip/threshold"], "high": lv.updates["clip/threshold"],
                   "log": True, "when": {"clip/algorithm": lv.updates["clip/algorithm"]}}
                  for lv in levels if "clip/threshold" in lv.updates]
    ranges: dict[str, Any] = {"clip/algorithm": {"choices": algorithms}}
    if thresholds:
        ranges["clip/threshold"] = thresholds
    return Axis("clip", levels, ranges)


_ARCH_LEVELS = {
    "hybrid": Level("hybrid", {"model/arch": "hybrid"}),
    "zero_gamma": Level("zero_gamma", {"model/arch": "stable_hybrid",
                                       "model/stable_block": "zero_gamma"}),
    "layerscale": Level("layerscale", {"model/arch": "stable_hybrid",
                                       "model/stable_block": "layerscale",
                                       "model/layerscale_init": 1e-2}),
}


def _arch_axis(names: list[str]) -> Axis:
    levels = tuple(_ARCH_LEVELS[n] for n in names)
    archs = list(dict.fromkeys(lv.updates["model/arch"] for lv in levels))
    blocks = [lv.updates["model/stable_block"] for lv in levels if "model/stable_block" in
              lv.updates]
    ranges: dict[str, Any] = {"model/arch": {"choices": archs}}
    if blocks:
        ranges["model/stable_block"] = {"choices": blocks}
    if "layerscale" in blocks:
        ranges["model/layerscale_init"] = {"choices": [1e-2],
                                           "when": {"model/stable_block": "layerscale"}}
    return Axis("arch", levels, ranges)


# Adam at its default betas and a warmup-cosine schedule to 5% of the peak: every point's.
_FIXED = {"optim/name": "adam", "optim/beta1": 0.9, "optim/beta2": 0.999,
          "sched/name": "warmup_cosine", "sched/min_ratio": 0.05}

LEFT_OUT = (
    "optimizers adamw and sgd (adam only, betas 0.9/0.999)",
    "the constant LR schedule and the exponential and plateau ones (warmup_cosine only, "
    "min ratio 0.05)",
    "peak learning rates other than the four levels; warmup epochs other than the two levels",
    "clip thresholds other than norm 1.0 and AGC 0.01; value and agc_unitwise clipping",
    "LayerScale inits other than 1e-2; the zero-gamma block has no init to vary",
    "training seeds beyond the recorded ones",
)

CPU_GRID = Grid(
    name="cpu", preset="cpu", fixed=_FIXED,
    axes=(_arch_axis(["hybrid", "zero_gamma", "layerscale"]),
          _lr_axis([1e-3, 4e-3, 1.4e-2, 4e-2]),
          _warmup_axis([2, 6]),
          _clip_axis(["none", "norm", "agc"])),
    seeds=(0, 1), left_out=LEFT_OUT)

# A smoke: the tiny preset (3 epochs), 2 x 2 points, one seed; seconds to record.
QUICK_GRID = Grid(
    name="quick", preset="tiny", fixed=_FIXED,
    axes=(_arch_axis(["hybrid"]), _lr_axis([1e-3, 4e-2]), _warmup_axis([2]),
          _clip_axis(["none", "agc"])),
    seeds=(0,), left_out=LEFT_OUT + ("(quick) arch other than hybrid, warmup other than 2",))

GRIDS = {g.name: g for g in (CPU_GRID, QUICK_GRID)}


def get_grid(name: str) -> Grid:
    if name not in GRIDS:
        raise ValueError(f"unknown grid {name!r}; known: {', '.join(GRIDS)}")
    return GRIDS[name]


def check_grid(grid: Grid) -> None:
    """Every run's config passes the config validator (raises ConfigError naming the value)."""
    from ptycho_model.presets import preset_config

    for point, seed in grid.runs():
        preset_config(grid.preset, {**grid.updates(point), "train/seed": seed,
                                    "collapse/stop": False})


# ------------------------------------------------------------------ the table
@dataclass(frozen=True)
class Curve:
    """One recorded run, epoch by epoch (index 0 is epoch 1)."""

    point: str
    seed: int
    objective: tuple[float, ...]
    val_loss: tuple[float, ...]
    collapsed: tuple[int, ...]
    diverged: tuple[int, ...]
    kind: tuple[str, ...]
    best_val_loss: tuple[float, ...]
    best_epoch: tuple[int, ...]
    epoch_s: tuple[float, ...]

    @property
    def epochs(self) -> int:
        return len(self.objective)

    @property
    def final(self) -> float:
        """The objective at the last recorded epoch: a full run's score."""
        return self.objective[-1]

    @property
    def flag_epoch(self) -> int:
        """The first epoch whose flags end a trial under ``collapse/stop`` (collapsed or
        diverged); 0 when none is raised."""
        for i, (c, d) in enumerate(zip(self.collapsed, self.diverged, strict=True)):
            if c or d:
                return i + 1
        return 0

    def result(self, epoch: int) -> dict[str, Any]:
        """Epoch ``epoch``'s row as a Tune result holds it (1-based ``epoch``)."""
        i = epoch - 1
        return {"epoch": epoch, "training_iteration": epoch, "objective": self.objective[i],
                "val_loss": self.val_loss[i], "collapsed": self.collapsed[i],
                "diverged": self.diverged[i], "collapse_kind": self.kind[i],
                "best_val_loss": self.best_val_loss[i], "best_epoch": self.best_epoch[i]}

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Curve:
        c = row["curves"]

        def num(key: str) -> tuple[float, ...]:
            return tuple(math.inf if v is None else float(v) for v in c[key])

        return cls(point=row["point"], seed=int(row["seed"]), objective=num("objective"),
                   val_loss=num("val_loss"), collapsed=tuple(int(x) for x in c["collapsed"]),
                   diverged=tuple(int(x) for x in c["diverged"]),
                   kind=tuple(str(x) for x in c["collapse_kind"]),
                   best_val_loss=num("best_val_loss"),
                   best_epoch=tuple(int(x) for x in c["best_epoch"]),
                   epoch_s=num("epoch_time_s"))


def repair_tail(path: Path) -> bool:
    """Cut a torn last line (a run cut off mid-write) off the table, so that the next row starts
    on a line of its own; True when something was cut."""
    if not path.exists():
        return False
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return False
    with path.open("r+b") as f:
        f.truncate(data.rfind(b"\n") + 1)
    print(f"note: {path}: cut an incomplete last line (a run cut off mid-write); it will be "
          "recorded again")
    return True


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The table's rows; a torn last line (a crash mid-write) is skipped, any other bad line is
    an error naming its line number."""
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    rows = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except ValueError:
            if i == len(lines):
                print(f"note: {path}: line {i} is incomplete (a run cut off mid-write); "
                      "skipped, it will be recorded again")
                continue
            raise ValueError(f"{path}: line {i} is not JSON") from None
    return rows


@dataclass
class Table:
    """The recorded runs of one grid, by (point, seed)."""

    grid: Grid
    curves: dict[tuple[str, int], Curve]
    max_epochs: int
    path: Path

    @classmethod
    def read(cls, path: Path, grid: Grid | None = None,
             seeds: tuple[int, ...] | None = None) -> Table:
        """The table at ``path``, its grid read from its sidecar unless given. ``seeds``: only
        these training seeds of the grid (a table still being recorded holds every point at its
        first seed before the second). Refuses a table that lacks a run of the grid (the replay
        proposes every point) or holds rows of another grid, naming them."""
        path = Path(path)
        if grid is None:
            meta = read_sidecar(path)
            if meta is None:
                raise ValueError(f"{path}: no table recorded there (no {SIDECAR} beside it): "
                                 f"run bench/replay_record.py --table {path} first")
            grid = get_grid(meta["grid"]["name"])
        if seeds is not None:
            extra = sorted(set(seeds) - set(grid.seeds))
            if extra or not seeds:
                raise ValueError(f"training seeds {list(seeds)}: grid {grid.name!r} records "
                                 f"seeds {list(grid.seeds)}")
            grid = replace(grid, seeds=tuple(seeds))
        rows = [r for r in read_rows(path) if int(r["seed"]) in grid.seeds]
        curves: dict[tuple[str, int], Curve] = {}
        epochs = set()
        for r in rows:
            grid.coord_of(r["point"])  # on the grid, or ValueError naming it
            curves[(r["point"], int(r["seed"]))] = Curve.from_row(r)
            epochs.add(int(r["max_epochs"]))
        missing = [k for k in grid.runs() if k not in curves]
        if missing:
            raise ValueError(f"{path}: {len(missing)} of {len(grid.runs())} runs of grid "
                             f"{grid.name!r} are not recorded (first: {missing[0]}); run "
                             f"bench/replay_record.py --table {path} to finish it")
        if len(epochs) != 1:
            raise ValueError(f"{path}: rows disagree on max_epochs: {sorted(epochs)}")
        return cls(grid=grid, curves=curves, max_epochs=epochs.pop(), path=path)

    @property
    def seeds(self) -> tuple[int, ...]:
        return self.grid.seeds

    def curve(self, point: str, seed: int) -> Curve:
        return self.curves[(point, seed)]

    def point_scores(self) -> dict[str, float]:
        """Each point's mean final objective over its seeds (a full run's score)."""
        return {p: sum(self.curve(p, s).final for s in self.seeds) / len(self.seeds)
                for p in self.grid.points()}

    def floor(self) -> float:
        """The lowest objective any trial could end with: the least over every row and epoch."""
        return min(min(c.objective) for c in self.curves.values())


# ------------------------------------------------------------------ the sidecar
def sidecar_path(table: Path) -> Path:
    return Path(table).parent / SIDECAR


def read_sidecar(table: Path) -> dict[str, Any] | None:
    p = sidecar_path(table)
    return json.loads(p.read_text()) if p.exists() else None


def write_sidecar(table: Path, meta: dict[str, Any]) -> None:
    """Written whole to a temporary file and renamed: a crash leaves the old or the new one."""
    p = sidecar_path(table)
    tmp = p.with_suffix(".tmp")
    tmp.write_text(json.dumps(meta, indent=1) + "\n")
    os.replace(tmp, p)


def git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def new_session(workers: int) -> dict[str, Any]:
    """One recording session's entry: commit, date, machine; ``runs`` and ``wall_s`` grow."""
    return {"started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "commit": git("rev-parse", "HEAD"),
            "dirty_model": bool(git("status", "--porcelain", "--", "ptycho_model")),
            "cpu": _common.cpu_model(), "cores": _common.cores(), "workers": workers,
            "runs": 0, "wall_s": 0.0}


def open_sidecar(table: Path, grid: Grid, workers: int) -> dict[str, Any]:
    """The sidecar with a new session appended; refuses a table recorded on another grid."""
    meta = read_sidecar(table)
    recorded = {k: (meta or {}).get("grid", {}).get(k) for k in grid.signature()}
    if meta is not None and recorded != grid.signature():
        raise ValueError(f"{table} was recorded on grid {meta.get('grid', {}).get('name')!r} "
                         f"with other settings than grid {grid.name!r} now has; give another "
                         "--table (one table per folder)")
    if meta is None:
        meta = {"table": Path(table).name, "grid": grid.to_dict(), "sessions": [],
                "note": "per-epoch curves of real runs with collapse/stop=false (the full "
                        "curve exists after a flag); the replay stops trials itself"}
        if Path(table).exists():
            meta["note"] += "; runs recorded before this sidecar existed are not timed"
    meta["grid"] = grid.to_dict()  # the same runs; what it leaves out, in today's words
    meta["sessions"].append(new_session(workers))
    return meta


def close_run(meta: dict[str, Any], wall_s: float, recorded: int) -> None:
    """Count a finished run in the current session and the totals."""
    s = meta["sessions"][-1]
    s["runs"] += 1
    s["wall_s"] = round(wall_s, 1)
    meta["total_wall_s"] = round(sum(x["wall_s"] for x in meta["sessions"]), 1)
    meta["runs_recorded"] = recorded


# ------------------------------------------------------------------ seed arms on the grid
MISMATCH = 10.0  # a categorical difference outweighs any numeric one (decades, epochs)


def _distance(a: Any, b: Any) -> float:
    """0 for equal values; decades between two positive floats; the difference of two ints;
    :data:`MISMATCH` for any other difference."""
    if a == b:
        return 0.0
    nums = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (a, b))
    if nums and all(isinstance(x, int) for x in (a, b)):
        return float(abs(a - b))
    if nums and a > 0 and b > 0:
        return abs(math.log10(a / b))
    return MISMATCH


def base_values(grid: Grid) -> dict[str, Any]:
    from ptycho_model.config import flatten
    from ptycho_model.presets import preset_config

    return flatten(preset_config(grid.preset).to_dict())


def project_arm(grid: Grid, arm: dict[str, Any]) -> tuple[str, list[str]]:
    """The grid point nearest ``arm`` (flat config paths; a path it leaves out takes the preset's
    value) and what moved: per axis the level whose updates differ least (categories first,
    then decades of a float, then an int's difference; ties to the first level), and every
    fixed value the arm sets otherwise."""
    values = {**base_values(grid), **arm}
    coord, moved = [], []
    for a in grid.axes:
        costs = [sum(_distance(values.get(p), v) for p, v in lv.updates.items())
                 for lv in a.levels]
        j = costs.index(min(costs))
        coord.append(j)
        for p, v in a.levels[j].updates.items():
            if p in arm and arm[p] != v:
                moved.append(f"{p} {arm[p]:g} -> {v:g}" if isinstance(v, float)
                             else f"{p} {arm[p]} -> {v}")
    for p, v in grid.fixed.items():
        if p in arm and arm[p] != v:
            moved.append(f"{p} {arm[p]} -> {v}")
    extra = [p for p in arm if p not in grid.fixed
             and not any(p in lv.updates for a in grid.axes for lv in a.levels)]
    moved += [f"{p} {arm[p]} dropped (the grid does not vary it)" for p in extra]
    return grid.point_id(tuple(coord)), moved


@dataclass(frozen=True)
class Arm:
    name: str
    point: str
    moved: tuple[str, ...]


def seed_arms(grid: Grid) -> list[Arm]:
    """The preset's measured arms, then upstream's (``ptycho_model.upstream_arms``), each moved
    to its nearest grid point; a point already taken is dropped (the first arm keeps it), as
    the service de-duplicates its projected arms."""
    from ptycho_model.presets import get_preset
    from ptycho_model.upstream_arms import SEED_ARMS

    out: list[Arm] = []
    for name, arm in {**get_preset(grid.preset).arms, **SEED_ARMS}.items():
        point, moved = project_arm(grid, arm)
        if point not in (a.point for a in out):
            out.append(Arm(name, point, tuple(moved)))
    return out


def default_point(grid: Grid) -> str:
    """The preset's own config, moved to its nearest grid point (the hand protocol's start
    without seed arms)."""
    return project_arm(grid, {})[0]


# ------------------------------------------------------------------ the service on the grid
def spec_file(grid: Grid, seed: int, points: list[dict[str, Any]] | None = None,
              num_samples: int | None = None) -> dict[str, Any]:
    """A ``--spec`` file (as a dict) that restricts the service to the grid: the base space's
    paths and the grid's added ones as categorical choices, the seed arms as ``search.points``
    (the service's own projection would drop an arm whose value is not a choice)."""
    search: dict[str, Any] = {"space": BASE_SPACE, "params": grid.search_params(), "seed": seed}
    if points:
        search["points"] = points
    if num_samples is not None:
        search["num_samples"] = num_samples
    return {"preset": grid.preset, "search": search}


def service_spec(grid: Grid, seed: int = 0, points: list[dict[str, Any]] | None = None,
                 num_samples: int | None = None):
    """The service's :class:`tune_ptycho.spec.ExperimentSpec` for the grid, built by its own
    ``build_spec``: preset < spec file (:func:`spec_file`) < ``--set`` of the fixed values."""
    from tune_ptycho.spec import build_spec

    return build_spec(spec_file(grid, seed, points, num_samples), {}, dict(grid.fixed))


def _key(params: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((k, float(f"{v:.10g}") if isinstance(v, float) else v)
                        for k, v in params.items()))


@dataclass
class SpacePoints:
    """Grid points as the service's space names them (its Optuna parameters), both ways."""

    params: dict[str, dict[str, Any]]  # point -> Optuna params
    by_key: dict[tuple[tuple[str, Any], ...], str]

    @classmethod
    def of(cls, grid: Grid, spec: Any) -> SpacePoints:
        """Each point run through the spec's space (``search_spaces.project``); two points the
        space cannot tell apart, or one it cannot express, is an error naming them."""
        from search_spaces import project

        params: dict[str, dict[str, Any]] = {}
        by_key: dict[tuple[tuple[str, Any], ...], str] = {}
        for point in grid.points():
            p = project(spec.space, grid.updates(point), spec.run)
            if p is None:
                raise ValueError(f"grid point {point!r} is not in the service's space")
            k = _key(p)
            if k in by_key:
                raise ValueError(f"grid points {by_key[k]!r} and {point!r} are one point of the "
                                 "service's space")
            params[point], by_key[k] = p, point
        return cls(params, by_key)

    def point(self, params: dict[str, Any]) -> str:
        """The grid point of an Optuna trial's params; ValueError naming them if none."""
        try:
            return self.by_key[_key(params)]
        except KeyError:
            raise ValueError(f"params {params} are no grid point") from None
