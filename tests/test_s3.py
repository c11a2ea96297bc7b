"""An experiment on S3 storage, end to end, against a local S3 endpoint (moto's server speaks the
S3 protocol; pyarrow, Ray's storage layer and the trial workers talk to it as to AWS):
`run` writes everything to the bucket, a driver killed with SIGKILL is resumed from the bucket,
and `analyze` / `best --export` read the experiment back from it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.fs as pafs
import pytest
import torch

from ptycho_model import names
from ptycho_model.config import RunConfig
from ptycho_model.generators import build_generator
from tune_ptycho.analysis import load_experiment
from tune_ptycho.analysis.remote import local_copy

from conftest import S3_BUCKET as BUCKET, s3_env
from procs import cli, kill_session, wait_for

URI = f"s3://{BUCKET}/runs/s3x"
KEY = f"{BUCKET}/runs/s3x"


def _fs(url: str) -> pafs.S3FileSystem:
    return pafs.S3FileSystem(endpoint_override=url, scheme="http", access_key="test",
                             secret_key="test", region="us-east-1")


def _files(fs: pafs.S3FileSystem, key: str) -> list[str]:
    try:
        infos = fs.get_file_info(pafs.FileSelector(key, recursive=True))
    except OSError:
        return []
    return [i.path[len(key) + 1:] for i in infos if i.type == pafs.FileType.File]


def _rows(fs: pafs.S3FileSystem, path: str) -> list[dict]:
    with fs.open_input_stream(path) as f:
        return [json.loads(x) for x in f.read().decode().splitlines() if x.strip()]


@pytest.mark.slow
def test_an_s3_experiment_survives_a_killed_driver_and_is_analysed_from_the_bucket(
        s3_endpoint, tmp_path, monkeypatch, shared_ray):
    fs = _fs(s3_endpoint)
    env = shared_ray.env(**s3_env(s3_endpoint))
    study = tmp_path / "study.log"
    p = cli(["run", "--preset", "tiny", "--space", "stage_a", "--num-samples", "3",
             "--max-epochs", "4", "--no-asha", "--max-concurrent", "2", "--no-dashboard",
             "--no-progress", "--storage", f"s3://{BUCKET}/runs", "--name", "s3x",
             "--study-storage", f"journal://{study}", "--set", "train/eval_every=0",
             "--set", "search/seed_arms=3",  # three known arms, each runs to the end
             "--set", "faults/allowed=true", "--set", "faults/sleep_s=0.7"], env)

    def snapshot_knows_a_checkpoint() -> bool:  # Tune's state in the bucket, not just the files
        states = sorted(f for f in _files(fs, KEY) if f.startswith("experiment_state-"))
        if not states:
            return False
        with fs.open_input_stream(f"{KEY}/{states[-1]}") as f:
            return "checkpoint_0" in f.read().decode()

    try:  # kill once the bucket's snapshot of Tune's state has registered a checkpoint
        wait_for(snapshot_knows_a_checkpoint, 180, p, "a checkpoint in the bucket's Tune state")
    finally:
        kill_session(p.pid)
    p.wait()
    assert {"spec.json", "study.json", "dataset.json", "tuner.pkl"} <= set(_files(fs, KEY))
    assert not Path(URI).exists() and not (Path.cwd() / "s3:").exists()  # nothing local

    p = cli(["resume", URI, "--no-dashboard"], env)
    out, _ = p.communicate(timeout=300)
    kill_session(p.pid)
    assert p.returncode == 0, out
    assert f"best weights: best_model in {URI}/trial_" in out  # named with its scheme

    files = _files(fs, KEY)
    trials = sorted({f.split("/")[0] for f in files if f.startswith("trial_")})
    assert len(trials) == 3, files
    resumed = 0
    for t in trials:
        rows = _rows(fs, f"{KEY}/{t}/result.json")
        assert rows[-1][names.EPOCH] == 4, (t, rows)  # every trial ran to the end
        resumed += any(r["resumed_from_epoch"] > 0 for r in rows)
        assert any(f.startswith(f"{t}/checkpoint_") for f in files)
    assert resumed >= 1  # at least one trial continued from a checkpoint in the bucket

    p = subprocess.run([sys.executable, "-m", "tune_ptycho.cli", "analyze", URI], env=env,
                       cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    report = tmp_path / "s3x-report" / "report.md"
    text = report.read_text()
    assert f"Experiment: `{URI}`" in text and f"tune-ptycho best {URI} --export" in text
    assert "tp-analyze-" not in text  # no temporary local path leaks into the report
    uploaded = set(_files(fs, f"{KEY}/report"))
    assert {"report.md", "trials.csv", "learning_curves.png", "best_reconstruction.png"} <= uploaded

    # analysis fetches every trial's results but one checkpoint
    for k, v in s3_env(s3_endpoint).items():
        monkeypatch.setenv(k, v)
    with local_copy(URI) as local:
        assert len(list(local.glob("trial_*/result.json"))) == 3
        # the best's newest
        assert len(list(local.glob(f"trial_*/checkpoint_*/{names.STATE_FILE}"))) == 1
        # every epoch of every trial once, also those a SIGKILL kept out of result.json
        for t in load_experiment(local).trials:
            assert [r[names.EPOCH] for r in t.rows] == [1, 2, 3, 4], t.trial_id

    weights = tmp_path / "best.pt"
    p = subprocess.run([sys.executable, "-m", "tune_ptycho.cli", "best", URI, "--export",
                        str(weights)], env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"best weights: best_model in {URI}/trial_" in p.stdout
    cfg = RunConfig.from_dict(json.loads(Path(f"{weights}.json").read_text()))
    model = build_generator(cfg.model, N=cfg.data.N)
    model.load_state_dict(torch.load(weights, weights_only=True), strict=True)
