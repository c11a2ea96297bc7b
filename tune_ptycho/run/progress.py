"""Console progress for a running study: a bar over trials and one line per finished trial.

Ray's default output engine ignores custom reporters, so this is a ``tune.Callback``.
"""

from __future__ import annotations

import math
from typing import Any

from ray import tune
from tqdm import tqdm

from ptycho_model import names

from ..analysis.ranking import describe_params
from ..outcomes import OUTCOME_LABELS, classify


class ProgressCallback(tune.Callback):
    def __init__(self, total: int, max_epochs: int, done: int = 0, enabled: bool = True):
        self.total, self.max_epochs, self.done, self.enabled = total, max_epochs, done, enabled
        self.best = math.inf
        self._bar: tqdm | None = None
        self._last: dict[str, dict[str, Any]] = {}
        self._seen: set[str] = set()
        self._flagged: dict[str, int] = {}  # trial -> the epoch its collapse was first flagged

    def _get_bar(self) -> tqdm:
        if self._bar is None:
            # disable=None: a bar on a terminal, only the per-trial lines in a log file
            self._bar = tqdm(total=self.total, initial=self.done, unit="trial", dynamic_ncols=True,
                             disable=None if self.enabled else True)
        return self._bar

    def __getstate__(self) -> dict:  # Tune pickles callbacks with the experiment state
        d = self.__dict__.copy()
        d["_bar"] = None
        return d

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self._last[trial.trial_id] = result
        if result.get(names.COLLAPSED):
            self._flagged.setdefault(trial.trial_id, result.get(names.EPOCH, 0))
        obj = result.get(names.OBJECTIVE)
        if obj is not None and obj < self.best:
            self.best = obj
        bar = self._get_bar()
        running = sum(1 for t in trials if t.status == "RUNNING")
        bar.set_postfix(running=running, best_objective=f"{self.best:.4g}")

    def _finish(self, trial, status: str) -> None:
        if trial.trial_id in self._seen:
            return
        self._seen.add(trial.trial_id)
        bar = self._get_bar()
        r = self._last.get(trial.trial_id, {})
        epoch = r.get(names.EPOCH, 0)
        best = r.get(names.BEST_VAL_LOSS)
        best_s = f"best val_loss {best:.4g}" if best is not None else "no result"
        tqdm.write(f"trial {trial.trial_id}: {status} at epoch {epoch}, {best_s} "
                  f"[{describe_params(trial.config)}]")
        bar.update(1)

    def on_trial_complete(self, iteration, trials, trial, **info):
        r = self._last.get(trial.trial_id, {})
        epoch = r.get(names.EPOCH, 0)
        status = OUTCOME_LABELS[classify(r, self.max_epochs)]
        flagged = self._flagged.get(trial.trial_id)
        if flagged and flagged < epoch:  # collapse/stop=false: it trained on
            status += f", flagged at epoch {flagged}; ended"
        self._finish(trial, status)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._finish(trial, "ERROR")

    def on_experiment_end(self, trials, **info):
        if self._bar is not None:
            self._bar.close()
