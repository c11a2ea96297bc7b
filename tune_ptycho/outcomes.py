"""How a trial ended, from its last reported row: one vocabulary for the console, the report and
the study's user attributes (so optuna-dashboard shows what ``analyze`` counts)."""

from __future__ import annotations

import math
from typing import Any

from ptycho_model import names

from .storage.tune_files import row_epoch

# Outcomes, in the order the report counts them.
FINISHED = "finished"  # reached train/max_epochs without collapse or divergence
STOPPED_EARLY = "stopped_early"  # ASHA stopped it before max_epochs, no collapse
COLLAPSED_RATIO = "collapsed_" + names.KIND_RATIO
COLLAPSED_FLAT = "collapsed_" + names.KIND_FLAT
COLLAPSED_AMP_FLAT = "collapsed_" + names.KIND_AMP_FLAT
DIVERGED = "diverged"
ERROR = "error"  # errored past max_failures, or left no result
UNFINISHED = "unfinished"  # still pending / running (an interrupted experiment)
OUTCOME_LABELS = {
    FINISHED: "finished", STOPPED_EARLY: "stopped early (scheduler)",
    # the signal that fired (ptycho_model.collapse.signal_text says it with the thresholds)
    COLLAPSED_RATIO: "collapsed (ratio: val_loss up)",
    COLLAPSED_FLAT: "collapsed (flat: constant output)",
    COLLAPSED_AMP_FLAT: "collapsed (amp_flat: constant amplitude, val_loss up)",
    DIVERGED: "diverged", ERROR: "error / no result", UNFINISHED: "unfinished",
}
OUTCOMES = tuple(OUTCOME_LABELS)  # in the order the report lists them
# one outcome per collapse kind, in names.COLLAPSE_KINDS order (kind "none" is no collapse)
COLLAPSED_BY_KIND = {names.KIND_RATIO: COLLAPSED_RATIO, names.KIND_FLAT: COLLAPSED_FLAT,
                     names.KIND_AMP_FLAT: COLLAPSED_AMP_FLAT}
COLLAPSED = tuple(COLLAPSED_BY_KIND.values())
LIVE = ("PENDING", "RUNNING", "PAUSED")  # Tune statuses of a trial not yet ended


def num(x: Any, default: float = math.nan) -> float:
    """``x`` as a float (bools too), ``default`` when it is not a number."""
    if isinstance(x, bool):
        return float(x)
    try:
        v = float(x)
    except (TypeError, ValueError):
        return default
    return v


def classify(last: dict[str, Any] | None, max_epochs: int, status: str = "TERMINATED") -> str:
    """The outcome of a trial whose last row is ``last`` (None: it never reported) and whose Tune
    status is ``status``."""
    if status == "ERROR":
        return ERROR
    if not last:
        return UNFINISHED if status in LIVE else ERROR
    if num(last.get(names.DIVERGED), 0.0) > 0:
        return DIVERGED
    if num(last.get(names.COLLAPSED), 0.0) > 0:
        return COLLAPSED_BY_KIND.get(str(last.get(names.COLLAPSE_KIND)), COLLAPSED_RATIO)
    epoch = num(row_epoch(last), 0.0)
    if epoch >= max_epochs:
        return FINISHED
    if status in LIVE:
        return UNFINISHED
    return STOPPED_EARLY
