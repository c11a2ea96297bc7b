"""Resuming an experiment that was copied or moved since it was written.

Tune restores such an experiment's trials where it lies now (``Tuner.restore`` updates their
storage), but two things it restores come from pickles written where it was:

* the searcher's Optuna storage (``tuner.pkl``, ``searcher-state-*.pkl``): the SQLite study
  inside the experiment opens where the experiment is now
  (:class:`tune_ptycho.storage.study.ExperimentStudyStorage`);
* the experiment spec the search generator makes new trials from (``search_gen_state-*.json``):
  a trial the resumed study adds would write to the old place (Ray 2.60). The trial schedulers
  move such a trial, as it is added, to where the experiment is now (:func:`place_new_trial`).

``resume`` runs Tune's restore and the whole resumed run inside :func:`resumed_at`. One driver
process resumes one experiment, so what it holds is one place.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..storage.study import study_found_at

_now: dict[str, str] = {}


@contextmanager
def resumed_at(experiment_uri: str, study_url: str) -> Iterator[None]:
    _now["uri"] = experiment_uri.rstrip("/")
    try:
        with study_found_at(study_url):
            yield
    finally:
        _now.pop("uri", None)


def place_new_trial(trial: Any) -> None:
    """Give a trial added while an experiment resumes the storage of where it is now."""
    uri = _now.get("uri")
    if not uri or trial.storage is None:
        return
    from ray.train._internal.storage import get_fs_and_path

    fs, path = get_fs_and_path(uri)
    parent, _, name = path.rstrip("/").rpartition("/")
    if trial.storage.storage_fs_path == parent and trial.storage.experiment_dir_name == name:
        return
    storage = copy.copy(trial.storage)
    storage.storage_filesystem, storage.storage_fs_path = fs, parent
    storage.experiment_dir_name = name
    trial.set_storage(storage)  # Ray's setter: the paths of its checkpoints move with it
