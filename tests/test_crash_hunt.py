"""`tune-ptycho crash-hunt`: P_crash over new seeds, surviving a SIGKILL of its driver."""

from __future__ import annotations

import csv
import json
import shutil

import pytest

from ptycho_model import names
from tune_ptycho.analysis.collapses import wilson
from tune_ptycho.analysis.crash_hunt import load_crash_hunt
from tune_ptycho.cli import main

from procs import cli, kill_session, wait_for
from rows import trial_rows


def test_wilson_interval_matches_the_textbook_values():
    lo, hi = wilson(0, 3)
    assert lo == pytest.approx(0.0, abs=1e-12) and hi == pytest.approx(0.5615, abs=1e-3)
    lo, hi = wilson(1, 3)
    assert lo == pytest.approx(0.0615, abs=1e-3) and hi == pytest.approx(0.7923, abs=1e-3)


def test_a_hunt_of_one_seed_is_a_valid_plan(tiny_experiment):
    """One seed per configuration: the seed is offered as a choice (a range low == high was
    refused: 'search.params.train/seed: low=1 must be < high=1')."""
    from tune_ptycho.analysis.load import load_experiment
    from tune_ptycho.run.crash_hunt import hunt_seeds, hunt_spec, pick_trials
    from tune_ptycho.storage.experiment import ExperimentInfo

    parent = ExperimentInfo.load(str(tiny_experiment))
    picked = pick_trials(load_experiment(tiny_experiment, with_study=False), 2)
    seeds = hunt_seeds(parent.spec, 1)
    spec = hunt_spec(parent, [{"params": dict(t.params)} for t in picked], seeds)
    assert spec.search.num_samples == 2
    assert [p["train/seed"] for p in spec.search.points] == seeds * 2


def test_bad_counts_and_an_experiment_with_nothing_to_rerun_are_refused(tiny_experiment,
                                                                        tmp_path, capsys):
    assert main(["crash-hunt", str(tiny_experiment), "--seeds", "0"]) == 2
    assert "--seeds 0" in capsys.readouterr().err
    assert main(["crash-hunt", str(tiny_experiment), "--top", "0"]) == 2
    assert "--top 0" in capsys.readouterr().err
    empty = tmp_path / "empty"
    shutil.copytree(tiny_experiment, empty, ignore=shutil.ignore_patterns("crash_hunt"))
    for f in empty.glob("trial_*/result.json"):
        f.write_text("")
    for d in empty.glob("trial_*/checkpoint_*"):
        shutil.rmtree(d)
    assert main(["crash-hunt", str(empty), "--no-dashboard"]) == 2
    err = capsys.readouterr().err
    assert "no trial reported" in err and "it holds 4" in err


@pytest.mark.slow
def test_a_crash_hunt_survives_a_killed_driver_and_counts_every_seed_once(tiny_experiment,
                                                                           tmp_path, capsys,
                                                                           shared_ray):
    exp = tmp_path / "exp"
    shutil.copytree(tiny_experiment, exp, ignore=shutil.ignore_patterns("crash_hunt", "report"))
    hunt = exp / "crash_hunt"
    env = shared_ray.env()
    p = cli(["crash-hunt", str(exp), "--top", "2", "--seeds", "2", "--no-dashboard",
             "--no-progress"], env)
    try:  # kill once Tune has saved its state and a run has checkpointed
        wait_for(lambda: list(hunt.glob("experiment_state-*.json"))
                 and list(hunt.glob("trial_*/checkpoint_*")), 180, p, "a crash-hunt checkpoint")
    finally:
        kill_session(p.pid)
    p.wait()
    done = sum(1 for r in trial_rows(hunt).values() if r and r[-1][names.EPOCH] == 4)
    assert done < 4, "the driver was killed after every run had ended: nothing was resumed"

    p = cli(["resume", str(hunt), "--no-dashboard"], env)
    out, _ = p.communicate(timeout=300)
    kill_session(p.pid)
    assert p.returncode == 0, out
    assert "crash hunt report" in out

    meta = json.loads((hunt / "crash_hunt.json").read_text())
    assert len(meta["configs"]) == 2 and len(meta["seeds"]) == 2
    runs = trial_rows(hunt)
    seen = []
    for rows in runs.values():
        last = rows[-1]
        assert last[names.EPOCH] == 4 or last[names.COLLAPSED] or last[names.DIVERGED]
        cfg = last["config"]
        seen.append((cfg["train"]["seed"], json.dumps(
            {k: v for k, v in cfg.items() if k != "train"}, sort_keys=True)))
    assert len(seen) == 4 and len(set(seen)) == 4  # each (configuration, seed) exactly once
    assert {s for s, _ in seen} == set(meta["seeds"])

    with open(exp / "report" / "crash_hunt.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 2
    for r in table:
        assert int(r["runs"]) == 2 and int(r["pending"]) == 0
        assert 0 <= float(r["p_crash_low"]) <= float(r["p_crash"]) <= float(r["p_crash_high"]) <= 1
        assert float(r["worst_best_val_loss"]) >= float(r["mean_best_val_loss"]) > 0
    assert [int(r["rank"]) for r in table] == [1, 2]
    assert float(table[0]["robust_objective"]) <= float(table[1]["robust_objective"])
    report = (exp / "report" / "report.md").read_text()
    assert "## Crash hunt" in report and "Robust winner" in report

    capsys.readouterr()
    assert main(["best", str(exp), "--export", str(tmp_path / "robust.pt")]) == 0
    out = capsys.readouterr().out
    winner = load_crash_hunt(exp).winner
    assert "robust winner" in out and winner.best_run.trial_id in out
    exported = json.loads((tmp_path / "robust.pt.json").read_text())
    assert exported["train"]["seed"] == winner.best_run.params["train/seed"]
    assert main(["crash-hunt", str(exp), "--no-dashboard"]) == 2  # one crash hunt per experiment
    assert "resume" in capsys.readouterr().err
