"""`--scheduler hyperband` stops the same trials at the same epochs: on two runs of one study, and
on a run whose driver is SIGKILLed while trials wait paused at a rung, then resumed.

The study's suggestions do not depend on timing: every trial lies within the random start-up
(``search/n_startup_trials``), drawn from one seeded sampler, and no seed arm is offered. With
max_t 3 and eta 3, Ray's HyperBand makes two brackets: 2 trials that run all 3 epochs, then 3
trials of which the best at epoch 1 goes on to epoch 3 and the other two stop there.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ptycho_model import names
from tune_ptycho.cli import main
from tune_ptycho.outcomes import FINISHED, STOPPED_EARLY, classify

from procs import cli, kill_session, wait_for
from rows import snapshot_trials, trial_rows

N_TRIALS, EPOCHS = 5, 3
RUN = ["run", "--preset", "tiny", "--space", "stage_a", "--scheduler", "hyperband",
       "--reduction-factor", "3", "--num-samples", str(N_TRIALS), "--max-epochs", str(EPOCHS),
       "--no-dashboard", "--no-progress", "--set", "search/seed_points=false",
       "--set", f"search/n_startup_trials={N_TRIALS}", "--set", "train/eval_every=0"]
SLOW = ["--set", "faults/allowed=true", "--set", "faults/sleep_s=0.5"]  # time to kill mid-rung


def stops(exp: Path) -> dict[str, tuple[int, str]]:
    """Each trial's configuration -> (last epoch, outcome), newest row of each epoch."""
    out = {}
    for rows in trial_rows(exp).values():
        assert rows, "a trial never reported"
        last = max(rows, key=lambda r: r[names.EPOCH])
        config = {k: v for k, v in last["config"].items() if k != "faults"}
        out[json.dumps(config, sort_keys=True)] = (last[names.EPOCH],
                                                   classify(last, EPOCHS, "TERMINATED"))
    return out


def paused_at_rung_in_snapshot(exp: Path) -> bool:
    """A trial waits paused at the second bracket's rung, undecided, in Tune's snapshot."""
    return any(state.get("status") == "PAUSED"
               and (meta.get("last_result") or {}).get(names.EPOCH, 0) < EPOCHS
               for state, meta in snapshot_trials(exp))


@pytest.mark.slow
def test_hyperband_stops_reproduce_across_runs_and_across_a_kill_and_resume(shared_ray,
                                                                            tmp_path):
    # One plain run; the killed-and-resumed run below, another run of the same study, must
    # reproduce its stops (a second plain run would prove no more than that)
    assert main([*RUN, "--storage", str(tmp_path), "--name", "first"]) == 0
    first = stops(tmp_path / "first")
    assert len(first) == N_TRIALS
    outcomes = sorted(o for _, o in first.values())
    # two brackets: 2 + 1 trials run all epochs, 2 are stopped by HyperBand at its rung (epoch 1)
    assert outcomes == [FINISHED] * 3 + [STOPPED_EARLY] * 2, first
    assert sorted(e for e, _ in first.values()) == [1, 1, EPOCHS, EPOCHS, EPOCHS]

    # The driver is killed while a trial waits paused at the rung (Tune's snapshot says so), and
    # `resume` must rebuild the brackets: no hang, every trial once, the same stops.
    exp = tmp_path / "killed"
    env = shared_ray.env(TUNE_GLOBAL_CHECKPOINT_S="1")
    p = cli([*RUN, *SLOW, "--storage", str(tmp_path), "--name", exp.name], env)
    try:
        wait_for(lambda: paused_at_rung_in_snapshot(exp), 180, p, "a trial paused at the rung")
    finally:
        kill_session(p.pid)
    p.wait()
    p = cli(["resume", str(exp), "--no-dashboard"], env)
    try:
        out, _ = p.communicate(timeout=240)  # a bracket waiting on a finished trial would hang
    finally:
        kill_session(p.pid)
    assert p.returncode == 0, out
    assert stops(exp) == first


def test_hyperband_brackets_start_no_earlier_than_the_grace_period():
    """Ray's brackets at 14 epochs and eta 3 start at epochs 14, 4 and 1; with the cpu preset's
    grace of 10 the later two start at 10, keep their sizes, and halve once before 14."""
    from tune_ptycho.run.hyperband import ReproducibleHyperBand

    def brackets(grace: int, max_t: int = 14) -> list[tuple[int, int, int]]:
        h = ReproducibleHyperBand(time_attr="epoch", metric="val_loss", mode="min", max_t=max_t,
                                  reduction_factor=3, grace_period=grace)
        return [(b._n0, b._r0, b._halves) for b in map(h._create_bracket, range(h._s_max_1))]

    assert brackets(1) == [(3, 14, 0), (5, 4, 1), (9, 1, 2)]  # Ray's own
    assert brackets(10) == [(3, 14, 0), (5, 10, 1), (9, 10, 1)]
    assert brackets(14) == [(3, 14, 0), (5, 14, 0), (9, 14, 0)]  # nothing left to judge early
    assert brackets(1, max_t=3) == [(2, 3, 0), (3, 1, 1)]  # the test study above: unchanged
