"""The Optuna sampler the service searches with: seeded multivariate TPE for conditional spaces.

``group=True`` lets multivariate TPE model each branch of a define-by-run space on its own;
``constant_liar=True`` keeps concurrent trials from receiving the same suggestion
(docs/ray_optuna.md §3).
Building storage, studies and searchers is the service's business, not this module's.
"""

from __future__ import annotations

import warnings

import optuna

__all__ = ["collapse_constraint", "make_sampler"]

# The study trial's user attributes the service sets when a trial ends (docs/design.md,
# "Per-epoch metrics": the names ``collapsed`` and ``diverged``).
_INFEASIBLE_ATTRS = ("collapsed", "diverged")


def collapse_constraint(trial: optuna.trial.FrozenTrial) -> tuple[float]:
    """Optuna's ``constraints_func``: one constraint, > 0 (infeasible) for a trial that the
    collapse rule flagged or that diverged, < 0 for any other.

    TPE then keeps a flagged trial out of the good group whatever its objective, and learns the
    region past the cliff as infeasible rather than only as a bad value. Module level, so a
    pickled sampler refers to it by name.
    """
    bad = any(trial.user_attrs.get(k) for k in _INFEASIBLE_ATTRS)
    return (1.0,) if bad else (-1.0,)


def make_sampler(seed: int, n_startup_trials: int = 10, collapse_aware: bool = False
                 ) -> optuna.samplers.TPESampler:
    """A seeded TPE sampler: multivariate, grouped, with the constant liar.

    ``n_startup_trials`` random trials come first (enqueued seed points count among them).
    ``collapse_aware``: collapsed and diverged trials reach TPE as infeasible
    (:func:`collapse_constraint`). Optuna's ExperimentalWarning for ``group`` and
    ``constraints_func`` is silenced here, and only here.
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"{seed=} must be an int")
    if isinstance(n_startup_trials, bool) or not isinstance(n_startup_trials, int):
        raise TypeError(f"{n_startup_trials=} must be an int")
    if n_startup_trials < 0:
        raise ValueError(f"{n_startup_trials=} must be >= 0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(
            seed=seed,
            n_startup_trials=n_startup_trials,
            multivariate=True,
            group=True,
            constant_liar=True,
            constraints_func=collapse_constraint if collapse_aware else None,
        )
