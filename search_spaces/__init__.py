"""Named Optuna define-by-run search spaces over the run config's paths, their seed points from the
upstream study plans (:mod:`search_spaces.arms`), and the sampler that searches them.

Imports optuna and :mod:`ptycho_model` only (never ray): the service passes a space
to Ray's ``OptunaSearch(space=...)`` with ``seed_points(name)`` as ``points_to_evaluate`` and
``make_sampler(seed)`` as the sampler.
"""

from __future__ import annotations

from .introspection import Branch, Space, branches, distributions, run_space, suggested_params
from .sampler import make_sampler
from .arms import ARM_SOURCES, SEED_ARMS, project, projected_arms, seed_points
from .spaces import (
    DESCRIPTIONS,
    MAX_WARMUP_EPOCHS,
    SPACES,
    full,
    get_space,
    lr_guard,
    optimizer,
    seeds,
    stage_a,
)

__all__ = [
    "ARM_SOURCES",
    "Branch",
    "DESCRIPTIONS",
    "MAX_WARMUP_EPOCHS",
    "SEED_ARMS",
    "SPACES",
    "Space",
    "branches",
    "distributions",
    "full",
    "get_space",
    "lr_guard",
    "make_sampler",
    "optimizer",
    "project",
    "projected_arms",
    "run_space",
    "seed_points",
    "seeds",
    "stage_a",
    "suggested_params",
]
