"""A remote (``s3://``, ``gs://``) experiment, fetched for analysis on this machine.

Everything but the checkpoints is copied (results, params, Tune's state, ``spec.json``, the study
metadata, each checkpoint's small ``history.json``), then one checkpoint: the best trial's
newest, whose ``best_model`` holds its best weights. A stage_a study's checkpoints run to tens
of GB (~1 GB each); the report and
``best --export`` need one.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from ptycho_model import names
from ptycho_model.errors import InputError

from ..storage.fs import newest_entry
from ..storage.layout import CHECKPOINT_PREFIX, SPEC_FILE
from .best import best_trial
from .load import NoResults, NotAnExperiment


class UnsafeKey(InputError):
    """A remote experiment holds an object key that would be written outside its local copy."""


def _check_key(uri: str, key: str, rel: str, local: Path) -> None:
    """Refuse a key whose part under the experiment has a ``..`` or ``.`` part, is absolute or
    empty, holds a backslash or NUL, or resolves outside ``local`` (checked before any write)."""
    parts = PurePosixPath(rel).parts
    bad = (not rel or "\\" in rel or "\0" in rel or rel.startswith("/")
           or any(part in ("..", ".") for part in rel.split("/")) or not parts)
    if not bad:
        base = local.resolve()
        bad = not (base / rel).resolve().is_relative_to(base)
    if bad:
        raise UnsafeKey(f"{uri!r}: object key {key!r} is not a plain path inside the experiment "
                        "('..', an absolute part, a backslash or NUL); nothing was downloaded")


def _is_checkpoint_part(rel: str) -> bool:
    return any(part.startswith(CHECKPOINT_PREFIX) for part in rel.split("/"))


@contextmanager
def local_copy(uri: str) -> Iterator[Path]:
    """A temporary local copy of the experiment at ``uri``, removed on exit."""
    import pyarrow.fs as pafs

    try:
        fs, root = pafs.FileSystem.from_uri(uri)
        root = root.rstrip("/")
        found = fs.get_file_info(f"{root}/{SPEC_FILE}").type != pafs.FileType.NotFound
    except (OSError, ValueError) as e:  # pyarrow: an unknown scheme, no such bucket, no network
        raise NotAnExperiment(f"{uri!r} cannot be read: {e}") from None
    if not found:
        raise NotAnExperiment(f"{uri!r} is not a tune-ptycho experiment: no {SPEC_FILE}")
    local_fs = pafs.LocalFileSystem()
    tmp = Path(tempfile.mkdtemp(prefix="tp-analyze-"))
    local = tmp / root.rsplit("/", 1)[-1]
    try:
        infos = fs.get_file_info(pafs.FileSelector(root, recursive=True))
        for info in infos:  # every key first, checkpoints included: nothing written before
            if not info.path.startswith(root + "/"):
                raise UnsafeKey(f"{uri!r}: object key {info.path!r} is not inside the experiment")
            _check_key(uri, info.path, info.path[len(root) + 1:], local)
        for info in infos:
            rel = info.path[len(root) + 1:]
            if info.type != pafs.FileType.File or (
                    _is_checkpoint_part(rel) and not rel.endswith("/" + names.HISTORY_FILE)):
                continue
            (local / rel).parent.mkdir(parents=True, exist_ok=True)
            pafs.copy_files(info.path, str(local / rel), source_filesystem=fs,
                            destination_filesystem=local_fs)
        try:
            trial_dir = best_trial(local)[1]
        except NoResults:
            trial_dir = None
        newest = (newest_entry(f"{uri.rstrip('/')}/{trial_dir.name}", CHECKPOINT_PREFIX)
                  if trial_dir is not None else None)
        if newest is not None:  # its best_model holds the trial's best weights
            name = newest.rsplit("/", 1)[-1]
            (trial_dir / name).mkdir(parents=True, exist_ok=True)
            pafs.copy_files(f"{root}/{trial_dir.name}/{name}", str(trial_dir / name),
                            source_filesystem=fs, destination_filesystem=local_fs)
        yield local
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
