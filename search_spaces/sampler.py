"""The Optuna sampler the service searches with: seeded multivariate TPE for conditional spaces.

``group=True`` lets multivariate TPE model each branch of a define-by-run space on its own;
``constant_liar=True`` keeps concurrent trials from receiving the same suggestion
(docs/ray_optuna.md §3).
Building storage, studies and searchers is the service's business, not this module's.
"""

from __future__ import annotations

import warnings

import optuna

__all__ = ["make_sampler"]


def make_sampler(seed: int, n_startup_trials: int = 10) -> optuna.samplers.TPESampler:
    """A seeded TPE sampler: multivariate, grouped, with the constant liar.

    ``n_startup_trials`` random trials come first (enqueued seed points count among them).
    Optuna's ExperimentalWarning for ``group`` is silenced here, and only here.
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
        )
