"""The tuning service end to end on real Ray and real Optuna (one session Ray, CPU only)."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from ray import tune

from ptycho_model import names
from tune_ptycho.cli import main
from tune_ptycho.experiment import ExperimentInfo
from tune_ptycho.study import load_study

from conftest import TINY_ARGS


def trial_results(exp: Path) -> dict[str, list[dict]]:
    out = {}
    for d in sorted(exp.glob("trial_*")):
        lines = (d / "result.json").read_text().splitlines()
        out[d.name] = [json.loads(x) for x in lines if x.strip()]
    return out


@pytest.mark.slow
def test_tiny_experiment_end_to_end(tiny_experiment):
    exp = tiny_experiment
    for f in ("spec.json", "dataset.json", "study.json", "optuna.db"):
        assert (exp / f).exists(), f
    results = trial_results(exp)
    assert len(results) == 4
    for rows in results.values():
        assert rows, "every trial reported"
        assert [r[names.EPOCH] for r in rows] == [r["training_iteration"] for r in rows]
        assert all(r[names.OBJECTIVE] < names.DIVERGED_SENTINEL + 1 for r in rows)
    # the stage_a space's seed arms ran first, as enqueued
    archs = sorted(rows[0]["config"]["model"]["arch"] for rows in results.values())
    assert archs == ["hybrid", "hybrid", "stable_hybrid", "stable_hybrid"]
    # the study agrees with Tune: one COMPLETE trial per Tune trial, none left RUNNING
    info = ExperimentInfo.load(str(exp))
    study = load_study(info.study_url, info.name)
    states = [t.state for t in study.trials]
    assert states.count(optuna.trial.TrialState.COMPLETE) == 4 and len(states) == 4
    # the spec round-trips through --spec
    assert info.spec.search.num_samples == 4 and info.spec.preset == "tiny"
    # Tune can read it back offline
    assert tune.Tuner.can_restore(str(exp))


def test_checkpoints_keep_the_best_val_loss_epoch(tiny_experiment):
    for rows in trial_results(tiny_experiment).values():
        best = min(rows, key=lambda r: r[names.VAL_LOSS])
        assert best[names.EPOCH] == rows[-1][names.BEST_EPOCH]


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--set", "optim/lrr=1"], "optim/lrr"),
        (["--set", "optim/lr=-0.1"], "optim/lr=-0.1"),
        (["--set", "optim/name=adamax"], "adamax"),
        (["--space", "everything"], "unknown search/space='everything'"),
        (["--preset", "huge"], "unknown preset 'huge'"),
        (["--grace-period", "9"], "asha/grace_period=9"),
        (["--reduction-factor", "1"], "asha/reduction_factor=1"),
        (["--set", "bogus/x=1"], "bogus/x"),
    ],
)
def test_bad_specs_exit_2_before_ray(extra, needle, tmp_path, capsys):
    args = ["run", "--preset", "tiny", "--max-epochs", "4", "--space", "stage_a",
            "--storage", str(tmp_path), "--no-dashboard", *extra]
    # a later flag wins, so the bad one goes last
    assert main(args) == 2
    err = capsys.readouterr().err
    assert needle in err
    assert not any(tmp_path.iterdir())  # nothing written, no experiment started


def test_spec_file_round_trip_and_unknown_section(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("serch:\n  num_samples: 3\n")
    assert main(["run", "--spec", str(bad), "--no-dashboard"]) == 2
    assert "did you mean 'search'" in capsys.readouterr().err


def test_gpus_the_cluster_lacks_exit_2(ray_session, tmp_path, capsys):
    code = main(["run", *TINY_ARGS, "--storage", str(tmp_path), "--name", "gpu",
                 "--gpus-per-trial", "1"])
    assert code == 2
    err = capsys.readouterr().err
    assert "1 GPU" in err and "0 GPU" in err
    assert not (tmp_path / "gpu").exists()


def test_existing_name_is_refused_with_the_resume_command(tiny_experiment, capsys):
    code = main(["run", *TINY_ARGS, "--storage", str(tiny_experiment.parent), "--name", "tiny"])
    assert code == 2
    assert f"tune-ptycho resume {tiny_experiment}" in capsys.readouterr().err
