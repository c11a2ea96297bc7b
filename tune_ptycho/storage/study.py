"""The persisted Optuna study: where it lives, and keeping it consistent with Tune's results."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import optuna

from ptycho_model.errors import InputError

from .layout import STUDY_FILE

CONNECT_TIMEOUT_S = 10  # a database host that does not answer fails in seconds, never hangs


class StudyStorageUnreachable(InputError):
    """The study database cannot be reached (exit code 2, before Ray starts)."""


def storage_url(experiment_dir: str, study_storage: str) -> str:
    """The study's URL: ``--study-storage`` when given, else SQLite inside a local experiment."""
    if study_storage:
        return study_storage
    return f"sqlite:///{Path(experiment_dir).resolve() / STUDY_FILE}"


# ``study.json`` records where the study is. A study file inside the experiment is recorded
# relative to it (``{"file": "optuna.db", "backend": "sqlite"}``), so that a copied or moved
# experiment (another disk, another machine, back from S3) finds its own study wherever it is;
# a database server or a file outside the experiment keeps its URL (``{"url": ...}``).
_FILE_SCHEMES = {"sqlite": "sqlite:///", "journal": "journal://"}


class BadStudyRecord(InputError):
    """``study.json`` names a study file outside its experiment, or cannot be read."""


def _file_of(url: str) -> tuple[str, Path] | None:
    """(backend, path) of a study kept in a local file, None for a database server."""
    for backend, prefix in _FILE_SCHEMES.items():
        if url.startswith(prefix):
            return backend, Path(url[len(prefix):])
    return None


def study_record(experiment_dir: str, url: str, study_name: str) -> dict[str, str]:
    """What ``study.json`` holds for the study at ``url`` (see above)."""
    found = _file_of(url)
    if found is not None and "://" not in experiment_dir:
        backend, path = found
        try:
            rel = path.resolve().relative_to(Path(experiment_dir).resolve())
        except ValueError:
            rel = None
        if rel is not None:
            return {"backend": backend, "file": rel.as_posix(), "study_name": study_name}
    return {"url": url, "study_name": study_name}


def url_from_record(experiment_dir: str, record: dict) -> str:
    """The study's URL for the experiment now at ``experiment_dir`` from its ``study.json``.

    A relative ``file`` resolves inside the experiment and never outside it (``..`` and absolute
    paths are refused). An older record holds an absolute ``sqlite:///.../optuna.db`` URL: when
    the experiment holds its own ``optuna.db``, that copy is the study (the recorded path is where
    the experiment was written, which a copy no longer is)."""
    if "file" in record:
        rel = str(record["file"])
        backend = str(record.get("backend", "sqlite"))
        if backend not in _FILE_SCHEMES or not rel or rel.startswith("/") or \
                ".." in Path(rel).parts:
            raise BadStudyRecord(f"study.json: file={rel!r} (backend {backend!r}) is not a "
                                 "study file inside the experiment")
        return f"{_FILE_SCHEMES[backend]}{Path(experiment_dir) / rel}"
    url = str(record.get("url") or "")
    if not url:
        raise BadStudyRecord("study.json names no study (neither 'file' nor 'url')")
    found = _file_of(url)
    if found is not None and found[0] == "sqlite" and found[1].name == STUDY_FILE \
            and "://" not in experiment_dir and (Path(experiment_dir) / STUDY_FILE).is_file():
        return f"sqlite:///{Path(experiment_dir).resolve() / STUDY_FILE}"
    return url


def open_storage(url: str, in_experiment: bool = False) -> optuna.storages.BaseStorage:
    """An Optuna storage object (OptunaSearch wants an object, not a URL string).

    ``journal:///path/study.log`` selects Optuna's file journal (safe on a shared filesystem);
    anything else is an SQLAlchemy database URL. ``in_experiment``: the study file inside the
    experiment (:class:`ExperimentStudyStorage`).
    """
    if url.startswith("journal://"):
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(url[len("journal://"):]))
    return _rdb_storage(url, ExperimentStudyStorage if in_experiment else
                        optuna.storages.RDBStorage)


_study_now: dict[str, str] = {}


class ExperimentStudyStorage(optuna.storages.RDBStorage):
    """The SQLite study inside an experiment, as the searcher holds it.

    Tune pickles the searcher, this storage with it, into ``tuner.pkl`` and
    ``searcher-state-*.pkl``; pickled, it carries the URL of where the experiment was written,
    and Optuna's ``RDBStorage`` connects on unpickling (creating its tables). In a process
    resuming the experiment (:func:`study_found_at`), it opens the study where the experiment
    is now instead: a copied or moved experiment resumes on its own study, and nothing is
    written where it used to be. (A searcher pickled before this class holds a plain
    ``RDBStorage``: such an experiment resumes where it was written.)"""

    def __setstate__(self, state: dict) -> None:
        if _study_now.get("url"):
            state = {**state, "url": _study_now["url"]}
        super().__setstate__(state)


@contextmanager
def study_found_at(url: str) -> Iterator[None]:
    """While it lasts, an :class:`ExperimentStudyStorage` unpickled in this process opens
    ``url`` (``resume``: the study of the experiment as it is now)."""
    _study_now["url"] = url
    try:
        yield
    finally:
        _study_now.pop("url", None)


def _rdb_storage(url: str, cls: type = optuna.storages.RDBStorage,
                 attempts: int = 4) -> optuna.storages.RDBStorage:
    """Optuna's RDBStorage, which creates its tables on first use. Two drivers that start
    together on a fresh PostgreSQL database race in that creation (``CREATE TYPE`` of an enum:
    a unique violation in ``pg_type``, or a table that now exists); the loser tries again and
    finds the tables there (``tests/test_resume.py`` starts two experiments at once on one
    database)."""
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    for attempt in range(attempts):
        try:
            return cls(database_url(url), engine_kwargs=_engine_kwargs(url))
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


def _inside(path: Path, root: Path) -> bool:
    try:
        return path.resolve().is_relative_to(root.resolve())
    except (OSError, RuntimeError):
        return False


def readonly_study_url(experiment_dir: str | Path, url: str) -> tuple[str | None, str]:
    """(the URL to open read-only, or None; why not) for the study ``study.json`` records, for a
    reader of the experiment at ``experiment_dir`` (``analyze``). Only a study file inside the
    experiment that is there is opened; a database server, or a file elsewhere, is opened only
    when the user names it (a shared experiment's ``study.json`` may name any host or path)."""
    found = _file_of(url)
    if found is None:
        return None, ("study.json names a database server; it was not opened (name it with "
                      "`analyze --study-storage URL` to read the study there)")
    backend, path = found
    if not _inside(path, Path(experiment_dir)):
        return None, ("study.json names a study file outside the experiment; it was not opened "
                      "(name it with `analyze --study-storage URL` to read it)")
    if not path.is_file():
        return None, f"the experiment's study file {path.name!r} is missing"
    return url, ""


def open_study_readonly(url: str, name: str) -> optuna.Study:
    """The study in a local study file, opened without writing: SQLite in read-only mode (no
    table created, no schema check that could migrate), a journal that exists (read only).
    For a server or a file the user named, :func:`load_study` is the way."""
    from urllib.parse import quote

    found = _file_of(url)
    if found is None:
        raise BadStudyRecord(f"{url!r} is not a local study file")
    backend, path = found
    if not path.is_file():
        raise BadStudyRecord(f"study file {str(path)!r} not found")
    if backend == "journal":
        from optuna.storages.journal import JournalFileBackend

        storage: optuna.storages.BaseStorage = optuna.storages.JournalStorage(
            JournalFileBackend(str(path)))
    else:
        ro = f"sqlite:///file:{quote(str(path.resolve()))}?mode=ro&uri=true"
        storage = optuna.storages.RDBStorage(ro, skip_compatibility_check=True,
                                             skip_table_creation=True)
    return optuna.load_study(study_name=name, storage=storage)
