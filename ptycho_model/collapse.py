"""The collapse rule (docs/design.md "Collapse"), computed by the training loop, read by stoppers.

Two kinds:
* ``ratio``: after ``grace`` epochs, ``val_loss / best_val_loss > ratio`` for ``patience``
  consecutive epochs — upstream's "learns, then collapses" (0.024 -> 0.18, ratio 7.5).
* ``flat``: the predicted amplitude's std/mean stays below ``flat_std`` for ``patience`` epochs —
  runs that go flat from the start never raise the ratio (docs/calibration.md, "How training
  fails at CPU scale").

The streak counters live in :class:`CollapseState`, which is saved in every checkpoint, so the
rule survives a resume exactly (Ray's stopper memory does not survive a restore).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from . import names
from .config import CollapseConfig


@dataclass
class CollapseState:
    best_val_loss: float = math.inf
    best_epoch: int = 0
    ratio_streak: int = 0
    flat_streak: int = 0
    collapsed: bool = False
    kind: str = names.KIND_NONE
    collapse_epoch: int = 0  # the first epoch the flags were raised (0: never)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> CollapseState:
        return cls(**d)


def update(state: CollapseState, cfg: CollapseConfig, grace: int, epoch: int, val_loss: float,
           output_std: float) -> CollapseState:
    """Advance the rule by one epoch (1-based ``epoch``); returns the same, mutated, state.

    Once raised, the flags stay raised: a collapsed trial is reported as such until it ends.
    """
    if val_loss < state.best_val_loss:
        state.best_val_loss = val_loss
        state.best_epoch = epoch
    ratio = val_loss / state.best_val_loss if state.best_val_loss > 0 else 1.0
    state.ratio_streak = state.ratio_streak + 1 if (epoch > grace and ratio > cfg.ratio) else 0
    state.flat_streak = state.flat_streak + 1 if output_std < cfg.flat_std else 0
    if not state.collapsed:
        if state.flat_streak >= cfg.patience:
            state.collapsed, state.kind = True, names.KIND_FLAT
        elif state.ratio_streak >= cfg.patience:
            state.collapsed, state.kind = True, names.KIND_RATIO
        if state.collapsed:
            state.collapse_epoch = epoch
    return state


def ratio_of(state: CollapseState, val_loss: float) -> float:
    return val_loss / state.best_val_loss if state.best_val_loss > 0 else 1.0
