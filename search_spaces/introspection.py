"""What a space asks for: its branches, its distributions, and the parameters fixed values select.

A space is explored without a study: a stand-in trial answers every ``suggest_*`` call and records
the distribution asked for. Spaces branch only on categorical values (they only call
``trial.suggest_*`` and compare the categorical answers), so following every combination of
categorical answers reached, with numeric parameters at their low bound, visits every branch.
This module runs spaces; it does not sample, store or enqueue anything.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalChoiceType,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from .spaces import get_space

__all__ = ["Branch", "Space", "branches", "distributions", "run_space", "suggested_params"]

Space = Callable[[optuna.Trial], None]
Answer = Callable[[str, BaseDistribution], Any]


class Branch(NamedTuple):
    """One path through a space: the categorical answers that select it (numeric parameters at
    their low bound) and the distribution of every name asked on it, in the order asked."""

    params: dict[str, Any]
    distributions: dict[str, BaseDistribution]


class _ProbeTrial:
    """Stands in for an :class:`optuna.Trial`: ``answer`` picks each value, nothing is checked.

    Unlike :class:`optuna.trial.FixedTrial` it accepts values outside a distribution (and a
    callable instead of a complete dict), so callers can see the distributions before deciding
    what to do with such values.
    """

    def __init__(self, answer: Answer) -> None:
        self._answer = answer
        self.params: dict[str, Any] = {}
        self.distributions: dict[str, BaseDistribution] = {}

    def _suggest(self, name: str, distribution: BaseDistribution) -> Any:
        value = self._answer(name, distribution)
        self.params[name] = value
        self.distributions[name] = distribution
        return value

    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False
    ) -> float:
        return self._suggest(name, FloatDistribution(low, high, log=log, step=step))

    def suggest_int(
        self, name: str, low: int, high: int, *, step: int = 1, log: bool = False
    ) -> int:
        return self._suggest(name, IntDistribution(low, high, log=log, step=step))

    def suggest_categorical(
        self, name: str, choices: Sequence[CategoricalChoiceType]
    ) -> CategoricalChoiceType:
        return self._suggest(name, CategoricalDistribution(choices))


def _resolve(space: str | Space) -> Space:
    return get_space(space) if isinstance(space, str) else space


def run_space(space: str | Space, answer: Answer) -> Branch:
    """Run ``space`` once, ``answer(name, distribution)`` giving each value; return what it asked,
    with the values given, in the order asked."""
    fn = _resolve(space)
    probe = _ProbeTrial(answer)
    result = fn(probe)  # type: ignore[arg-type]
    if result is not None:
        raise TypeError(f"space {getattr(fn, '__name__', fn)!r} returned {result!r}; a space "
                        "returns None (presets and the spec own every constant)")
    return Branch(probe.params, probe.distributions)


def _first_or_chosen(
    chosen: dict[str, CategoricalChoiceType], met: list[tuple[str, CategoricalDistribution]]
) -> Answer:
    """An answer that follows ``chosen``, takes the first choice of any other categorical (noting
    it in ``met``) and the low bound of every numeric range."""

    def answer(name: str, dist: BaseDistribution) -> Any:
        if isinstance(dist, CategoricalDistribution):
            if name in chosen:
                return chosen[name]
            met.append((name, dist))
            return dist.choices[0]
        assert isinstance(dist, (FloatDistribution, IntDistribution))
        return dist.low

    return answer


def branches(space: str | Space) -> list[Branch]:
    """Every branch of ``space``: one per combination of categorical answers the space reaches,
    in a fixed order that starts with the branch of every categorical's first choice."""
    found: list[Branch] = []
    pending: list[dict[str, CategoricalChoiceType]] = [{}]
    while pending:
        chosen = pending.pop()
        met: list[tuple[str, CategoricalDistribution]] = []
        found.append(run_space(space, _first_or_chosen(chosen, met)))
        # The other choices of each categorical first met on this path, keeping the answers given
        # before it (a categorical met later may not be asked on those branches).
        for i in reversed(range(len(met))):
            name, dist = met[i]
            before = {n: d.choices[0] for n, d in met[:i]}
            for choice in reversed(dist.choices[1:]):
                pending.append({**chosen, **before, name: choice})
    return found


def distributions(space: str | Space) -> dict[str, tuple[BaseDistribution, ...]]:
    """Every name ``space`` may suggest, with the distinct distributions it may use for it (more
    than one where a range is conditional, e.g. ``clip/threshold``)."""
    out: dict[str, list[BaseDistribution]] = {}
    for branch in branches(space):
        for name, dist in branch.distributions.items():
            seen = out.setdefault(name, [])
            if dist not in seen:
                seen.append(dist)
    return {name: tuple(dists) for name, dists in out.items()}


def suggested_params(space: str | Space, values: dict[str, Any]) -> dict[str, Any]:
    """The parameters ``space`` suggests when its trial is fixed to ``values``.

    Runs the space under :class:`optuna.trial.FixedTrial`, so the branch follows ``values`` and a
    name the space asks for must be in ``values``; keys it does not ask for are left out.

    Raises:
        ValueError: a suggested name is missing from ``values``, or its value is not a choice of
            its categorical (or is not positive for a log-scaled range).
    """
    fn = _resolve(space)
    trial = optuna.trial.FixedTrial(values)
    try:
        fn(trial)  # type: ignore[arg-type]  # FixedTrial answers what a space asks a Trial
    except ValueError as err:
        raise ValueError(f"space {getattr(fn, '__name__', fn)!r} cannot run on {values!r}: "
                         f"{err}") from err
    return dict(trial.params)
