"""An experiment travels: copied or moved, it keeps its study; Ray's and Optuna's own readers open
it with no arguments; Optuna's curves hold every epoch of every trial."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import optuna
import pytest

from ptycho_model import names
from tune_ptycho.analysis import load_experiment
from tune_ptycho.analysis.markdown import param_importance
from tune_ptycho.cli import main
from tune_ptycho.storage.experiment import ExperimentInfo
from tune_ptycho.storage.study import BadStudyRecord, load_study, url_from_record
from tune_ptycho.storage.tune_files import newest_per_epoch, result_rows


def _moved(src: Path, tmp_path: Path) -> tuple[Path, Path]:
    """``src`` copied to an "original" place, that copied on, the original removed."""
    original = tmp_path / "here" / src.name
    shutil.copytree(src, original)
    copy = tmp_path / "there" / src.name
    shutil.copytree(original, copy)
    shutil.rmtree(original)
    return original, copy


def test_study_json_records_the_study_inside_the_experiment(tiny_experiment):
    meta = json.loads((tiny_experiment / "study.json").read_text())
    assert meta == {"backend": "sqlite", "file": "optuna.db", "study_name": "tiny"}
    assert str(tiny_experiment) not in (tiny_experiment / "study.json").read_text()


@pytest.mark.parametrize("legacy", [False, True])
def test_a_copied_experiment_reads_its_own_study(tiny_experiment, tmp_path, capsys, legacy):
    """``legacy``: a study.json of the older form, the absolute URL of where it was written."""
    src = tiny_experiment
    if legacy:
        src = tmp_path / "legacy" / tiny_experiment.name
        shutil.copytree(tiny_experiment, src)
        (src / "study.json").write_text(json.dumps(
            {"url": f"sqlite:///{src.resolve() / 'optuna.db'}", "study_name": src.name}))
    original, copy = _moved(src, tmp_path)
    if legacy:
        shutil.rmtree(src)
    info = ExperimentInfo.load(str(copy))
    assert info.study_url == f"sqlite:///{copy.resolve() / 'optuna.db'}"
    assert info.spec.storage.path == str(copy.parent.resolve())  # where it is now

    exp = load_experiment(copy)
    assert exp.study is not None, exp.study_error
    assert len(exp.study.trials) == 4
    imp = param_importance(exp)
    assert imp.values, imp  # importances present, from the copy's own study

    assert main(["analyze", str(copy)]) == 0
    report = (copy / "report" / "report.md").read_text()
    assert "study not available" not in report
    assert main(["best", str(copy), "--export", str(tmp_path / "best.pt")]) == 0
    assert (tmp_path / "best.pt").is_file()
    assert not original.exists()  # nothing was created where the experiment used to be
    capsys.readouterr()


@pytest.mark.parametrize("record", [{"file": "../other/optuna.db"}, {"file": "/etc/optuna.db"},
                                    {"file": "optuna.db", "backend": "mysql"}, {}])
def test_a_study_record_never_points_outside_its_experiment(tmp_path, record):
    with pytest.raises(BadStudyRecord):
        url_from_record(str(tmp_path), record)


def test_a_server_url_is_kept_as_it_is(tmp_path):
    url = "postgresql://optuna@db.example/optuna"
    assert url_from_record(str(tmp_path), {"url": url}) == url


def test_rays_readers_need_no_metric(tiny_experiment, ray_session):
    """Tune's TuneConfig records the objective and its mode: ``Tuner.restore(...)``'s results
    rank with no arguments. ``ExperimentAnalysis`` takes its default metric only from its own
    arguments (Ray 2.60 reads none from the experiment): the README shows them."""
    from ray import tune
    from ray.tune import ExperimentAnalysis

    from trainables.ptycho import train_ptycho

    best = tune.Tuner.restore(str(tiny_experiment), trainable=train_ptycho).get_results() \
        .get_best_result()
    objectives = {t.trial_id: t.last[names.OBJECTIVE]
                  for t in load_experiment(tiny_experiment, with_study=False).trials}
    assert best.metrics[names.OBJECTIVE] == min(objectives.values())

    ea = ExperimentAnalysis(str(tiny_experiment), default_metric=names.OBJECTIVE,
                            default_mode=names.MODE)
    assert ea.best_config == best.config
    with pytest.raises(ValueError, match="metric"):  # what the README's note is for
        _ = ExperimentAnalysis(str(tiny_experiment)).best_config


@pytest.mark.slow
def test_every_epoch_of_every_trial_reaches_optunas_intermediate_values(ray_session, tmp_path):
    """ASHA stops trials at its rung; the collapse stopper and the last epoch end the others:
    each trial's intermediate values are its result.json rows, the stopping epoch included."""
    code = main(["run", "--preset", "tiny", "--space", "lr_guard", "--num-samples", "6",
                 "--max-epochs", "4", "--grace-period", "1", "--reduction-factor", "2",
                 "--max-concurrent", "2", "--set", "search/seed_arms=0", "--set",
                 "search/n_startup_trials=6", "--no-dashboard", "--no-progress",
                 "--log-to", "none", "--storage", str(tmp_path), "--name", "curves"])
    assert code == 0
    exp = tmp_path / "curves"
    info = ExperimentInfo.load(str(exp))
    study = load_study(info.study_url, info.study_name)
    by_tune = {t.user_attrs["tune_trial_id"]: t for t in study.trials}
    rows = {d.name[len("trial_"):]: newest_per_epoch(result_rows(d))
            for d in exp.glob("trial_*")}
    assert set(by_tune) == set(rows) and len(rows) == 6
    stopped_early = 0
    for tid, trial_rows in rows.items():
        want = {int(r[names.EPOCH]): r[names.OBJECTIVE] for r in trial_rows}
        assert by_tune[tid].intermediate_values == want, tid
        assert by_tune[tid].state == optuna.trial.TrialState.COMPLETE
        stopped_early += max(want) < 4
    assert stopped_early >= 1  # ASHA did stop some: their stopping epoch is there too
    fig = optuna.visualization.matplotlib.plot_intermediate_values(study)
    assert len(fig.get_lines()) == 6  # one curve a trial, as Optuna draws them
