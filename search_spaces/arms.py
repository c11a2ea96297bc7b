"""The seed arms of the upstream study plans, projected onto each space.

The arms themselves (``SEED_ARMS``, and ``ARM_SOURCES``: the part of the upstream study each
comes from) are plain data in :mod:`ptycho_model.upstream_arms`, importable without Optuna; this
module re-exports them and projects them.

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
from ptycho_model.upstream_arms import ARM_SOURCES, SEED_ARMS

from .introspection import Space, run_space, suggested_params
from .spaces import get_space

__all__ = ["ARM_SOURCES", "SEED_ARMS", "ArmProjection", "project", "project_arms", "projected_arms",
           "seed_points"]


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
