"""Faults that must cost nothing but time: bad input, unwritable storage, a corrupted dataset
cache, and a trial worker killed mid-epoch."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest

from ptycho_model.presets import preset_config
from tune_ptycho.cli import main
from tune_ptycho.storage.dataset_cache import MANIFEST, get_datasets
from tune_ptycho.storage.tune_files import result_rows

from procs import cli, kill_session, wait_for
from rows import assert_retries_continue

RUN = ["run", "--preset", "tiny", "--space", "stage_a", "--max-epochs", "4", "--no-dashboard",
       "--no-progress"]


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--set", "optim/lr=0"], "optim/lr=0.0 must be > 0"),
        (["--set", "train/batch_size=big"], "train/batch_size='big' must be an integer"),
        (["--set", "sched/name=warmup_cosine", "--set", "sched/warmup_epochs=6"],
         "sched/warmup_epochs=6 must be < train/max_epochs=4"),
        (["--reduction-factor", "1"], "scheduler/reduction_factor=1 must be >= 2"),
        (["--set", "model/arch=unet"], "unknown model/arch='unet'"),
        (["--set", "optim/name=rmsprop"], "unknown optim/name='rmsprop'"),
        (["--set", "data/N=34"], "data/N=34 is not divisible by 2^(model/blocks-1)=4"),
        (["--set", "data/probe=/nonexistent/probe.npz"], "/nonexistent/probe.npz"),
        (["--gpus-per-trial", "-1"], "resources/gpus_per_trial=-1.0 must be >= 0"),
        (["--gpus-per-trial", "1.5"], "must be a whole number"),
        (["--storage", "s3://bucket/runs"], "--study-storage"),
        (["--study-storage", "postgresql://optuna:hunter2@db/optuna"], "carries a password"),
        (["--study-storage", "not a url"], "storage/study_storage='not a url' is not a database"),
    ],
)
def test_bad_input_exits_2_naming_the_field(extra, needle, tmp_path, capsys):
    assert main([*RUN, "--storage", str(tmp_path), *extra]) == 2
    assert needle in capsys.readouterr().err


def test_a_probe_npz_without_probeguess_is_refused(tmp_path, capsys):
    bad = tmp_path / "probe.npz"
    np.savez(bad, probe=np.ones((32, 32), np.complex64))
    code = main(["train", "--preset", "tiny", "--probe-npz", str(bad), "--out",
                 str(tmp_path / "o")])
    assert code == 2
    err = capsys.readouterr().err
    assert "probeGuess" in err and str(bad) in err


def test_storage_under_a_regular_file_is_refused_before_any_trial(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert main([*RUN, "--storage", str(blocker / "runs"), "--name", "x"]) == 2
    assert "is not writable" in capsys.readouterr().err


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_a_damaged_dataset_cache_file_is_detected_and_rebuilt(tmp_path, damage):
    cfg = preset_config("tiny").data
    logs: list[str] = []
    first, fp, entry = get_datasets(cfg, tmp_path, log=logs.append)
    victim = entry / "train.npz"
    raw = victim.read_bytes()
    victim.write_bytes(raw[: len(raw) // 2] if damage == "truncate" else
                       raw[:1000] + bytes([raw[1000] ^ 0xFF]) + raw[1001:])
    again, fp2, _ = get_datasets(cfg, tmp_path, log=logs.append)
    assert fp2 == fp
    assert any("train.npz" in m and "checksum" in m for m in logs), logs
    np.testing.assert_array_equal(again.train.diffraction, first.train.diffraction)
    files = json.loads((entry / MANIFEST).read_text())["files"]
    assert set(files) >= {"train.npz", "test.npz"}


@pytest.mark.slow
def test_a_trial_worker_killed_mid_epoch_is_retried_from_its_checkpoint(tmp_path, shared_ray):
    """The kill lands while the driver's staged result.json is ahead of the copy in storage (Ray
    syncs every ~10 s, then restores the retried trial's logs *from storage*): no row is lost."""
    ray_tmp = shared_ray.temp_dir
    env = shared_ray.env()
    p = cli(["run", "--preset", "tiny", "--space", "seeds", "--num-samples", "1",
             "--max-epochs", "8", "--no-asha", "--no-dashboard", "--no-progress",
             "--max-failures", "2", "--storage", str(tmp_path), "--name", "w",
             "--set", "train/eval_every=0", "--set", "faults/allowed=true",
             "--set", "faults/sleep_s=1.0"], env)

    def rows(where: Path, pattern: str) -> list[dict]:
        d = next(iter(where.glob(pattern)), None)
        return result_rows(d) if d else []

    staged = lambda: rows(Path(ray_tmp), "**/w/driver_artifacts/trial_*")  # noqa: E731
    stored = lambda: rows(tmp_path / "w", "trial_*")  # noqa: E731
    try:
        wait_for(lambda: len(staged()) >= 3 and len(stored()) < len(staged()), 120, p,
                 "three epochs, not all of them synced to storage yet")
        victim = staged()[-1]["pid"]
        os.kill(victim, signal.SIGKILL)  # the trial's worker process, mid-epoch (it sleeps 1 s)
        out, _ = p.communicate(timeout=240)
    finally:
        kill_session(p.pid)
    assert p.returncode == 0, out
    r = stored()
    # no row of the victim lost; a new worker took over from the last registered checkpoint (the
    # victim's last epoch, or the one before when the kill came between its report and Tune
    # registering that epoch's checkpoint) and went on to the end
    old, new = assert_retries_continue("w", r, last_epoch=8)
    assert ({x["pid"] for x in old} == {victim} and len(old) >= 3
            and new[0]["resumed_from_epoch"] >= 2)
    lines = next((tmp_path / "w").glob("trial_*/progress.csv")).read_text().splitlines()
    assert len(lines) == 1 + len(r)  # header + every reported row, as in result.json


def test_a_study_is_refused_when_its_disk_lacks_the_reserve(tmp_path, capsys):
    small = _tmpfs(tmp_path / "small", "30m")  # the tiny preset's reserve is ~41 MB
    try:
        assert main([*RUN, "--storage", str(small), "--name", "x"]) == 2
        err = capsys.readouterr().err
        assert "MB free; a run needs a reserve" in err and str(small) in err
    finally:
        subprocess.run(["umount", str(small)], check=False)


@pytest.mark.slow
def test_a_disk_that_fills_mid_run_stops_cleanly_and_resume_finishes(tmp_path, shared_ray):
    disk = _tmpfs(tmp_path / "disk", "120m")
    env = shared_ray.env()
    exp = disk / "d"
    args = ["--preset", "tiny", "--space", "seeds", "--num-samples", "2", "--max-epochs", "8",
            "--no-asha", "--no-dashboard", "--no-progress", "--storage", str(disk), "--name", "d",
            "--set", "train/eval_every=0", "--set", "faults/allowed=true",
            "--set", "faults/sleep_s=0.7"]
    try:
        p = cli(["run", *args], env)
        try:
            wait_for(lambda: len(list(exp.glob("trial_*/checkpoint_*"))) >= 2, 120, p,
                     "first checkpoints")
            free = shutil.disk_usage(disk).free
            with open(disk / "filler", "wb") as f:  # another program fills the disk
                f.write(b"\0" * (free - 20 * 1024 * 1024))
            out, _ = p.communicate(timeout=120)
        finally:
            kill_session(p.pid)
        assert p.returncode == 130, out  # a clean, resumable stop — not a crash
        assert "MB free" in out and f"tune-ptycho resume {exp}" in out
        (disk / "filler").unlink()  # space freed
        p = cli(["resume", str(exp), "--no-dashboard"], env)
        try:
            out, _ = p.communicate(timeout=180)
        finally:
            kill_session(p.pid)
        assert p.returncode == 0, out
        for d in exp.glob("trial_*"):
            rows = result_rows(d)
            assert_retries_continue(d.name, rows, last_epoch=8)  # each went on from its checkpoint
        assert len(list(exp.glob("trial_*"))) == 2
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def _tmpfs(where: Path, size: str) -> Path:
    """A small filesystem of our own (root may mount tmpfs here); skip where it cannot."""
    where.mkdir(parents=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                       capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here to emulate a small disk: {r.stderr.strip()}")
    return where


def test_tune_failures_reach_the_console_as_one_line_and_the_file_in_full(tmp_path):
    """What Tune logs while it runs: a traceback becomes one line naming its cause (the whole of
    it goes to driver_error.txt), and Tune's `Tuner.restore(...)` advice is dropped."""
    import logging

    from tune_ptycho.run.driver_errors import DRIVER_ERROR_FILE, tracebacks_to_file

    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(self.format(record))

    ray_logger = logging.getLogger("ray")
    handler = Keep()
    ray_logger.addHandler(handler)
    tune_logger = logging.getLogger("ray.tune.execution.tune_controller")
    try:
        with tracebacks_to_file(str(tmp_path)):
            try:
                raise ConnectionError("connection to server at 127.0.0.1 failed")
            except ConnectionError:
                tune_logger.exception("Trial t1: Error stopping trial.")
            tune_logger.warning("Experiment has been interrupted.\nResume experiment with: "
                                "Tuner.restore(path=...)")
    finally:
        ray_logger.removeHandler(handler)
    assert seen == ["Trial t1: Error stopping trial. (ConnectionError: connection to server at "
                    f"127.0.0.1 failed; traceback in {DRIVER_ERROR_FILE})"]
    text = (tmp_path / DRIVER_ERROR_FILE).read_text()
    assert "Traceback (most recent call last)" in text and "raise ConnectionError" in text
