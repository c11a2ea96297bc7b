"""The collapse stopper: ends a trial the epoch its trainable raises ``collapsed`` or ``diverged``.

It keeps no memory of its own — the streak counters live in the trainable's checkpointed state —
so the rule behaves the same after ``Tuner.restore`` (Ray does not persist stopper state).
Whatever ASHA thinks, a flagged trial stops at once, unless ``collapse/stop`` is false. What a
flag means is not decided here: :func:`ptycho_model.collapse.should_stop` decides, for this
stopper as for the trainable and ``train``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ray import tune

from ptycho_model import collapse
from ptycho_model.config import CollapseConfig

if TYPE_CHECKING:
    from ..spec import ExperimentSpec


class CollapseStopper(tune.Stopper):
    """``on_collapse=False`` (``collapse/stop=false``): a flagged trial goes on; a diverged one,
    whose weights hold NaN, always stops.

    It holds the one bool only: it is pickled into ``tuner.pkl`` (and HyperBand's scheduler
    holds it as its ``stopped_by_rule``), where every class must be one the resume check
    allows."""

    def __init__(self, on_collapse: bool = True) -> None:
        self.on_collapse = on_collapse

    def __call__(self, trial_id: str, result: dict) -> bool:
        return collapse.should_stop(result, CollapseConfig(stop=self.on_collapse))

    def stop_all(self) -> bool:
        return False


def collapse_stopper(spec: ExperimentSpec) -> CollapseStopper:
    """The study's stopper, which HyperBand's replay asks too (``stopped_by_rule``)."""
    return CollapseStopper(on_collapse=spec.run.collapse.stop)
