"""A trial's raw result.json rows, read by the project's one reader, and checks on them after a
fault: which worker reported what."""

from __future__ import annotations

import json
from pathlib import Path

from ptycho_model import names
from tune_ptycho.storage.tune_files import result_rows


def trial_rows(exp: Path) -> dict[str, list[dict]]:
    """Trial id -> every row it reported, raw (a trial dir may exist before its first result)."""
    return {d.name.removeprefix("trial_"): result_rows(d)
            for d in sorted(Path(exp).glob("trial_*"))}


def snapshot_trials(exp: Path) -> list[tuple[dict, dict]]:
    """Each trial's state and run metadata in Tune's newest experiment snapshot (empty while
    there is none, or when it is caught mid-write)."""
    snaps = sorted(Path(exp).glob("experiment_state-*.json"))
    try:
        data = json.loads(snaps[-1].read_text()) if snaps else {}
        return [(json.loads(t), json.loads(m)) for t, m in data.get("trial_data", [])]
    except ValueError:
        return []


def worker_runs(rows: list[dict]) -> list[list[dict]]:
    """A trial's rows split by the worker process that reported them, in order of first report."""
    return [[r for r in rows if r["pid"] == pid] for pid in dict.fromkeys(r["pid"] for r in rows)]


def assert_retries_continue(trial: str, rows: list[dict], last_epoch: int) -> list[list[dict]]:
    """Each worker reported consecutive epochs from the one after its checkpoint; a retry redoes
    at most the one epoch whose checkpoint Tune had not registered when the worker died (so raw
    result.json may hold that epoch twice; analysis keeps the newest); no epoch is lost and the
    trial reached ``last_epoch``. Returns the runs, first worker first."""
    runs = worker_runs(rows)
    before = 0
    for run in runs:
        epochs = [r[names.EPOCH] for r in run]
        start = run[0]["resumed_from_epoch"]
        assert epochs == list(range(start + 1, start + 1 + len(epochs))), (trial, epochs)
        assert before - 1 <= start <= before, (trial, before, epochs)  # none lost, <= 1 redone
        before = epochs[-1]
    assert before == last_epoch, (trial, [r[names.EPOCH] for r in rows])
    return runs
