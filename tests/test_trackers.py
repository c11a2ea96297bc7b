"""Experiment trackers through Ray Tune's own logger callbacks, read back with each tracker's
own reader: TensorBoard's event files, MLflow's client, W&B's offline run files."""

from __future__ import annotations

import json
import re
import struct
import sys
import uuid
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from ptycho_model import names
from tune_ptycho.cli import main
from tune_ptycho.exits import EXIT_BAD_INPUT

from rows import trial_rows

COLLAPSING = ["--preset", "tiny", "--space", "stage_a", "--num-samples", "1", "--max-epochs", "8",
              "--no-asha", "--no-dashboard", "--no-progress", "--collapse-grace", "1",
              "--set", "train/eval_every=0", "--set", "faults/allowed=true",
              "--set", "faults/collapse_at_epoch=3", "--set", "faults/collapse_factor=8",
              "--set", "search/seed_arms=1"]  # a known arm (the default samples a 1-trial study)


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


FAKE_SECRETS = ("WANDB_API_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "PGPASSWORD",
                "MLFLOW_TRACKING_PASSWORD")


def files_holding(root: Path, needles: list[bytes]) -> dict[str, list[str]]:
    """needle -> the regular files under ``root`` whose bytes hold it (sockets and the like
    skipped)."""
    found: dict[str, list[str]] = {}
    for f in root.rglob("*"):
        try:
            if not f.is_file() or f.is_symlink():
                continue
            data = f.read_bytes()
        except OSError:  # gone meanwhile, or unreadable
            continue
        for n in needles:
            if n in data:
                found.setdefault(n.decode(), []).append(str(f))
    return found


@pytest.mark.slow
def test_tensorboard_mlflow_and_wandb_each_see_the_collapse(shared_ray, tmp_path, monkeypatch,
                                                             capfd):
    """Also: with fake credentials in the environment, none lands in the experiment, in what
    ``run`` and ``analyze`` print, or in the session Ray's temp dir (logs included); MLflow's
    artifact root is inside the experiment, not ``./mlruns`` where the driver was started."""
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    fakes = {k: f"fake-{k.lower()}-{uuid.uuid4().hex}" for k in FAKE_SECRETS}
    for k, v in fakes.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("WANDB_MODE", "offline")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    exp = tmp_path / "tracked"
    assert main(["run", *COLLAPSING, "--storage", str(tmp_path), "--name", "tracked",
                 "--log-to", "tensorboard,mlflow,wandb"]) == 0
    out = capfd.readouterr().out
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
    experiment = client.get_experiment_by_name("tracked")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.data.params["model/arch"] == rows[-1]["config"]["model"]["arch"]
    history = client.get_metric_history(run.info.run_id, names.COLLAPSED)
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == [0, 0, 0, 1]
    assert trial_id in run.data.tags["trial_name"]
    # its artifacts inside the experiment, nothing in the driver's working directory
    for uri in (experiment.artifact_location, run.info.artifact_uri):
        assert Path(unquote(urlparse(uri).path)).is_relative_to(exp.resolve()), uri
    assert not (cwd / "mlruns").exists() and list(cwd.iterdir()) == []
    # named after the Tune trial (trial_name_creator), as its directory is
    assert re.fullmatch(r"trial_[0-9a-f]{8}", run.info.run_name), run.info.run_name

    # W&B: the offline run files, in the experiment
    (run_file,) = exp.glob(f"wandb/offline-run-*-{trial_id}/run-{trial_id}.wandb")
    wb = [r for r in wandb_history(run_file) if names.COLLAPSED in r]
    assert [r[names.COLLAPSED] for r in wb] == [0, 0, 0, 1]
    assert [r[names.EPOCH] for r in wb] == [1, 2, 3, 4]

    # no fake secret anywhere: the experiment (after `analyze` too), the output, Ray's temp dir
    assert main(["analyze", str(exp)]) == 0
    printed = capfd.readouterr()
    needles = [v.encode() for v in fakes.values()]
    output = (out + printed.out + printed.err).encode()
    assert [n for n in needles if n in output] == []
    assert files_holding(exp, needles) == {}
    # Tune's own WandbLoggerCallback put WANDB_API_KEY into its actors' runtime_env, which
    # Ray logs to session_*/logs/runtime_env_agent.log
    # (the right directory: the agent logged this session's runtime_envs, the trials' included)
    assert any(f.stat().st_size for f in
               Path(shared_ray.temp_dir).glob("session_*/logs/runtime_env_agent.log"))
    assert files_holding(Path(shared_ray.temp_dir), needles) == {}


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


def test_tracker_hints_name_each_tracker_with_the_command_that_opens_it(tmp_path, monkeypatch):
    from tune_ptycho.run.trackers import tracker_hints

    exp = str(tmp_path / "exp")
    monkeypatch.setenv("WANDB_MODE", "offline")
    lines = tracker_hints(["tensorboard", "mlflow", "wandb"], exp, "",
                          f"sqlite:///{exp}/optuna.db")
    assert len(lines) == 4
    tb, ml, wb, study = lines
    assert tb.endswith(f"tensorboard --logdir {exp}")
    assert f"mlflow ui --backend-store-uri sqlite:///{exp}/mlflow.db" in ml
    assert "pip install mlflow" in ml  # the trackers extra has mlflow-skinny, without the UI
    assert wb.endswith(f"wandb sync {exp}/wandb/offline-run-*")
    assert study.endswith(f"optuna-dashboard sqlite:///{exp}/optuna.db")
    assert tracker_hints([], exp, "", None) == []
    assert tracker_hints(["tensorboard"], exp, "", None) == [tb]

    monkeypatch.delenv("WANDB_MODE")
    ml, wb, study = tracker_hints(["mlflow", "wandb"], exp, "https://mlflow.example:5000",
                                  "journal:///nfs/study.log")
    assert ml == "browse it in MLflow: https://mlflow.example:5000 (experiment exp)"
    assert wb == "see it in W&B: project tune-ptycho, group exp"
    assert study.endswith("optuna-dashboard /nfs/study.log")
    # URLs recorded before secrets were refused are shown redacted
    lines = tracker_hints(["mlflow"], exp, "postgresql://u:pw-in-url@db/mlflow",
                          "postgresql://optuna@db/optuna?password=pw-in-query")
    assert "pw-in-" not in "\n".join(lines) and "u:***@db" in lines[0]
