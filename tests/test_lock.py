"""One driver per experiment: the lock names a live holder, frees a dead one, and works on S3."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, replace

import pytest

from tune_ptycho.storage.fs import exists, read_text, write_text
from tune_ptycho.storage.lock import LOCK_FILE, DriverLock, ExperimentLocked, Holder

from conftest import S3_BUCKET, s3_env

HOLD = """
import sys, time
from tune_ptycho.storage.lock import DriverLock
with DriverLock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(120)
"""


def _holder_elsewhere(lease_until: float) -> Holder:
    return Holder(host="another-node", pid=4242, process_started=None, since="2026-01-01T00:00:00Z",
                  lease_until=lease_until, token="theirs")


def test_a_live_holder_is_named_and_a_killed_one_frees_the_lock_at_once(tmp_path, capsys):
    exp = tmp_path / "exp"
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(exp)], stdout=subprocess.PIPE,
                         text=True)
    try:
        assert p.stdout.readline().strip() == "held"
        holder = json.loads((exp / LOCK_FILE).read_text())
        assert holder["pid"] == p.pid and holder["process_started"] is not None
        with pytest.raises(ExperimentLocked, match=rf"pid {p.pid} on "):
            DriverLock(str(exp)).acquire()
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    assert (exp / LOCK_FILE).exists()  # a SIGKILL leaves the file behind ...
    with DriverLock(str(exp)) as lock:  # ... and the next driver takes it over at once
        assert json.loads((exp / LOCK_FILE).read_text())["pid"] == os.getpid()
        assert lock.holder.pid == os.getpid()
    out = capsys.readouterr().out
    assert f"taking over the lock of pid {p.pid}" in out and f"its pid {p.pid} is gone" in out
    assert not (exp / LOCK_FILE).exists()


def test_a_reused_pid_does_not_hold_the_lock(tmp_path):
    lock = DriverLock(str(tmp_path / "exp"))
    mine = lock._new_holder()
    assert mine.stale() is None  # this very process: alive, same start time
    reused = replace(mine, process_started=mine.process_started - 3600)
    assert "another process" in reused.stale()


def test_another_hosts_lock_holds_until_its_lease_runs_out(tmp_path):
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / LOCK_FILE).write_text(json.dumps(asdict(_holder_elsewhere(time.time() + 60))))
    with pytest.raises(ExperimentLocked, match="pid 4242 on another-node"):
        DriverLock(str(exp)).acquire()
    (exp / LOCK_FILE).write_text(json.dumps(asdict(_holder_elsewhere(time.time() - 1))))
    with DriverLock(str(exp)):
        assert json.loads((exp / LOCK_FILE).read_text())["token"] != "theirs"


def test_the_lock_is_released_on_an_error_and_renewed_while_held(tmp_path):
    exp = tmp_path / "exp"
    with pytest.raises(KeyboardInterrupt):
        with DriverLock(str(exp)):
            raise KeyboardInterrupt  # Ctrl+C in the driver
    assert not exp.exists()  # nothing was written there: no lock, no empty directory left

    lock = DriverLock(str(exp), lease_s=0.6)
    with lock:
        (exp / "spec.json").write_text("{}")
        first = json.loads((exp / LOCK_FILE).read_text())["lease_until"]
        time.sleep(0.8)
        assert json.loads((exp / LOCK_FILE).read_text())["lease_until"] > first
    assert not (exp / LOCK_FILE).exists() and (exp / "spec.json").exists()


def test_the_lock_on_s3_is_a_lease_object(s3_endpoint, monkeypatch):
    for k, v in s3_env(s3_endpoint).items():
        monkeypatch.setenv(k, v)
    uri = f"s3://{S3_BUCKET}/locks/exp"
    with DriverLock(uri):
        assert json.loads(read_text(f"{uri}/{LOCK_FILE}"))["pid"] == os.getpid()
        with pytest.raises(ExperimentLocked, match=rf"pid {os.getpid()}"):
            DriverLock(uri).acquire()  # the same host, a live pid: held
    assert not exists(f"{uri}/{LOCK_FILE}")

    write_text(f"{uri}/{LOCK_FILE}", json.dumps(asdict(_holder_elsewhere(time.time() + 60))))
    with pytest.raises(ExperimentLocked, match="another-node"):
        DriverLock(uri).acquire()
    write_text(f"{uri}/{LOCK_FILE}", json.dumps(asdict(_holder_elsewhere(time.time() - 1))))
    with DriverLock(uri):  # its lease ran out: taken over
        assert json.loads(read_text(f"{uri}/{LOCK_FILE}"))["token"] != "theirs"
