"""The collapse stopper: ends a trial the epoch its trainable raises ``collapsed`` or ``diverged``.

It keeps no memory of its own — the streak counters live in the trainable's checkpointed state —
so the rule behaves the same after ``Tuner.restore`` (Ray does not persist stopper state).
Whatever ASHA thinks, a flagged trial stops at once, unless ``collapse/stop`` is false.
"""

from __future__ import annotations

from ray import tune

from ptycho_model import names


class CollapseStopper(tune.Stopper):
    """``on_collapse=False`` (``collapse/stop=false``): a flagged trial goes on; a diverged one,
    whose weights hold NaN, always stops."""

    def __init__(self, on_collapse: bool = True) -> None:
        self.on_collapse = on_collapse

    def __call__(self, trial_id: str, result: dict) -> bool:
        return ((self.on_collapse and bool(result.get(names.COLLAPSED)))
                or bool(result.get(names.DIVERGED)))

    def stop_all(self) -> bool:
        return False
