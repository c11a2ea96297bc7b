"""``tune-ptycho cliff``: P(collapse) along one axis (the peak learning rate by default), per arm,
over seeds, until each point's interval is narrow enough to decide.

Past the learning-rate cliff training is chaotic: whether a configuration collapses is a
probability, and one seed is an anecdote. This command runs every (arm, axis value) point over
``--seeds`` training seeds as one Ray Tune experiment (no early stopping; the collapse rule stops
a flagged trial), then adds seeds in rounds, each round another experiment, to the points whose
Wilson 95% interval is wider than ``2 x --halfwidth``, until every point is narrow enough or has
``--max-seeds`` runs. Seeds are paired: every point of a round runs the same ones.

On disk, under ``STORAGE/NAME/``: ``cliff.json`` (the plan and its rounds), ``round_1/``,
``round_2/`` ... (experiments like any: ``tune-ptycho resume`` and ``analyze`` work on each), and
``report/`` with ``cliff.csv``, ``cliff.png`` and ``report.md`` (:mod:`tune_ptycho.analysis.cliff`,
which also reads the plan back: :class:`~tune_ptycho.analysis.cliff.Plan`). Running
the same command again continues the map: an interrupted round is resumed, and a new
``--halfwidth`` or ``--max-seeds`` adds the rounds it needs.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ptycho_model.config import flatten
from ptycho_model.errors import InputError
from ptycho_model.presets import get_preset

from ..analysis.cliff import Plan, load_cliff, read_plan, write_report
from ..analysis.collapses import wilson
from ..analysis.crash_hunt import SEED_PATH
from ..storage.layout import CLIFF_CSV, CLIFF_META, CLIFF_PNG, REPORT_MD, SPEC_FILE
from .schedulers import NONE as NO_SCHEDULER

DEFAULT_AXIS = "optim/lr"
DEFAULT_ARMS = ("cliff", "cliff_agc", "stable_layerscale")


class CliffRefused(InputError):
    """A cliff map that cannot be run as asked (exit 2, one line)."""


def arm_params(preset: str) -> dict[str, dict[str, Any]]:
    """The named arms at ``preset``: ``plain`` (the preset as it is), and where the preset has
    its measured cliff arm (the cpu preset), ``cliff`` (a warmup into the peak LR), ``cliff_agc``
    (the same with per-tensor AGC 0.01) and ``stable_layerscale`` (the same on stable_hybrid with
    the LayerScale gate)."""
    p = get_preset(preset)
    arms: dict[str, dict[str, Any]] = {"plain": {}}
    cliff = next((dict(v) for k, v in p.arms.items() if k.endswith("warmup_cliff")), None)
    if cliff is not None:
        cliff.pop("optim/lr", None)  # the axis
        arms["cliff"] = cliff
        arms["cliff_agc"] = {**cliff, "clip/algorithm": "agc", "clip/threshold": 0.01}
        arms["stable_layerscale"] = {**cliff, "model/arch": "stable_hybrid",
                                     "model/stable_block": "layerscale"}
    return arms


def log_values(low: float, high: float, n: int) -> list[float]:
    if not (0 < low < high) or n < 2:
        raise CliffRefused(f"--low {low:g} --high {high:g} --points {n}: give 0 < low < high "
                           "and at least 2 points")
    return [float(f"{low * (high / low) ** (i / (n - 1)):.3g}") for i in range(n)]


def fill_arms(preset: str, names: list[str], axis: str, sets: dict[str, Any]
              ) -> dict[str, dict[str, Any]]:
    """Each arm as a full point: every path any arm sets, the others' taken from the preset
    (with ``--set`` applied), so that no parameter of a point is left to a sampler."""
    from ptycho_model.presets import preset_config

    known = arm_params(preset)
    for n in names:
        if n not in known:
            raise CliffRefused(f"--arms {n!r}: not an arm at preset {preset!r}; known: "
                               f"{', '.join(known)}")
    if len(set(names)) != len(names):
        raise CliffRefused(f"--arms {','.join(names)}: an arm is named twice")
    base = flatten(preset_config(preset, {k: v for k, v in sets.items() if "/" in k}).to_dict())
    if axis not in base or axis == SEED_PATH:
        raise CliffRefused(f"--axis {axis!r}: not a config path to vary (tune-ptycho paths "
                           "lists them)")
    paths = sorted({k for n in names for k in known[n]} - {axis, SEED_PATH})
    arms = {n: {p: known[n].get(p, base[p]) for p in paths} for n in names}
    seen: dict[str, str] = {}
    for n, a in arms.items():
        key = json.dumps(a, sort_keys=True)
        if key in seen:
            raise CliffRefused(f"--arms: {seen[key]} and {n} are the same configuration here")
        seen[key] = n
    return arms


def wilson_halfwidth(k: int, n: int) -> float:
    if n == 0:
        return math.inf
    lo, hi = wilson(k, n)
    return (hi - lo) / 2


def next_round(plan: Plan, counts: dict[tuple[str, float], tuple[int, int]]
               ) -> list[list[Any]]:
    """The points of the next round: ``plan.seeds`` new seeds (the same for all) for every
    (arm, value) whose Wilson half-width is above ``plan.halfwidth``, capped at
    ``plan.max_seeds`` runs per point. ``counts``: (arm, value) -> (collapsed, ended runs)."""
    used = [s for r in plan.rounds for _, _, s in r["points"]]
    start = max(used, default=plan.base_seed) + 1
    points = []
    for arm in plan.arms:
        for v in plan.values:
            k, n = counts.get((arm, v), (0, 0))
            room = plan.max_seeds - n
            if room <= 0 or wilson_halfwidth(k, n) <= plan.halfwidth:
                continue
            points += [[arm, v, start + i] for i in range(min(plan.seeds, room))]
    return points


def first_round(plan: Plan) -> list[list[Any]]:
    seeds = [plan.base_seed + 1 + i for i in range(min(plan.seeds, plan.max_seeds))]
    return [[arm, v, s] for arm in plan.arms for v in plan.values for s in seeds]


def round_spec(plan: Plan, root: str, rnd: dict[str, Any]):
    """A round's experiment spec: its points as explicit points, no early stopping."""
    from dataclasses import replace

    from ..spec import build_spec, validate

    points = [plan.point_params(a, v, s) for a, v, s in rnd["points"]]
    flags = {"preset": plan.preset, "storage/path": root, "storage/name": rnd["name"],
             "scheduler/name": NO_SCHEDULER, "search/num_samples": len(points),
             "search/seed_points": False, "search/seed_arms": 0}
    spec = build_spec(None, flags, dict(plan.sets))
    search = replace(spec.search, points=points, resolved=plan.resolved_space(points))
    spec = replace(spec, search=search)
    validate(spec)
    return spec


def write_plan(root: Path, plan: Plan) -> None:
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / (CLIFF_META + ".tmp")
    tmp.write_text(json.dumps(plan.to_dict(), indent=1, default=float) + "\n")
    tmp.replace(root / CLIFF_META)


def cliff(root: Path, plan: Plan, address: str | None = None, dashboard: bool = True,
          progress: bool = True, max_rounds: int = 20) -> int:
    """Run (or continue) the map at ``root``; write its report after every round."""
    from .launch import resume, run

    old = read_plan(root)
    if old is not None:
        diff = old.same_map(plan)
        if diff is not None:
            raise CliffRefused(f"{str(root)!r} holds a cliff map with another {diff} "
                               f"({getattr(old, diff)!r}); choose another --name")
        old.halfwidth, old.max_seeds = plan.halfwidth, plan.max_seeds
        plan = old
        print(f"cliff: continuing the map at {root} ({len(plan.rounds)} round(s) so far)")
    code = 0
    while len(plan.rounds) <= max_rounds:
        if plan.rounds and not (root / plan.rounds[-1]["name"] / SPEC_FILE).is_file():
            plan.rounds.pop()  # planned, never started: plan it again from the counts
        if plan.rounds:
            last = root / plan.rounds[-1]["name"]
            cm = load_cliff(root)
            if cm.pending_in(plan.rounds[-1]["name"]):
                print(f"cliff: resuming {last}")
                code = resume(str(last), address=address, dashboard=dashboard) or code
                cm = load_cliff(root)
            points = next_round(plan, cm.counts())
        else:
            points = first_round(plan)
        if not points:
            break
        rnd = {"name": f"round_{len(plan.rounds) + 1}", "points": points}
        plan.rounds.append(rnd)
        spec = round_spec(plan, str(root), rnd)
        write_plan(root, plan)
        n_pts = len({(a, v) for a, v, _ in points})
        print(f"cliff {rnd['name']}: {len(points)} runs ({n_pts} point(s) x seeds "
              f"{sorted({s for _, _, s in points})}), no early stopping, at {root / rnd['name']}")
        code = run(spec, address=address, dashboard=dashboard, progress=progress,
                   study_name=f"{root.name}.{rnd['name']}") or code
        write_report(root)
    out = write_report(root)
    print(f"cliff report: {out}/{REPORT_MD}, {out}/{CLIFF_CSV}, {out}/{CLIFF_PNG}")
    return code
