"""OptunaSearch that survives a killed driver, and the study repair done before a resume.

Tune snapshots its experiment state every few seconds, while the Optuna study (SQLite or a
database server) is written at once. After a SIGKILL the study can therefore be *ahead* of the
snapshot that ``Tuner.restore`` resumes from:

* a trial that finished after the snapshot is resumed by Tune, and reports again to a study trial
  that is already COMPLETE — stock OptunaSearch raises ``UpdateFinishedTrialError`` and the
  driver dies. :class:`ResumableOptunaSearch` keeps the value the study was first told and
  ignores the late reports;
* a trial asked for after the snapshot never reaches Tune and stays RUNNING in the study:
  :func:`repair_before_resume` marks it FAIL, and if it carried an enqueued seed arm enqueues that
  arm again — so each arm runs exactly once in Tune and is never enqueued twice.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import optuna
from ray.tune.search.optuna import OptunaSearch

from ptycho_model import names

from ..outcomes import classify

logger = logging.getLogger(__name__)

# the result keys a study trial carries as user attributes, and those kept to complete it with
_ATTRS = (names.COLLAPSED, names.COLLAPSE_KIND, names.DIVERGED, names.EPOCH, names.BEST_VAL_LOSS,
          names.BEST_EPOCH)
_KEPT = (names.OBJECTIVE, "training_iteration", *_ATTRS)


def ray_optuna_state(search: OptunaSearch | dict[str, Any]
                     ) -> tuple[dict[str, optuna.Trial], set[str]]:
    """Ray's private bookkeeping in an ``OptunaSearch`` (or in its pickled state, a dict): the
    Tune trial id -> Optuna trial map ``_ot_trials`` and the set ``_completed_trials``.

    Ray offers no public way to ask which study trial a Tune trial is, which a resume needs. This
    is the one place that reads those names; ``tests/test_searcher.py`` fails loudly when a Ray
    release renames them.
    """
    if isinstance(search, dict):
        return search["_ot_trials"], set(search.get("_completed_trials", ()))
    return search._ot_trials, search._completed_trials


class ResumableOptunaSearch(OptunaSearch):
    """``max_epochs``: the trials' epoch budget, to tell a finished trial from one stopped early
    in the ``outcome`` user attribute."""

    def __init__(self, *args: Any, max_epochs: int = 0, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.max_epochs = max_epochs
        self.last_results: dict[str, dict] = {}  # trial id -> its newest result (saved with us)
        self.reported: dict[str, set[int]] = {}  # trial id -> epochs told to the study

    def suggest(self, trial_id: str) -> dict | None:
        config = super().suggest(trial_id)
        ot_trial = ray_optuna_state(self)[0].get(trial_id)
        if config is not None and ot_trial is not None:  # a running trial is findable too
            ot_trial.set_user_attr("tune_trial_id", trial_id)
        return config

    def _finished(self, trial_id: str) -> bool:
        ot_trial = ray_optuna_state(self)[0].get(trial_id)
        if ot_trial is None:
            return False
        finished = ot_trial.study.get_trials(
            deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,
                                    optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL))
        return any(t.number == ot_trial.number for t in finished)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if self._finished(trial_id):
            return
        self.last_results[trial_id] = {k: result[k] for k in _KEPT if k in result}
        self._report(trial_id, result)

    def _report(self, trial_id: str, result: dict | None) -> None:
        """The result's objective as the study trial's intermediate value at its epoch.

        Ray's OptunaSearch reports at ``training_iteration`` and only the results that do not
        stop the trial: Tune hands the one that stops it (the scheduler's rung, the collapse
        rule, the last epoch) to ``on_trial_complete`` alone. Every epoch goes in here, keyed
        as ``result.json`` keys it, so Optuna's curves (``plot_intermediate_values``) show each
        trial whole. An epoch a retried trial reports again is kept as first reported."""
        ot_trial = ray_optuna_state(self)[0].get(trial_id)
        if ot_trial is None or not result:
            return
        try:
            value = float(result[self.metric])
            step = int(result.get(names.EPOCH, result.get("training_iteration")))
        except (KeyError, TypeError, ValueError):
            return
        if not hasattr(self, "reported"):  # a searcher pickled before this attribute existed
            self.reported = {}
        done = self.reported.setdefault(trial_id, set())
        if math.isfinite(value) and step not in done:
            ot_trial.report(value, step)
            done.add(step)

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        ot_trials, completed = ray_optuna_state(self)
        # A trial HyperBand paused at a rung and then stopped, there or at the end of its
        # bracket, completes without a result: Ray's OptunaSearch would tell it PRUNED. It ran
        # as far as its newest result, which is its value, as for a trial ASHA stopped.
        if not result and not error:
            result = getattr(self, "last_results", {}).get(trial_id)
        if self._finished(trial_id):
            completed.add(trial_id)
            return
        if not error:
            self._report(trial_id, result)  # the result that stopped it: its last epoch
        ot_trial = ot_trials.get(trial_id)
        if ot_trial is not None:
            # The study alone then tells a collapsed or diverged trial from a healthy one, and
            # optuna-dashboard shows what `tune-ptycho analyze` counts.
            for key in _ATTRS:
                if result and key in result:
                    ot_trial.set_user_attr(key, result[key])
            ot_trial.set_user_attr("outcome", classify(  # as trials.csv's outcome column
                result or None, self.max_epochs, "ERROR" if error else "TERMINATED"))
            ot_trial.set_user_attr("tune_trial_id", trial_id)
        super().on_trial_complete(trial_id, result, error)


def _known_to_tune(experiment_uri: str, study: optuna.Study) -> set[int] | None:
    """Study trial numbers of the Tune trials in Tune's newest experiment snapshot (the one
    ``Tuner.restore`` resumes), found by the ``tune_trial_id`` user attribute every study trial
    gets when it is asked for. Read from JSON and the study alone: no pickle of the experiment
    is opened (its searcher state holds handles on the study where it was written)."""
    from ..storage.experiment import saved_trial_statuses

    tune_ids = set(saved_trial_statuses(experiment_uri))
    if not tune_ids:
        return None
    return {t.number for t in study.get_trials(deepcopy=False)
            if t.user_attrs.get("tune_trial_id") in tune_ids}


def repair_before_resume(experiment_uri: str, study: optuna.Study) -> tuple[int, int]:
    """Mark RUNNING study trials unknown to Tune's snapshot FAIL; re-enqueue the seed arms they
    carried. Returns (failed, re-enqueued)."""
    known = _known_to_tune(experiment_uri, study)
    if known is None:
        return 0, 0
    failed = requeued = 0
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if t.number in known:
            continue
        fixed = t.system_attrs.get("fixed_params")
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)
        failed += 1
        if fixed:
            study.enqueue_trial(fixed, skip_if_exists=False)
            requeued += 1
    return failed, requeued
