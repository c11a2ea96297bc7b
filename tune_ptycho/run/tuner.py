"""Assembling the Tuner: Optuna search on a persisted study, the trial scheduler
(:data:`.schedulers.TRIAL_SCHEDULERS`: ASHA, HyperBand or none, on the current val_loss), the
collapse stopper, checkpoint scoring that keeps the best pre-collapse weights, and retries."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ray import tune

from ptycho_model import names
from ptycho_model.data import Datasets
from search_spaces import make_sampler
from trainables.ptycho import train_ptycho

from ..spec import ExperimentSpec
from ..storage.layout import TRIAL_DIR_PREFIX
from ..storage.study import open_storage

# experiments made before .ray_schedulers existed pickled these as tune_ptycho.run.tuner.*
from .ray_schedulers import NoEarlyStop, ValLossASHA, ValLossHyperBand  # noqa: F401
from .schedulers import build_trial_scheduler, trial_scheduler
from .searcher import ResumableOptunaSearch
from .stoppers import collapse_stopper
from .trial_logs import KeepLogsOnRetry


def make_trainable(spec: ExperimentSpec, data: Datasets):
    """The trainable with its data in the object store (put there once, not once per trial)
    and its resources; ``Tuner.restore`` must get one built the same way."""
    r = spec.resources
    fn = tune.with_parameters(train_ptycho, base=spec.run.to_dict(), data=data,
                              threads=max(1, int(r.cpus_per_trial)),
                              checkpoint_every=spec.storage.checkpoint_every)
    return tune.with_resources(fn, {"cpu": r.cpus_per_trial, "gpu": r.gpus_per_trial})


def make_searcher(spec: ExperimentSpec, study_url: str, study_name: str) -> ResumableOptunaSearch:
    s = spec.search
    # Never more arms than trials (offered_arms caps them): a leftover would sit WAITING in the
    # study forever.
    points = list(spec.offered_arms.values())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna's ExperimentalWarning for multivariate/group
        return ResumableOptunaSearch(space=spec.space, metric=names.OBJECTIVE, mode=names.MODE,
                                     points_to_evaluate=points or None,
                                     sampler=make_sampler(s.seed, s.n_startup_trials,
                                                          s.collapse_aware),
                                     study_name=study_name,
                                     storage=open_storage(study_url, in_experiment=not
                                                          spec.storage.study_storage),
                                     max_epochs=spec.run.train.max_epochs)


def make_scheduler(spec: ExperimentSpec):
    """The study's trial scheduler, built by its registry entry."""
    return build_trial_scheduler(spec)


def max_concurrent_trials(spec: ExperimentSpec) -> int | None:
    """``search/max_concurrent``, except under HyperBand: a bracket needs all its members at
    once, most of them paused at a rung, and Tune's limit counts paused trials too, so a limit
    below the bracket size would decide each rung on the first few trials. Under HyperBand the
    resources alone bound how many trials run at a time (any scheduler whose entry needs
    ``whole_brackets``)."""
    if trial_scheduler(spec.scheduler.name).whole_brackets:
        return None
    return spec.search.max_concurrent or None


@contextmanager
def pending_trials(spec: ExperimentSpec) -> Iterator[None]:
    """Under HyperBand there is no concurrency limit (:func:`max_concurrent_trials`), and Tune
    then keeps one trial pending at a time: trials would start one after another, each waiting
    for the one before it to get its actor. ``search/max_concurrent`` trials may wait to start
    instead (Tune reads the variable when the run starts; it is put back after)."""
    key = "TUNE_MAX_PENDING_TRIALS_PG"
    if not trial_scheduler(spec.scheduler.name).whole_brackets or key in os.environ:
        yield
        return
    os.environ[key] = str(spec.search.max_concurrent or 16)
    try:
        yield
    finally:
        os.environ.pop(key, None)


def run_config(spec: ExperimentSpec, name: str, storage_path: str,
               callbacks: list[tune.Callback] | None = None) -> tune.RunConfig:
    return tune.RunConfig(
        name=name,
        storage_path=storage_path,
        stop=collapse_stopper(spec),
        failure_config=tune.FailureConfig(max_failures=spec.resources.max_failures),
        checkpoint_config=tune.CheckpointConfig(
            num_to_keep=spec.storage.keep_checkpoints,
            checkpoint_score_attribute=names.VAL_LOSS, checkpoint_score_order=names.MODE),
        callbacks=[KeepLogsOnRetry(), *(callbacks or [])],
        verbose=0,
    )


def build_tuner(spec: ExperimentSpec, data: Datasets, name: str, storage_path: str,
                study_url: str, callbacks: list[tune.Callback] | None = None,
                study_name: str | None = None) -> tune.Tuner:
    s = spec.search
    tune_config = tune.TuneConfig(
        # recorded in tuner.pkl: what Ray's own readers rank by when given no metric
        metric=names.OBJECTIVE, mode=names.MODE,
        search_alg=make_searcher(spec, study_url, study_name or name),
        scheduler=make_scheduler(spec),
        num_samples=s.num_samples,
        max_concurrent_trials=max_concurrent_trials(spec),
        trial_dirname_creator=_dirname,
        # str(trial): how trackers name a trial's run (MLflow, W&B), as its directory is named
        trial_name_creator=_dirname,
        # A trial after the first few, or a HyperBand trial unpaused at a rung, takes over a
        # finished trial's worker instead of starting a process (torch and the package imported
        # again: ~8 s on a busy 2-core host; bench/startup.py). The trainable keeps no state
        # between trials: the Trainer seeds every RNG it uses from the trial's config.
        reuse_actors=True,
    )
    return tune.Tuner(make_trainable(spec, data), tune_config=tune_config,
                      run_config=run_config(spec, name, storage_path, callbacks))


def _dirname(trial: Any) -> str:
    return f"{TRIAL_DIR_PREFIX}{trial.trial_id}"
