"""The persisted Optuna study: where it lives, and keeping it consistent with Tune's results."""

from __future__ import annotations

import time
from pathlib import Path

import optuna

from ptycho_model.errors import InputError

STUDY_FILE = "optuna.db"
CONNECT_TIMEOUT_S = 10  # a database host that does not answer fails in seconds, never hangs


class StudyStorageUnreachable(InputError):
    """The study database cannot be reached (exit code 2, before Ray starts)."""


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
    return _rdb_storage(url)


def _rdb_storage(url: str, attempts: int = 4) -> optuna.storages.RDBStorage:
    """Optuna's RDBStorage, which creates its tables on first use. Two drivers that start
    together on a fresh PostgreSQL database race in that creation (``CREATE TYPE`` of an enum:
    a unique violation in ``pg_type``, or a table that now exists); the loser tries again and
    finds the tables there (``tests/test_resume.py`` starts two experiments at once on one
    database)."""
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    for attempt in range(attempts):
        try:
            return optuna.storages.RDBStorage(database_url(url),
                                              engine_kwargs=_engine_kwargs(url))
        except (IntegrityError, ProgrammingError) as e:
            if attempt == attempts - 1 or "already exists" not in str(e):
                raise
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def database_url(url: str) -> str:
    """The SQLAlchemy URL with its driver named: a bare ``postgresql://`` means psycopg2, which
    tune-ptycho installs (SQLAlchemy 2.1 would otherwise pick psycopg 3, 2.0 psycopg2)."""
    for bare in ("postgresql://", "postgres://"):
        if url.startswith(bare):
            return "postgresql+psycopg2://" + url[len(bare):]
    return url


def _is_server(url: str) -> bool:
    """Whether ``url`` names a database server (not a file: SQLite, a journal, or none yet)."""
    return bool(url) and not url.startswith(("journal://", "sqlite:"))


def _engine_kwargs(url: str) -> dict:
    if not _is_server(url):
        return {}
    # pool_pre_ping: a connection the server dropped (a restart, a failover) is replaced
    # instead of failing the next query
    kw: dict = {"pool_pre_ping": True}
    if url.startswith(("postgresql", "mysql")):
        kw["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S}
    return kw


def check_reachable(url: str) -> None:
    """Connect once to a database server's study storage, so that a server that is down, a wrong
    host or a missing driver is reported naming them, before Ray and any trial start."""
    if not _is_server(url):
        return
    import sqlalchemy
    from sqlalchemy.engine import make_url

    u = make_url(database_url(url))
    port = u.port or {"postgresql": 5432, "mysql": 3306}.get(u.get_backend_name(), "")
    where = f"{u.host or 'localhost'}:{port}/{u.database or ''}"
    try:
        engine = sqlalchemy.create_engine(u, **_engine_kwargs(url))
    except ModuleNotFoundError as e:
        raise StudyStorageUnreachable(
            f"storage/study_storage={url!r}: its database driver is not installed ({e.name}); "
            "for PostgreSQL: pip install psycopg2-binary") from None
    try:
        with engine.connect():
            pass
    except sqlalchemy.exc.SQLAlchemyError as e:
        reason = str(getattr(e, "orig", None) or e).strip().splitlines()
        raise StudyStorageUnreachable(
            f"storage/study_storage: cannot reach the study database at {where}: "
            f"{reason[0] if reason else type(e).__name__}") from None
    finally:
        engine.dispose()


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
