"""The persisted Optuna study: where it lives, and keeping it consistent with Tune's results."""

from __future__ import annotations

from pathlib import Path

import optuna

STUDY_FILE = "optuna.db"


def storage_url(experiment_dir: str, study_storage: str) -> str:
    """The study's URL: ``--study-storage`` when given, else SQLite inside a local experiment."""
    if study_storage:
        return study_storage
    return f"sqlite:///{Path(experiment_dir).resolve() / STUDY_FILE}"


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """An Optuna storage object (OptunaSearch wants an object, not a URL string).

    ``journal:///path/study.log`` selects Optuna's file journal (safe on a shared filesystem);
    anything else is an SQLAlchemy database URL.
    """
    if url.startswith("journal://"):
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(url[len("journal://"):]))
    return optuna.storages.RDBStorage(url)


def load_study(url: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=open_storage(url))


def fail_orphans(study: optuna.Study) -> int:
    """Mark trials still RUNNING as FAIL. Called after a (resumed) experiment finished: any trial
    still running then was asked for by a driver that was killed before Tune recorded it."""
    n = 0
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)
        n += 1
    return n
