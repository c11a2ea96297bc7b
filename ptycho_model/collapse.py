"""The collapse rule (docs/design.md "Collapse"), computed by the training loop, read by stoppers.

Three kinds, each over ``patience`` consecutive epochs:
* ``ratio``: after ``grace`` epochs, ``val_loss / best_val_loss > ratio`` — upstream's "learns,
  then collapses" (0.024 -> 0.18, ratio 7.5).
* ``flat``: the predicted complex patch's spread (``output_std``) below ``flat_std`` — a constant
  output; runs that go flat from the start never raise the ratio (docs/calibration.md, "How
  training fails at CPU scale").
* ``amp_flat``: the predicted amplitude's interquartile spread (``amp_iqr``) below
  ``amp_flat_spread`` while
  ``val_loss / best_val_loss >= amp_flat_ratio`` — upstream's constant-amplitude collapse when
  the phase keeps varying and the loss settles under the ratio rule's 2x. A flat amplitude whose
  loss sits near its best is a fit through the phase, not a collapse (docs/calibration.md, "The
  collapse rule, measured", where the thresholds were chosen on one half of a labelled set of
  real runs and scored on the other).

The streak counters live in :class:`CollapseState`, which is saved in every checkpoint, so the
rule survives a resume exactly (Ray's stopper memory does not survive a restore).

Whether a flag ends the run is decided in one place, :func:`should_stop`, which every path asks:
``Trainer.finished`` (so ``tune-ptycho train`` and the Tune trainable), Tune's
``CollapseStopper`` and HyperBand's replay of a restored bracket. ``collapse/stop`` is its one
knob.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from . import names
from .config import CollapseConfig


@dataclass
class CollapseState:
    best_val_loss: float = math.inf
    best_epoch: int = 0
    ratio_streak: int = 0
    flat_streak: int = 0
    amp_flat_streak: int = 0
    collapsed: bool = False
    kind: str = names.KIND_NONE
    collapse_epoch: int = 0  # the first epoch the flags were raised (0: never)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> CollapseState:
        return cls(**d)


def should_stop(flags: Mapping[str, Any], cfg: CollapseConfig) -> bool:
    """Whether a run ends after the epoch whose metrics are ``flags``, on the rule's flags.

    A diverged run (``diverged``; its weights may hold NaN) always ends. A collapsed one
    (``collapsed``) ends when ``collapse/stop`` is true, its default; false computes and reports
    the flags, and the run trains on (to see whether it recovers). Reaching ``train/max_epochs``
    is not a flag: the caller that counts epochs checks it.

    The one stop decision: ``Trainer.finished``, Tune's ``CollapseStopper`` and HyperBand's
    ``stopped_by_rule`` all ask this function, so they cannot drift apart. Cheap, and free of
    Ray: ``flags`` is any mapping holding the metric names (a result row, an epoch's metrics).
    """
    return bool(flags.get(names.DIVERGED)) or (cfg.stop and bool(flags.get(names.COLLAPSED)))


def update(state: CollapseState, cfg: CollapseConfig, grace: int, epoch: int, val_loss: float,
           output_std: float, amp_iqr: float = math.inf) -> CollapseState:
    """Advance the rule by one epoch (1-based ``epoch``); returns the same, mutated, state.

    ``output_std`` and ``amp_iqr`` are the epoch's ``output_std`` and ``amp_iqr`` metrics (an
    ``amp_iqr`` left out never counts as flat, as in histories recorded before it existed).

    Once raised, the flags stay raised: a collapsed trial is reported as such until it ends.
    """
    if val_loss < state.best_val_loss:
        state.best_val_loss = val_loss
        state.best_epoch = epoch
    ratio = val_loss / state.best_val_loss if state.best_val_loss > 0 else 1.0
    state.ratio_streak = state.ratio_streak + 1 if (epoch > grace and ratio > cfg.ratio) else 0
    state.flat_streak = state.flat_streak + 1 if output_std < cfg.flat_std else 0
    amp_flat = amp_iqr < cfg.amp_flat_spread and ratio >= cfg.amp_flat_ratio
    state.amp_flat_streak = state.amp_flat_streak + 1 if amp_flat else 0
    if not state.collapsed:
        # one kind names the flag: the constant output first, then the loss ratio (a loss that
        # has more than doubled says more than a flat amplitude at 1.5x), then amp_flat
        if state.flat_streak >= cfg.patience:
            state.collapsed, state.kind = True, names.KIND_FLAT
        elif state.ratio_streak >= cfg.patience:
            state.collapsed, state.kind = True, names.KIND_RATIO
        elif state.amp_flat_streak >= cfg.patience:
            state.collapsed, state.kind = True, names.KIND_AMP_FLAT
        if state.collapsed:
            state.collapse_epoch = epoch
    return state


def signal_text(kind: str, cfg: CollapseConfig) -> str:
    """Which signal fired, with its thresholds, for console lines and reports."""
    n = f"for {cfg.patience} epochs"
    return {
        names.KIND_RATIO: f"ratio: val_loss above {cfg.ratio:g}x its best {n}",
        names.KIND_FLAT: f"flat: the output constant (complex std/mean < {cfg.flat_std:g}) {n}",
        names.KIND_AMP_FLAT: "amp_flat: the amplitude constant (IQR/median < "
                             f"{cfg.amp_flat_spread:g})"
                             f" with val_loss >= {cfg.amp_flat_ratio:g}x its best {n}",
    }.get(kind, f"{kind}: not a collapse kind")


def ratio_of(state: CollapseState, val_loss: float) -> float:
    return val_loss / state.best_val_loss if state.best_val_loss > 0 else 1.0
