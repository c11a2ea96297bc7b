"""The arms of the upstream study plans, and their projection onto each space.

``SEED_ARMS`` holds every arm the upstream FNO stability study ran (the upstream plan
each comes from is named in ``ARM_SOURCES``) as a flat dict of config paths, complete for the
knobs the
spaces search: architecture and stable block, optimizer and its own hyperparameters, learning rate,
schedule and clipping. What the arms held fixed that no space searches (epochs, data, width) is the
preset's business and is left out.

Projection rule (``projected_arms``, ``seed_points``), per space and arm:

1. The arm, laid over the study's run config (``RunConfig()`` unless one is given), answers the
   space; the point is the names the space asks on the branch the arm selects, with those values.
   Keys the space does not ask there are dropped; a name the arm does not set takes the run
   config's value.
2. A categorical value that is not one of the space's choices (the AGC arm in ``lr_guard``, whose
   clipping is none | norm) leaves the arm out of that space.
3. A numeric value outside the space's range is moved to the nearest bound: the SGD arm's
   ``optim/weight_decay = 0`` becomes the log range's low bound 1e-6 (effectively no decay).
4. An arm that sets none of the names the space asks says nothing about it and is left out
   (every arm leaves ``train/seed`` alone, so the ``seeds`` space has no seed points).
5. Points equal to an earlier one are dropped; the first arm's name is kept. Order follows
   ``SEED_ARMS`` (the order the upstream study ran them).

Every point is checked by running the space under :class:`optuna.trial.FixedTrial`, which must
ask for exactly the point's names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from ptycho_model.config import RunConfig, flatten

from .introspection import Space, run_space, suggested_params
from .spaces import get_space

__all__ = ["ARM_SOURCES", "SEED_ARMS", "ArmProjection", "project", "project_arms", "projected_arms",
           "seed_points"]

# The upstream FNO-STABILITY-OVERHAUL-001 study plans each arm comes from (docs/physics.md §7).
_STAGE_A_PLAN = "FNO-STABILITY-OVERHAUL-001 overall plan, Stage A shoot-out (Phase 3)"
_LAYERSCALE_PLAN = "LayerScale stable_hybrid plan and its Stage A rerun (Phase 5)"
_LR_GUARD_PLAN = "stable_hybrid LR + gradient-guard sweep"
_OPTIMIZER_PLAN = "stable_hybrid optimizer + diagnostics sweep"

# Upstream defaults the arms ran with unless their command line said otherwise
# (docs/physics.md §4-5.4): Adam, betas (0.9, 0.999), lr 1e-3, constant LR ("Default").
_ADAM_1E3 = {"optim/name": "adam", "optim/lr": 1e-3, "optim/beta1": 0.9, "optim/beta2": 0.999}
_CONSTANT = {"sched/name": "constant"}
_NO_CLIP = {"clip/algorithm": "none"}  # upstream --torch-grad-clip 0.0 disables clipping
# LayerScale StablePtychoBlock (v2), gate init 1e-3: the stable_hybrid of every arm after Stage A.
_STABLE_LS = {
    "model/arch": "stable_hybrid",
    "model/stable_block": "layerscale",
    "model/layerscale_init": 1e-3,
}
# --torch-scheduler WarmupCosine --torch-lr-warmup-epochs 5 --torch-lr-min-ratio 0.05
_WARMUP_COSINE = {"sched/name": "warmup_cosine", "sched/warmup_epochs": 5, "sched/min_ratio": 0.05}

SEED_ARMS: dict[str, dict[str, Any]] = {
    # Stage A (004, Tasks 3.2-3.4): hybrid + norm 1.0; stable_hybrid v1 (zero-gamma), no clip;
    # hybrid + AGC 0.01. All Adam 1e-3, constant LR, 50 epochs.
    "stage_a_control": {
        "model/arch": "hybrid", **_ADAM_1E3, **_CONSTANT,
        "clip/algorithm": "norm", "clip/threshold": 1.0,
    },
    "stage_a_stable": {
        "model/arch": "stable_hybrid", "model/stable_block": "zero_gamma",
        **_ADAM_1E3, **_CONSTANT, **_NO_CLIP,
    },
    "stage_a_agc": {
        "model/arch": "hybrid", **_ADAM_1E3, **_CONSTANT,
        "clip/algorithm": "agc", "clip/threshold": 0.01,
    },
    # Stage A stable arm rerun with LayerScale (000 Task 2; results in 001): no clip.
    "stage_a_stable_layerscale": {**_STABLE_LS, **_ADAM_1E3, **_CONSTANT, **_NO_CLIP},
    # LR + gradient guard (002 Tasks 2-4), stable_hybrid + LayerScale, 20 epochs.
    "stable_lowlr": {**_STABLE_LS, **_ADAM_1E3, "optim/lr": 2.5e-4, **_CONSTANT, **_NO_CLIP},
    "stable_warmup_lowlr": {
        **_STABLE_LS, **_ADAM_1E3, "optim/lr": 2.5e-4, **_WARMUP_COSINE, **_NO_CLIP,
    },
    "stable_warmup_clip": {
        **_STABLE_LS, **_ADAM_1E3, "optim/lr": 5e-4, **_WARMUP_COSINE,
        "clip/algorithm": "norm", "clip/threshold": 0.5,
    },
    # Optimizer sweep (003 Task 3), stable_hybrid + LayerScale, lr 3e-4, WarmupCosine(5, 0.05).
    "stable_sgd": {
        **_STABLE_LS, "optim/name": "sgd", "optim/lr": 3e-4, "optim/momentum": 0.9,
        "optim/weight_decay": 0.0, **_WARMUP_COSINE, **_NO_CLIP,
    },
    "stable_adamw": {
        **_STABLE_LS, "optim/name": "adamw", "optim/lr": 3e-4, "optim/weight_decay": 0.01,
        "optim/beta1": 0.9, "optim/beta2": 0.999, **_WARMUP_COSINE, **_NO_CLIP,
    },
}

ARM_SOURCES: dict[str, str] = {
    "stage_a_control": _STAGE_A_PLAN,
    "stage_a_stable": _STAGE_A_PLAN,
    "stage_a_agc": _STAGE_A_PLAN,
    "stage_a_stable_layerscale": _LAYERSCALE_PLAN,
    "stable_lowlr": _LR_GUARD_PLAN,
    "stable_warmup_lowlr": _LR_GUARD_PLAN,
    "stable_warmup_clip": _LR_GUARD_PLAN,
    "stable_sgd": _OPTIMIZER_PLAN,
    "stable_adamw": _OPTIMIZER_PLAN,
}


class _OutsideChoices(Exception):
    """A categorical answer that is not one of the space's choices (rule 2)."""


def _into_range(value: Any, dist: FloatDistribution | IntDistribution) -> float | int:
    """Rule 3: the nearest value of ``dist`` (bounds only; the spaces use no steps)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise ValueError(f"value {value!r} is not a finite number for {dist}")
    clipped = min(max(value, dist.low), dist.high)
    return int(round(clipped)) if isinstance(dist, IntDistribution) else float(clipped)


def _project(space: Space, values: dict[str, Any], base: RunConfig | None = None
             ) -> tuple[dict[str, Any] | None, list[tuple[str, Any, Any]], str | None]:
    """(point or None, [(path, arm value, clamped value)], why it was left out)."""
    answers = {**flatten((base or RunConfig()).to_dict()), **values}
    clamped: list[tuple[str, Any, Any]] = []

    def answer(name: str, dist: BaseDistribution) -> Any:
        if name not in answers:
            raise ValueError(f"space asks for {name!r}, which is no config path")
        value = answers[name]
        if isinstance(dist, CategoricalDistribution):
            if value not in dist.choices:
                raise _OutsideChoices(f"{name}={value} is not among {list(dist.choices)}")
            return value
        assert isinstance(dist, (FloatDistribution, IntDistribution))
        moved = _into_range(value, dist)
        if name in values and moved != value:
            clamped.append((name, value, moved))
        return moved

    try:
        point = run_space(space, answer).params
    except _OutsideChoices as e:
        return None, [], str(e)
    asked = suggested_params(space, point)
    assert asked == point, f"projection {point!r} selects another branch: {asked!r}"
    if not set(point) & set(values):  # rule 4
        return None, [], "it sets none of the searched parameters"
    return point, clamped, None


def project(space: str | Space, values: dict[str, Any], base: RunConfig | None = None
            ) -> dict[str, Any] | None:
    """``values`` (an arm) projected onto ``space`` by rules 1-4; ``None`` where rule 2 or 4
    applies."""
    return _project(get_space(space) if isinstance(space, str) else space, values, base)[0]


@dataclass(frozen=True)
class ArmProjection:
    """The seed arms of one space: their points, those clamped into it, those left out."""

    points: dict[str, dict[str, Any]]  # arm -> point, de-duplicated, in SEED_ARMS order
    clamped: dict[str, list[tuple[str, Any, Any]]]  # arm -> [(path, its value, the bound)]
    dropped: dict[str, str]  # arm -> why the space cannot express it (duplicates not listed)

    def summary(self, offered: int | None = None, trials: int | None = None,
                asked: int | None = None, seed_points: bool = True) -> str:
        """One line: how many arms are offered, which were clamped and which dropped.

        With ``trials`` (the study's ``num_samples``) it also says to how many trials, by which
        rule (``asked``: an explicit ``search/seed_arms``; None: the default, at most half the
        trials; ``seed_points`` false: none), how to ask for more, and how many trials Optuna's
        sampler draws. ``offered`` is then the number the study's rule allows (the arms it
        enqueues are the first ``offered`` of :attr:`points`)."""
        n = len(self.points) if offered is None else min(offered, len(self.points))
        arms = list(self.points)[:n]
        total = len(self.points) + len(self.dropped)
        if trials is None:
            head = f"seed arms: {n} of {total} offered ({', '.join(arms) or 'none'})"
        else:
            head = (f"seed arms: {n} of {total} offered to {_trials(trials)} "
                    f"({self._rule(n, offered, trials, asked, seed_points)}): "
                    f"{', '.join(arms) or 'none'}; "
                    + (f"{_trials(trials - n)} sampled by Optuna" if n < trials
                       else "no trial sampled by Optuna"))
        parts = [head]
        moved = {a: m for a, m in self.clamped.items() if a in arms}
        if moved:
            parts.append("clamped into the ranges: " + "; ".join(
                f"{arm} " + ", ".join(f"{p} {v:g} -> {c:g}" for p, v, c in moves)
                for arm, moves in moved.items()))
        if self.dropped:
            parts.append("dropped: " + "; ".join(f"{a} ({why})" for a, why in self.dropped.items()))
        return ", ".join(parts[:1]) + ("; " + "; ".join(parts[1:]) if parts[1:] else "")

    def _rule(self, n: int, limit: int | None, trials: int, asked: int | None,
              seed_points: bool) -> str:
        """Why ``n`` arms: the rule that chose them (allowing ``limit``), what else limited
        them, how to get more."""
        if not seed_points:
            return "search/seed_points=false"
        most = min(len(self.points), trials)  # what any search/seed_arms could give
        if asked is None:
            notes = ["at most half the trials by default"]
        else:
            notes = [f"search/seed_arms={asked}"
                     + (f", capped at {_trials(trials)}" if asked > trials else "")]
        if limit is not None and n < limit:
            notes.append(f"only {len(self.points)} fit the space" if self.points
                         else "no seed arm fits the space")
        if n < most:
            notes.append(f"--set search/seed_arms={most} for more")
        return "; ".join(notes)


def _trials(n: int) -> str:
    return f"{n} trial" + ("" if n == 1 else "s")


def project_arms(space: str | Space, base: RunConfig | None = None,
                 first: dict[str, dict[str, Any]] | None = None) -> ArmProjection:
    """Every seed arm projected onto ``space`` by the module's projection rule; a name an arm
    does not set takes its value in ``base`` (the study's run config; default ``RunConfig()``).
    ``first``: arms offered before upstream's (a preset's own, measured at its scale)."""
    space = get_space(space) if isinstance(space, str) else space
    points: dict[str, dict[str, Any]] = {}
    clamped: dict[str, list[tuple[str, Any, Any]]] = {}
    dropped: dict[str, str] = {}
    for arm, values in {**(first or {}), **SEED_ARMS}.items():
        point, moves, why = _project(space, values, base)
        if point is None:
            if why != "it sets none of the searched parameters":
                dropped[arm] = why or "?"
        elif point not in points.values():
            points[arm] = point
            if moves:
                clamped[arm] = moves
    return ArmProjection(points, clamped, dropped)


def projected_arms(space: str | Space) -> dict[str, dict[str, Any]]:
    """``{arm name: point}`` for ``space``, by the module's projection rule (de-duplicated,
    first arm kept, arms the space cannot express left out)."""
    return project_arms(space).points


def seed_points(space: str | Space) -> list[dict[str, Any]]:
    """The seed arms as ``points_to_evaluate`` for ``space`` (see the module docstring)."""
    return list(projected_arms(space).values())
