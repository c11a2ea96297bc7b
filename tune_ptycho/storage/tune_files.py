"""Ray Tune's own files in an experiment, read back: the one reader of each.

A trial's ``result.json`` (:func:`result_rows`; a row's epoch: :func:`row_epoch`; one row per
epoch: :func:`newest_per_epoch`) and the experiment's ``experiment_state-*.json`` snapshots
(:func:`trial_states`). Every other module reads them through these functions, so Tune's names
(``training_iteration``, the snapshot's layout) are spelled here alone, apart from the searcher,
which gets Tune's live results, and the trust check (:mod:`.pickle_scan`), which reads every
snapshot for what it would unpickle. Imports no spec, Ray or Optuna: the schedulers read here too.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ptycho_model import names

from .layout import RESULT_FILE, STATE_PREFIX, STATE_SUFFIX

if TYPE_CHECKING:
    import pyarrow.fs as pafs


def result_rows(trial_dir: str | Path, filesystem: pafs.FileSystem | None = None
                ) -> list[dict[str, Any]]:
    """Every row a trial reported, in order, from its ``result.json`` (one JSON object a line).

    The one reader of that file: a missing file gives no rows, and a line cut short by a killed
    writer is skipped. A retried trial may hold an epoch twice (:func:`newest_per_epoch`).
    ``filesystem``: the pyarrow filesystem ``trial_dir`` is a path on (Tune's storage
    filesystem, e.g. a bucket's); None for a local directory.
    """
    rows: list[dict[str, Any]] = []
    try:
        if filesystem is None:
            text = (Path(trial_dir) / RESULT_FILE).read_text()
        else:
            with filesystem.open_input_stream(f"{trial_dir}/{RESULT_FILE}") as f:
                text = f.read().decode()
    except OSError:
        return rows
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            d = json.loads(line)
        except ValueError:
            continue
        if isinstance(d, dict):
            rows.append(d)
    return rows


def row_epoch(row: dict[str, Any], default: Any = None) -> Any:
    """The epoch a reported row is at: the trainable's ``epoch``, else Tune's own counter
    (``training_iteration``, the same number), else ``default``; as reported (the caller makes
    it a number)."""
    return row.get(names.EPOCH, row.get("training_iteration", default))


def _epoch_of(row: dict[str, Any]) -> float:
    try:
        return float(row_epoch(row))
    except (TypeError, ValueError):
        return math.nan


def newest_per_epoch(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per epoch, the last reported (a retried trial re-reports the epochs after its
    checkpoint), in epoch order."""
    by_epoch: dict[Any, dict[str, Any]] = {}
    for i, r in enumerate(rows):
        key = row_epoch(r, f"row{i}")
        by_epoch.pop(key, None)
        by_epoch[key] = r
    return sorted(by_epoch.values(), key=_epoch_of)


def trial_states(uri: str | Path, newest_only: bool = False) -> dict[str, dict[str, Any]]:
    """Trial id -> ``{"status", "logdir", "start_time"}`` from Tune's newest experiment snapshot
    (``experiment_state-*.json``) in the experiment at ``uri`` (a local path or ``s3://``); empty
    when there is none.

    The one reader of those snapshots. ``newest_only``: read the newest alone, the one
    ``Tuner.restore`` resumes (a half-written one raises); else a snapshot that cannot be read
    (half written) gives way to the one before it.
    """
    from .fs import entries, read_text  # pyarrow: imported when a snapshot is read

    snaps = entries(str(uri), STATE_PREFIX, STATE_SUFFIX)
    if newest_only:
        return _snapshot_trials(read_text(snaps[-1])) if snaps else {}
    for snap in reversed(snaps):
        try:
            return _snapshot_trials(read_text(snap))
        except (OSError, ValueError, TypeError, IndexError, KeyError, AttributeError):
            continue  # a half-written snapshot: try the previous one
    return {}


def _snapshot_trials(text: str) -> dict[str, dict[str, Any]]:
    """The trials of one snapshot's JSON: each entry of its ``trial_data`` is a pair (the trial's
    JSON state, its runtime metadata: each JSON text), or the state alone."""
    out: dict[str, dict[str, Any]] = {}
    for entry in json.loads(text).get("trial_data", []):
        pair = entry if isinstance(entry, list) else [entry]
        state = json.loads(pair[0]) if isinstance(pair[0], str) else pair[0]
        runtime = json.loads(pair[1]) if len(pair) > 1 and isinstance(pair[1], str) else {}
        if isinstance(state, dict) and "trial_id" in state:
            out[str(state["trial_id"])] = {
                "status": state.get("status"), "logdir": state.get("relative_logdir"),
                "start_time": (runtime or {}).get("start_time")}
    return out
