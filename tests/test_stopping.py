"""Early stopping through real Tune: the flat rule on a trial that really goes flat, the ratio
rule on a scripted learns-then-collapses curve, and divergence — each marked in results and
study."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from ptycho_model import names
from tune_ptycho.cli import main
from tune_ptycho.storage.experiment import ExperimentInfo
from tune_ptycho.storage.study import load_study

from rows import trial_rows

BASE = ["--preset", "tiny", "--space", "seeds", "--no-asha", "--no-dashboard", "--no-progress",
        "--set", "train/eval_every=0"]


def study_of(exp: Path) -> optuna.Study:
    info = ExperimentInfo.load(str(exp))
    return load_study(info.study_url, info.name)


@pytest.mark.slow
def test_high_lr_goes_flat_and_the_flat_rule_stops_it(ray_session, tmp_path):
    """lr 0.1 (docs/calibration.md: lr >= 3e-2 goes flat) — measured here: flat within 1-3
    epochs."""
    code = main(["run", *BASE, "--num-samples", "2", "--max-epochs", "10", "--storage",
                 str(tmp_path), "--name", "flat", "--set", "optim/lr=0.1",
                 "--set", "model/arch=hybrid", "--collapse-patience", "2"])
    assert code == 0
    rows = trial_rows(tmp_path / "flat")
    flat_trials = 0
    for r in rows.values():
        flat = [row[names.OUTPUT_STD] < 1e-3 for row in r]
        streak_end = next((i for i in range(1, len(flat)) if flat[i] and flat[i - 1]), None)
        if streak_end is None:
            continue
        flat_trials += 1
        last = r[-1]
        assert last[names.EPOCH] == streak_end + 1  # stopped the epoch the streak reached 2
        assert last[names.COLLAPSED] == 1 and last[names.COLLAPSE_KIND] == names.KIND_FLAT
        assert last[names.EPOCH] < 10
    assert flat_trials >= 1
    assert main(["analyze", str(tmp_path / "flat")]) == 0
    report = (tmp_path / "flat" / "report" / "report.md").read_text()
    assert f"flat {flat_trials}," in report
    by_tune_id = {t.user_attrs.get("tune_trial_id"): t for t in study_of(tmp_path / "flat").trials}
    for trial_id, r in rows.items():
        t = by_tune_id[trial_id]
        assert t.state == optuna.trial.TrialState.COMPLETE
        assert t.user_attrs[names.COLLAPSE_KIND] == r[-1][names.COLLAPSE_KIND]


@pytest.mark.slow
def test_ratio_rule_stops_a_learns_then_collapses_curve(ray_session, tmp_path):
    code = main(["run", *BASE, "--num-samples", "1", "--max-epochs", "10", "--storage",
                 str(tmp_path), "--name", "ratio", "--collapse-grace", "1",
                 "--set", "faults/allowed=true", "--set", "faults/collapse_at_epoch=3",
                 "--set", "faults/collapse_factor=8", "--set", "search/collapse_aware=true"])
    assert code == 0
    (r,) = trial_rows(tmp_path / "ratio").values()
    assert [row[names.EPOCH] for row in r] == [1, 2, 3, 4]  # above the ratio at 3 and 4
    assert r[-1][names.COLLAPSE_KIND] == names.KIND_RATIO and r[-1][names.COLLAPSE_RATIO] > 2
    assert names.BEST_CKPT_PREFIX + names.AMP_SSIM in r[-1]  # pre-collapse weights scored
    (t,) = study_of(tmp_path / "ratio").trials
    assert t.user_attrs[names.COLLAPSE_KIND] == names.KIND_RATIO
    assert t.value == pytest.approx(r[-1][names.OBJECTIVE])  # the collapsed value counts
    # the collapse-aware sampler was told: the study trial carries Optuna's constraint, infeasible
    assert list(t.system_attrs["constraints"]) == [1.0]
    assert main(["analyze", str(tmp_path / "ratio")]) == 0
    report = (tmp_path / "ratio" / "report" / "report.md").read_text()
    assert "collapsed 1 (ratio 1, flat 0, flat amplitude 0)" in report


@pytest.mark.slow
def test_no_collapse_stop_flags_the_same_curve_and_trains_on(ray_session, tmp_path):
    code = main(["run", *BASE, "--num-samples", "1", "--max-epochs", "6", "--storage",
                 str(tmp_path), "--name", "onward", "--collapse-grace", "1", "--no-collapse-stop",
                 "--set", "faults/allowed=true", "--set", "faults/collapse_at_epoch=3",
                 "--set", "faults/collapse_factor=8"])
    assert code == 0
    (r,) = trial_rows(tmp_path / "onward").values()
    assert [row[names.EPOCH] for row in r] == [1, 2, 3, 4, 5, 6]  # not stopped at 4
    assert [row[names.COLLAPSED] for row in r] == [0, 0, 0, 1, 1, 1]  # flagged as before
    assert r[-1][names.COLLAPSE_KIND] == names.KIND_RATIO
    assert json.loads((tmp_path / "onward" / "spec.json").read_text())["collapse"]["stop"] is False


@pytest.mark.slow
def test_a_diverged_trial_reports_a_finite_objective_and_the_study_goes_on(ray_session, tmp_path):
    code = main(["run", *BASE, "--num-samples", "1", "--max-epochs", "5", "--storage",
                 str(tmp_path), "--name", "nan", "--set", "faults/allowed=true",
                 "--set", "faults/nan_at_epoch=2"])
    assert code == 0
    (r,) = trial_rows(tmp_path / "nan").values()
    assert len(r) == 2 and r[-1][names.DIVERGED] == 1
    assert r[-1][names.OBJECTIVE] == names.DIVERGED_SENTINEL
    (t,) = study_of(tmp_path / "nan").trials
    assert t.state == optuna.trial.TrialState.COMPLETE and t.value == names.DIVERGED_SENTINEL
    assert t.user_attrs[names.DIVERGED] == 1
    assert main(["analyze", str(tmp_path / "nan")]) == 0
    assert "diverged 1" in (tmp_path / "nan" / "report" / "report.md").read_text()
