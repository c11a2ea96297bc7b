"""Named Optuna define-by-run search spaces over the run config's paths, their seed points from the
upstream study plans (:mod:`search_spaces.arms`), and the sampler that searches them.

Imports optuna and :mod:`ptycho_model` only (never ray): the service passes a space
to Ray's ``OptunaSearch(space=...)`` with ``seed_points(name)`` as ``points_to_evaluate`` and
``make_sampler(seed)`` as the sampler.
"""

from __future__ import annotations

from .arms import (
    ARM_SOURCES,
    SEED_ARMS,
    ArmProjection,
    project,
    project_arms,
    projected_arms,
    seed_points,
)
from .introspection import Branch, Space, branches, distributions, run_space, suggested_params
from .ranges import ALL, DeclaredSpace, Range
from .sampler import make_sampler
from .spaces import DESCRIPTIONS, MAX_WARMUP_EPOCHS, SPACES, get_space, resolve_space

__all__ = [
    "ALL",
    "ARM_SOURCES",
    "ArmProjection",
    "Branch",
    "DESCRIPTIONS",
    "DeclaredSpace",
    "MAX_WARMUP_EPOCHS",
    "Range",
    "SEED_ARMS",
    "SPACES",
    "Space",
    "branches",
    "distributions",
    "get_space",
    "make_sampler",
    "project",
    "project_arms",
    "projected_arms",
    "resolve_space",
    "run_space",
    "seed_points",
    "suggested_params",
]
