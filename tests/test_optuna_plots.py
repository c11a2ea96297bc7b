"""Optuna's own plots draw a finished experiment's study: ``optuna.visualization`` needs plotly,
which the ``trackers`` extra (the one for viewing the study) installs."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import optuna

from tune_ptycho.storage.experiment import ExperimentInfo
from tune_ptycho.storage.study import load_study

ROOT = Path(__file__).resolve().parents[1]


def test_trackers_extra_installs_plotly():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    assert any(re.match(r"plotly\b", req) for req in extras["trackers"]), extras["trackers"]


def test_optuna_plots_draw_the_experiments_study(tiny_experiment):
    assert optuna.visualization.is_available()  # plotly is importable
    info = ExperimentInfo.load(str(tiny_experiment))
    study = load_study(info.study_url, info.study_name)
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    assert done
    fig = optuna.visualization.plot_optimization_history(study)
    points = [tr for tr in fig.data if tr.name == "Objective Value"]
    assert len(points) == 1 and len(points[0].y) == len(done), fig.data
    assert sorted(points[0].y) == sorted(t.value for t in done)
    assert fig.to_json()  # a figure plotly can serialize (what show() / write_html() send)
