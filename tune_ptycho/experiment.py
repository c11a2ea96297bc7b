"""Running, resuming and ranking one experiment.

Directory (DESIGN.md): ``<storage>/<name>/`` holds Ray Tune's own layout plus ``spec.json``,
``dataset.json`` (the data fingerprint and checksums), ``optuna.db`` (unless ``--study-storage``),
and after ``analyze`` a ``report/`` folder. Local paths, shared filesystems and ``s3://`` go
through pyarrow's filesystems.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from ptycho_model import names

from .spec import ExperimentSpec, build_spec, is_remote
from .study import fail_orphans, load_study, storage_url

SPEC_FILE = "spec.json"
DATASET_FILE = "dataset.json"
STUDY_META = "study.json"


class ExperimentExists(ValueError):
    pass


class StorageError(ValueError):
    """Results could not be written there: refused before any trial runs."""


def experiment_uri(storage_path: str, name: str) -> str:
    if is_remote(storage_path):
        return storage_path.rstrip("/") + "/" + name
    return str((Path(storage_path).expanduser().resolve() / name))


def _fs(uri: str) -> tuple[pafs.FileSystem, str]:
    if is_remote(uri):
        return pafs.FileSystem.from_uri(uri)
    return pafs.LocalFileSystem(), uri


def write_text(uri: str, text: str) -> None:
    fs, path = _fs(uri)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path) as f:
        f.write(text.encode())


def read_bytes(uri: str) -> bytes:
    fs, path = _fs(uri)
    with fs.open_input_stream(path) as f:
        return f.read()


def read_text(uri: str) -> str:
    return read_bytes(uri).decode()


def newest_entry(uri: str, prefix: str, suffix: str = "") -> str | None:
    """The URI of the newest ``prefix*suffix`` entry directly in ``uri`` (Tune stamps its
    snapshots with their time and numbers checkpoints with zero padding, so the newest sorts
    last), or None."""
    fs, path = _fs(uri)
    try:
        infos = fs.get_file_info(pafs.FileSelector(path))
    except OSError:
        return None
    found = sorted(i.base_name for i in infos
                   if i.base_name.startswith(prefix) and i.base_name.endswith(suffix))
    return f"{uri.rstrip('/')}/{found[-1]}" if found else None


def exists(uri: str) -> bool:
    fs, path = _fs(uri)
    try:
        return fs.get_file_info(path).type != pafs.FileType.NotFound
    except OSError:  # e.g. a parent that is a regular file: nothing can exist below it
        return False


def check_writable(storage_path: str) -> None:
    """Fail before any trial if results could not be written (a path under a file, no rights)."""
    probe = storage_path.rstrip("/") + "/.tune-ptycho-write-check"
    try:
        write_text(probe, "ok")
        fs, path = _fs(probe)
        fs.delete_file(path)
    except OSError as e:  # pyarrow's IO errors are OSErrors too
        raise StorageError(f"storage/path={storage_path!r} is not writable: {e}") from None


@dataclass(frozen=True)
class ExperimentInfo:
    uri: str
    name: str
    storage_path: str
    spec: ExperimentSpec
    study_url: str

    @classmethod
    def load(cls, uri: str) -> ExperimentInfo:
        uri = uri if is_remote(uri) else str(Path(uri).expanduser().resolve())
        if not exists(uri.rstrip("/") + "/" + SPEC_FILE):
            raise ValueError(f"{uri!r} is not a tune-ptycho experiment (no {SPEC_FILE})")
        spec = build_spec(json.loads(read_text(uri.rstrip("/") + "/" + SPEC_FILE)))
        meta = json.loads(read_text(uri.rstrip("/") + "/" + STUDY_META))
        name = uri.rstrip("/").rsplit("/", 1)[-1]
        return cls(uri=uri, name=name, storage_path=uri.rstrip("/").rsplit("/", 1)[0], spec=spec,
                   study_url=meta["url"])


def refuse_existing(spec: ExperimentSpec, name: str) -> str:
    """The experiment's URI, unless one of that name exists (never overwritten)."""
    uri = experiment_uri(spec.storage.path, name)
    if exists(uri + "/" + SPEC_FILE) or exists(uri + "/tuner.pkl"):
        raise ExperimentExists(
            f"experiment {uri!r} already exists; resume it with `tune-ptycho resume {uri}` "
            "or choose another --name")
    return uri


def create_experiment(spec: ExperimentSpec, name: str, data_manifest: dict[str, Any]
                      ) -> ExperimentInfo:
    uri = refuse_existing(spec, name)
    url = storage_url(uri, spec.storage.study_storage)
    write_text(uri + "/" + SPEC_FILE, json.dumps(spec.to_dict(), indent=2) + "\n")
    write_text(uri + "/" + DATASET_FILE, json.dumps(data_manifest, indent=2, default=str) + "\n")
    write_text(uri + "/" + STUDY_META, json.dumps({"url": url, "study_name": name}, indent=2))
    return ExperimentInfo(uri=uri, name=name, storage_path=uri.rsplit("/", 1)[0], spec=spec,
                          study_url=url)


def saved_trial_statuses(uri: str) -> dict[str, str]:
    """Trial id -> status in Tune's latest saved experiment state. After an interrupt (Ctrl+C, or
    the storage guard) the in-memory ResultGrid calls every trial terminated; the saved state
    keeps them RUNNING, which is what ``Tuner.restore`` resumes."""
    snap = newest_entry(uri, "experiment_state-", ".json")
    if snap is None:
        return {}
    data = json.loads(read_text(snap))
    out = {}
    for entry in data.get("trial_data", []):
        t = json.loads(entry[0]) if isinstance(entry, list) else entry
        if isinstance(t, dict) and "trial_id" in t:
            out[t["trial_id"]] = t.get("status", "")
    return out


# ------------------------------------------------------------------ ranking


def rank_key(metrics: dict[str, Any]) -> tuple[float, float]:
    """The best trial has the lowest final objective, ties broken by best_val_loss."""
    def f(x: Any) -> float:
        try:
            v = float(x)
        except (TypeError, ValueError):
            return math.inf
        return v if math.isfinite(v) else math.inf

    return f(metrics.get(names.OBJECTIVE)), f(metrics.get(names.BEST_VAL_LOSS))


def best_result(result_grid) -> Any | None:
    results = [r for r in result_grid if r.metrics]
    if not results:
        return None
    return min(results, key=lambda r: rank_key(r.metrics))


def reconcile_study(info: ExperimentInfo) -> int:
    try:
        study = load_study(info.study_url, info.name)
    except KeyError:
        return 0
    return fail_orphans(study)
