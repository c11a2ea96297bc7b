"""A driver killed with SIGKILL mid-experiment, then `tune-ptycho resume`: nothing lost, on SQLite
and on PostgreSQL."""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import optuna
import pytest

from ptycho_model import names
from tune_ptycho.analysis import load_experiment
from tune_ptycho.cli import main
from tune_ptycho.exits import EXIT_BAD_INPUT
from tune_ptycho.outcomes import FINISHED, STOPPED_EARLY
from tune_ptycho.storage.experiment import ExperimentInfo
from tune_ptycho.storage.lock import LOCK_FILE
from tune_ptycho.storage.study import load_study

from procs import cli, kill_session, wait_for
from rows import snapshot_trials, trial_rows, worker_runs

N_TRIALS = 5
# 0.4 CPU a trial: the drivers of a test share the session's Ray (2 CPUs); the trials mostly sleep.
# search/seed_arms: every trial a seed arm (stage_a has 5; a smaller --num-samples caps it), so
# the repair's re-enqueued arms are checked on every trial (the default offers half).
RUN = ["run", "--preset", "tiny", "--space", "stage_a", "--num-samples", str(N_TRIALS),
       "--max-epochs", "6", "--max-concurrent", "2", "--grace-period", "3", "--cpus-per-trial",
       "0.4", "--set", f"search/seed_arms={N_TRIALS}",
       "--no-dashboard", "--no-progress", "--set", "train/eval_every=0",
       "--set", "faults/allowed=true", "--set", "faults/sleep_s=0.7"]


def checkpoints(exp: Path) -> dict[str, int]:
    return {d.name: len(list(d.glob("checkpoint_*"))) for d in exp.glob("trial_*")}


def snapshot_knows_a_running_checkpoint(exp: Path) -> bool:
    return any(t.get("status") == "RUNNING" and "checkpoint_0" in json.dumps(meta)
               for t, meta in snapshot_trials(exp))


def drive_and_kill(exp: Path, run_args: list[str], env: dict[str, str], kills: int = 2,
                   while_running=None, move_to: Path | None = None) -> str:
    """Start ``run``, SIGKILL its driver once two trials have checkpointed twice, SIGKILL the
    first ``resume`` once it has made progress (``kills=2``), and resume to the end. Calls
    ``while_running()`` while the first driver is alive. ``move_to``: after the first kill the
    experiment is copied there and the original removed; the resumes run on the copy. Returns
    the last driver's output."""
    env = dict(env, TUNE_GLOBAL_CHECKPOINT_S="2")  # Tune's snapshot every 2 s, not 10
    p = cli([*RUN, *run_args, "--storage", str(exp.parent), "--name", exp.name], env)
    try:
        # kill on a condition read from disk: two trials have checkpointed at least twice, and
        # Tune's own snapshot knows a checkpoint of a trial still running (what resume restores)
        wait_for(lambda: sum(n >= 2 for n in checkpoints(exp).values()) >= 2
                 and snapshot_knows_a_running_checkpoint(exp), 180, p,
                 "two trials to checkpoint")
        if while_running is not None:
            while_running(p)
    finally:
        kill_session(p.pid)
    p.wait()
    if move_to is not None:  # an experiment that travels: its study goes with it
        shutil.copytree(exp, move_to)
        shutil.rmtree(exp)
        exp = move_to
    for _ in range(kills - 1):  # a resume, killed again once it has made progress
        before = sum(len(r) for r in trial_rows(exp).values())
        p = cli(["resume", str(exp), "--no-dashboard"], env)
        try:
            wait_for(lambda before=before: sum(len(r) for r in trial_rows(exp).values())
                     > before + 1,
                     180, p, "the resumed run to report")
        finally:
            kill_session(p.pid)
        p.wait()
    p = cli(["resume", str(exp), "--no-dashboard"], env)
    out, _ = p.communicate(timeout=300)
    kill_session(p.pid)
    assert p.returncode == 0, out
    return out


def check_accounting(exp: Path, n_trials: int) -> optuna.Study:
    """Every trial ran exactly once and continued from its checkpoint; the study matches Tune
    one to one, with nothing left RUNNING or WAITING and each seed arm run once."""
    final = trial_rows(exp)
    assert len(final) == n_trials  # every trial exactly once, the total reaches num_samples
    for trial_id, rows in final.items():
        assert rows, f"trial {trial_id} never reported"
        # Each worker that ran the trial went on from the epoch its checkpoint held. (Tune's
        # state snapshot may lag result.json by an epoch, so a resumed worker can re-report the
        # epoch after its checkpoint: analysis keeps the newest row of each epoch.)
        for run in worker_runs(rows):
            epochs = [r[names.EPOCH] for r in run]
            assert epochs[0] == run[0]["resumed_from_epoch"] + 1, (trial_id, epochs)
            assert epochs == list(range(epochs[0], epochs[0] + len(epochs))), (trial_id, epochs)
    analysed = {t.trial_id: [r[names.EPOCH] for r in t.rows] for t in load_experiment(exp).trials}
    assert set(analysed) == set(final)
    for trial_id, epochs in analysed.items():  # one row per epoch, none missing
        assert epochs == list(range(1, len(epochs) + 1)), (trial_id, epochs)
    # trials that had checkpointed before the kill continued from a checkpoint, not epoch 0
    resumed = [t for t, rows in final.items() if any(r["resumed_from_epoch"] > 0 for r in rows)]
    assert resumed, "no trial resumed from a checkpoint"
    for t in resumed:
        first_after = next(r for r in final[t] if r["resumed_from_epoch"] > 0)
        assert first_after[names.EPOCH] == first_after["resumed_from_epoch"] + 1

    info = ExperimentInfo.load(str(exp))
    study = load_study(info.study_url, info.study_name)
    states = [t.state for t in study.trials]
    assert optuna.trial.TrialState.RUNNING not in states
    assert optuna.trial.TrialState.WAITING not in states
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    by_tune = {t.user_attrs["tune_trial_id"]: t for t in complete}
    assert set(by_tune) == set(final)  # each Tune trial matches one study trial
    for trial_id, rows in final.items():
        sampled = {k: v for k, v in _flat(rows[-1]["config"]).items()}
        assert by_tune[trial_id].params == sampled
        assert by_tune[trial_id].user_attrs["outcome"] in (FINISHED, STOPPED_EARLY)
    # the seed arms ran once each (stage_a has 5; RUN's search/seed_arms=5 gives a study of
    # n <= 5 trials n of them)
    arms = sorted(json.dumps(t.params, sort_keys=True) for t in complete)
    assert len(set(arms)) == len(arms) == n_trials
    return study


def _tune_ids(study: optuna.Study) -> set[str]:
    return {t.user_attrs["tune_trial_id"] for t in study.trials if "tune_trial_id" in t.user_attrs}


@pytest.mark.slow
def test_sigkill_then_resume_accounts_for_every_trial_on_sqlite_and_postgres(
        tmp_path, capsys, postgres, shared_ray):
    """Side by side (the machine has the room: the trials mostly sleep): an SQLite experiment
    killed twice and resumed, with a second `resume` tried against its live driver, moved to
    another directory after the first kill (the original removed); and on one
    PostgreSQL database an experiment killed once and resumed while a second experiment runs."""
    envs = {k: shared_ray.env() for k in ("s", "a", "b")}
    first, pg_a = tmp_path / "killed", tmp_path / "a"
    exp = tmp_path / "moved" / first.name
    url = postgres.create_database("optuna")

    def second_driver(p) -> None:  # a second resume while the first driver lives: refused
        assert main(["resume", str(first), "--no-dashboard"]) == EXIT_BAD_INPUT
        err = capsys.readouterr().err
        assert f"is being driven by pid {p.pid} on " in err, err

    b = cli(["run", "--preset", "tiny", "--space", "stage_a", "--num-samples", "2",
             "--max-epochs", "2", "--no-asha", "--max-concurrent", "1", "--cpus-per-trial", "0.4",
             "--no-dashboard",
             "--no-progress", "--set", "train/eval_every=0", "--storage", str(tmp_path),
             "--name", "b", "--study-storage", url], envs["b"])
    try:
        with ThreadPoolExecutor(2) as pool:
            on_sqlite = pool.submit(drive_and_kill, first, [], envs["s"], 2, second_driver,
                                    exp)
            on_pg = pool.submit(drive_and_kill, pg_a, ["--study-storage", url,
                                                       "--num-samples", "4"], envs["a"], 1)
            on_sqlite.result(), on_pg.result()
        out_b, _ = b.communicate(timeout=300)
    finally:
        kill_session(b.pid)
    assert b.returncode == 0, out_b

    check_accounting(exp, N_TRIALS)  # the copy's own study finished the study
    assert not (exp / LOCK_FILE).exists()  # the last driver ended cleanly and let go
    assert ExperimentInfo.load(str(exp)).study_url == f"sqlite:///{exp.resolve() / 'optuna.db'}"
    assert not first.exists()  # nothing was written where the experiment used to be

    study_a = check_accounting(pg_a, 4)  # exactly as with SQLite
    assert ExperimentInfo.load(str(pg_a)).study_url == url
    assert ExperimentInfo.load(str(tmp_path / "b")).study_url == url
    assert set(optuna.get_all_study_names(url)) == {"a", "b"}
    study_b = optuna.load_study(study_name="b", storage=url)
    assert [t.state for t in study_b.trials] == [optuna.trial.TrialState.COMPLETE] * 2
    # neither study holds the other's trials
    assert _tune_ids(study_a) == set(trial_rows(pg_a))
    assert _tune_ids(study_b) == set(trial_rows(tmp_path / "b"))
    assert not _tune_ids(study_a) & _tune_ids(study_b)


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}/{k}" if prefix else k
        out.update(_flat(v, key) if isinstance(v, dict) else {key: v})
    return out
