"""The tuning service end to end on real Ray and real Optuna (one session Ray, CPU only)."""

from __future__ import annotations

import json

import optuna
import pytest
from ray import tune

from ptycho_model import names
from tune_ptycho.cli import main
from tune_ptycho.storage.experiment import ExperimentInfo
from tune_ptycho.storage.study import load_study

from conftest import TINY_ARGS
from rows import trial_rows


@pytest.mark.slow
def test_tiny_experiment_end_to_end(tiny_experiment):
    exp = tiny_experiment
    for f in ("spec.json", "dataset.json", "study.json", "optuna.db"):
        assert (exp / f).exists(), f
    results = trial_rows(exp)
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
    for rows in trial_rows(tiny_experiment).values():
        best = min(rows, key=lambda r: r[names.VAL_LOSS])
        assert best[names.EPOCH] == rows[-1][names.BEST_EPOCH]


@pytest.mark.parametrize("epochs, grace", [(14, 10), (20, 10), (10, 10), (8, 6), (5, 4),
                                           (3, 2)])
def test_the_cpu_presets_grace_keeps_its_share_of_a_shorter_run(epochs, grace):
    """Its first rung at 10 of 14 epochs comes after the cliff arms' warmup; a shorter run keeps
    that share (at least the default formula), a user's grace is taken as given."""
    from tune_ptycho.spec import build_spec

    assert build_spec(flags={"preset": "cpu", "train/max_epochs": epochs}).grace_period == grace
    given = build_spec(flags={"preset": "cpu", "train/max_epochs": 8,
                              "scheduler/grace_period": 3})
    assert given.grace_period == 3
    assert build_spec(flags={"preset": "tiny", "train/max_epochs": 8}).grace_period == 2


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--set", "optim/lrr=1"], "optim/lrr"),
        (["--set", "optim/lr=-0.1"], "optim/lr=-0.1"),
        (["--set", "optim/name=adamax"], "adamax"),
        (["--space", "everything"], "unknown search/space='everything'"),
        (["--preset", "huge"], "unknown preset='huge'"),
        (["--grace-period", "9"], "scheduler/grace_period=9"),
        (["--reduction-factor", "1"], "scheduler/reduction_factor=1"),
        (["--set", "scheduler/name=hyperbnd"], "scheduler/name='hyperbnd' is not a scheduler "
                                               "(did you mean 'hyperband'?)"),
        (["--scheduler", "hyperband", "--no-asha"], "contradicts --scheduler hyperband"),
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


@pytest.mark.slow
def test_checkpoint_every_k_epochs_keeps_the_best_weights(ray_session, tmp_path, capsys):
    """--checkpoint-every 3, and a scripted collapse from epoch 5 on (its val_loss x10), so the
    best epoch (4) has no checkpoint of its own: checkpoints come at epochs 3, 6 and the collapse
    stop only, and the exported best weights still reproduce epoch 4's val_loss."""
    import torch

    from ptycho_model.config import RunConfig
    from ptycho_model.train import Trainer
    from tune_ptycho.analysis.best import best_checkpoint_dir, best_epoch, load_best_model
    from tune_ptycho.storage.dataset_cache import get_datasets

    code = main(["run", "--preset", "tiny", "--space", "seeds", "--num-samples", "1",
                 "--max-epochs", "12", "--no-asha", "--no-dashboard", "--no-progress",
                 "--checkpoint-every", "3", "--storage", str(tmp_path), "--name", "k3",
                 "--set", "train/eval_every=0", "--set", "faults/allowed=true",
                 "--set", "faults/collapse_at_epoch=5", "--set", "faults/collapse_factor=10"])
    assert code == 0
    exp = tmp_path / "k3"
    (rows,) = trial_rows(exp).values()
    last = rows[-1]
    assert last[names.COLLAPSED] and last[names.EPOCH] < 12, last  # stopped by the collapse rule
    assert [r[names.EPOCH] for r in rows] == list(range(1, last[names.EPOCH] + 1))
    with_ckpt = [r[names.EPOCH] for r in rows if r.get("checkpoint_dir_name")]
    assert with_ckpt == sorted({3, 6, last[names.EPOCH]} & set(range(1, last[names.EPOCH] + 1)))
    assert last[names.BEST_EPOCH] == 4

    model, cfg, t, ckpt, epoch = load_best_model(exp)
    assert ckpt == best_checkpoint_dir(t) and ckpt.name == last["checkpoint_dir_name"]
    assert epoch == best_epoch(torch.load(ckpt / names.STATE_FILE, weights_only=True)) == 4
    assert main(["best", str(exp), "--export", str(tmp_path / "best.pt")]) == 0
    assert f"best_model in {ckpt}/{names.STATE_FILE}" in capsys.readouterr().out

    cfg = RunConfig.from_dict(json.loads((tmp_path / "best.pt.json").read_text()))
    trainer = Trainer(cfg, get_datasets(cfg.data, None)[0])
    trainer.model.load_state_dict(torch.load(tmp_path / "best.pt", weights_only=True))
    val_loss, _ = trainer._validate()
    assert val_loss == pytest.approx(rows[3][names.VAL_LOSS], rel=1e-5)  # epoch 4's weights


def test_a_spec_written_before_the_scheduler_section_still_loads(tiny_experiment, tmp_path):
    """``asha: {enabled, ...}`` (every older spec.json) is the ``scheduler`` section now, and
    ``asha/...`` paths and ``--no-asha`` still say the same thing."""
    from tune_ptycho.spec import build_spec, lenient_spec

    old = json.loads((tiny_experiment / "spec.json").read_text())
    old["asha"] = {"enabled": True, "grace_period": 2, "reduction_factor": 4, "brackets": 1}
    del old["scheduler"]
    spec = build_spec(old, recorded=True)
    assert (spec.scheduler.name, spec.scheduler.grace_period,
            spec.scheduler.reduction_factor) == ("asha", 2, 4)
    old["asha"]["enabled"] = False
    assert lenient_spec(old).scheduler.name == "none"
    assert build_spec(sets={"asha/enabled": False}).scheduler.name == "none"
    assert build_spec(sets={"asha/reduction_factor": 5}).scheduler.reduction_factor == 5
    with pytest.raises(ValueError, match="both an 'asha' section"):
        build_spec({**old, "scheduler": {"name": "hyperband"}})
