"""Experiment trackers through Ray Tune's own logger callbacks, read back with each tracker's
own reader: TensorBoard's event files, MLflow's client, W&B's offline run files."""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import pytest

from ptycho_model import names
from tune_ptycho.cli import main
from tune_ptycho.exits import EXIT_BAD_INPUT

from rows import trial_rows

COLLAPSING = ["--preset", "tiny", "--space", "stage_a", "--num-samples", "1", "--max-epochs", "8",
              "--no-asha", "--no-dashboard", "--no-progress", "--collapse-grace", "1",
              "--set", "train/eval_every=0", "--set", "faults/allowed=true",
              "--set", "faults/collapse_at_epoch=3", "--set", "faults/collapse_factor=8"]


def wandb_history(run_file: Path) -> list[dict]:
    """The history rows of a W&B offline run file (``run-<id>.wandb``).

    The file is a LevelDB-style log: a 7-byte header (``:W&B``, magic, version), then 32 KiB
    blocks of chunks, each with a 7-byte header (masked CRC32C, length, type: 1 full, 2 first,
    3 middle, 4 last) and a serialized ``wandb_internal_pb2.Record``.
    """
    from wandb.proto import wandb_internal_pb2 as pb

    data = run_file.read_bytes()
    assert data[:4] == b":W&B", data[:7]
    block, pos, records, pending = 32768, 7, [], b""
    while pos + 7 <= len(data):
        room = block - pos % block
        if room < 7:  # a block's tail too short for a header is padding
            pos += room
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind == 0 and length == 0:
            continue
        pending += chunk
        if kind in (1, 4):
            records.append(pending)
            pending = b""
    rows = []
    for raw in records:
        rec = pb.Record()
        rec.ParseFromString(raw)
        if rec.WhichOneof("record_type") == "history":
            rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                         for item in rec.history.item})
    return rows



@pytest.mark.slow
def test_tensorboard_mlflow_and_wandb_each_see_the_collapse(ray_session, tmp_path, monkeypatch,
                                                             capsys):
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    exp = tmp_path / "tracked"
    assert main(["run", *COLLAPSING, "--storage", str(tmp_path), "--name", "tracked",
                 "--log-to", "tensorboard,mlflow,wandb"]) == 0
    out = capsys.readouterr().out
    assert f"tensorboard --logdir {exp}" in out
    assert "/tmp/ray/session" not in out and "driver_artifacts" not in out
    ((trial_id, rows),) = trial_rows(exp).items()
    assert [r[names.COLLAPSED] for r in rows] == [0, 0, 0, 1]  # ratio rule stops at epoch 4
    spec = json.loads((exp / "spec.json").read_text())
    assert spec["storage"]["log_to"] == ["tensorboard", "mlflow", "wandb"]
    assert "WANDB_API_KEY" not in (exp / "spec.json").read_text()

    # TensorBoard: the event file in the trial's directory, through TensorBoard's own reader
    (trial_dir,) = exp.glob("trial_*")
    acc = EventAccumulator(str(trial_dir))
    acc.Reload()
    (tag,) = [t for t in acc.Tags()["scalars"] if t.endswith("/" + names.COLLAPSED)]
    assert [e.value for e in acc.Scalars(tag)] == [0, 0, 0, 1]

    # MLflow: one run per trial in the experiment's SQLite store, params and per-epoch metrics
    client = MlflowClient(tracking_uri=f"sqlite:///{exp / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("tracked").experiment_id])
    assert run.data.params["model/arch"] == rows[-1]["config"]["model"]["arch"]
    history = client.get_metric_history(run.info.run_id, names.COLLAPSED)
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == [0, 0, 0, 1]
    assert trial_id in run.data.tags["trial_name"]

    # W&B: the offline run files, in the experiment
    (run_file,) = exp.glob(f"wandb/offline-run-*-{trial_id}/run-{trial_id}.wandb")
    wb = [r for r in wandb_history(run_file) if names.COLLAPSED in r]
    assert [r[names.COLLAPSED] for r in wb] == [0, 0, 0, 1]
    assert [r[names.EPOCH] for r in wb] == [1, 2, 3, 4]


def test_an_unknown_or_unready_tracker_exits_2_naming_it(tmp_path, monkeypatch, capsys):
    base = ["run", "--preset", "tiny", "--storage", str(tmp_path), "--no-dashboard"]
    assert main([*base, "--log-to", "tensorbord"]) == EXIT_BAD_INPUT
    assert "did you mean 'tensorboard'?" in capsys.readouterr().err
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    assert main([*base, "--log-to", "wandb", "--name", "nokey"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "WANDB_MODE=offline" in err and "WANDB_API_KEY" in err
    assert not (tmp_path / "nokey").exists()
    assert main([*base, "--log-to", "mlflow", "--storage", "s3://bucket/runs",
                 "--study-storage", "journal:///tmp/x.log"]) == EXIT_BAD_INPUT
    assert "--mlflow-uri" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if not installed
    assert main([*base, "--log-to", "tensorboard,mlflow", "--name", "nopkg"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "mlflow, whose package is not installed" in err and 'pip install -e ".[trackers]"' in err
