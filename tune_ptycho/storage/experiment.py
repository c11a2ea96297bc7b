"""One experiment directory: creating it, loading it, and what Tune saved of its trials.

Directory (docs/design.md, "Experiment directory"): ``<storage>/<name>/`` holds Ray Tune's
own layout plus ``spec.json``, ``dataset.json`` (the data fingerprint and checksums),
``study.json`` (where the Optuna study is), ``optuna.db`` (unless ``--study-storage``), and after
``analyze`` a ``report/`` folder; every file's name is :mod:`.layout`'s, and Tune's own files are
read by :mod:`.tune_files`. Every path goes through :mod:`tune_ptycho.storage.fs`, so local
paths, shared filesystems and ``s3://`` are one code path.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ptycho_model.errors import InputError

from ..spec import ExperimentSpec, build_spec
from .fs import exists, is_remote, read_text, write_text
from .layout import DATASET_FILE, SPEC_FILE, STUDY_META, TUNER_FILE
from .study import fail_orphans, load_study, storage_url, study_record, url_from_record
from .tune_files import trial_states


class NotAnExperiment(InputError):
    """The path is not a readable tune-ptycho experiment directory."""


class ExperimentExists(InputError):
    """An experiment of that name is already there: resume it or choose another name."""


def utc_stamp() -> str:
    """The UTC time of day in default names: ``20261123T110225Z``."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def experiment_uri(storage_path: str, name: str) -> str:
    if is_remote(storage_path):
        return storage_path.rstrip("/") + "/" + name
    return str(Path(storage_path).expanduser().resolve() / name)


@dataclass(frozen=True)
class ExperimentInfo:
    uri: str
    name: str
    storage_path: str
    spec: ExperimentSpec
    study_url: str
    study_name: str = ""  # the Optuna study's name in study_url (default: the experiment's)

    def __post_init__(self) -> None:
        if not self.study_name:
            object.__setattr__(self, "study_name", self.name)

    @classmethod
    def load(cls, uri: str) -> ExperimentInfo:
        uri = uri if is_remote(uri) else str(Path(uri).expanduser().resolve())
        if not exists(uri.rstrip("/") + "/" + SPEC_FILE):
            raise NotAnExperiment(f"{uri!r} is not a tune-ptycho experiment (no {SPEC_FILE})")
        spec = build_spec(json.loads(read_text(uri.rstrip("/") + "/" + SPEC_FILE)), recorded=True)
        name = uri.rstrip("/").rsplit("/", 1)[-1]
        storage_path = uri.rstrip("/").rsplit("/", 1)[0]
        url, study_name = read_study_record(uri)
        # where the experiment is now, not where it was written (a copy, a move, a download);
        # a dataset cache it names is read only when it is this user's own (a shared
        # experiment is data: its cache_entry / dataset_cache may point anywhere)
        from .dataset_cache import own_cache

        spec = replace(spec, storage=replace(spec.storage, path=storage_path, name=name,
                                             dataset_cache=own_cache(spec.storage.dataset_cache)))
        return cls(uri=uri, name=name, storage_path=storage_path, spec=spec,
                   study_url=url, study_name=study_name or name)


def read_study_record(uri: str) -> tuple[str, str]:
    """(study URL, study name) from the experiment's ``study.json``, the URL resolved for where
    the experiment is now (:func:`.study.url_from_record`)."""
    uri = uri.rstrip("/")
    try:
        meta = json.loads(read_text(uri + "/" + STUDY_META))
    except (OSError, ValueError) as e:
        raise NotAnExperiment(f"{uri!r}: cannot read its {STUDY_META} ({e})") from None
    if not isinstance(meta, dict):
        raise NotAnExperiment(f"{uri!r}: its {STUDY_META} is not a JSON object")
    return url_from_record(uri, meta), str(meta.get("study_name") or "")


def refuse_existing(spec: ExperimentSpec, name: str) -> str:
    """The experiment's URI, unless one of that name exists (never overwritten)."""
    uri = experiment_uri(spec.storage.path, name)
    if exists(uri + "/" + SPEC_FILE) or exists(uri + "/" + TUNER_FILE):
        raise ExperimentExists(
            f"experiment {uri!r} already exists; resume it with `tune-ptycho resume {uri}` "
            "or choose another --name")
    return uri


def create_experiment(spec: ExperimentSpec, name: str, data_manifest: dict[str, Any],
                      study_name: str | None = None) -> ExperimentInfo:
    """``study_name``: the Optuna study's name (default ``name``); a follow-up experiment nested
    in another (a crash hunt) takes one that stays unique in a shared database."""
    uri = refuse_existing(spec, name)
    url = storage_url(uri, spec.storage.study_storage)
    study_name = study_name or name
    write_text(uri + "/" + SPEC_FILE, json.dumps(spec.to_dict(), indent=2) + "\n")
    write_text(uri + "/" + DATASET_FILE, json.dumps(data_manifest, indent=2, default=str) + "\n")
    write_text(uri + "/" + STUDY_META,
               json.dumps(study_record(uri, url, study_name), indent=2) + "\n")
    return ExperimentInfo(uri=uri, name=name, storage_path=uri.rsplit("/", 1)[0], spec=spec,
                          study_url=url, study_name=study_name)


def saved_trial_statuses(uri: str) -> dict[str, str]:
    """Trial id -> status in Tune's latest saved experiment state. After an interrupt (Ctrl+C, or
    the storage guard) the in-memory ResultGrid calls every trial terminated; the saved state
    keeps them RUNNING, which is what ``Tuner.restore`` resumes."""
    return {tid: st["status"] or "" for tid, st in trial_states(uri, newest_only=True).items()}


def reconcile_study(info: ExperimentInfo) -> int:
    try:
        study = load_study(info.study_url, info.study_name)
    except KeyError:
        return 0
    return fail_orphans(study)
