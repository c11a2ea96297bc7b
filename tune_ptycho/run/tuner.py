"""Assembling the Tuner: Optuna search on a persisted study, ASHA on the current val_loss, the
collapse stopper, checkpoint scoring that keeps the best pre-collapse weights, and retries."""

from __future__ import annotations

import warnings
from typing import Any

from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

from ptycho_model import names
from ptycho_model.data import Datasets
from search_spaces import make_sampler
from trainables.ptycho import train_ptycho

from .searcher import ResumableOptunaSearch
from ..spec import ExperimentSpec
from .stoppers import CollapseStopper
from ..storage.study import open_storage
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
                                     sampler=make_sampler(s.seed, s.n_startup_trials),
                                     study_name=study_name, storage=open_storage(study_url),
                                     max_epochs=spec.run.train.max_epochs)


def make_scheduler(spec: ExperimentSpec):
    a = spec.asha
    if not a.enabled:
        return FIFOScheduler()
    return ASHAScheduler(time_attr=names.EPOCH, metric=names.VAL_LOSS, mode=names.MODE,
                         max_t=spec.run.train.max_epochs, grace_period=spec.asha_grace,
                         reduction_factor=a.reduction_factor, brackets=a.brackets)


def run_config(spec: ExperimentSpec, name: str, storage_path: str,
               callbacks: list[tune.Callback] | None = None) -> tune.RunConfig:
    return tune.RunConfig(
        name=name,
        storage_path=storage_path,
        stop=CollapseStopper(on_collapse=spec.run.collapse.stop),
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
        search_alg=make_searcher(spec, study_url, study_name or name),
        scheduler=make_scheduler(spec),
        num_samples=s.num_samples,
        max_concurrent_trials=s.max_concurrent or None,
        trial_dirname_creator=_dirname,
    )
    return tune.Tuner(make_trainable(spec, data), tune_config=tune_config,
                      run_config=run_config(spec, name, storage_path, callbacks))


def _dirname(trial: Any) -> str:
    return f"trial_{trial.trial_id}"
