"""The cluster workflow of the README on one host: a Ray head started with `ray start --head`
(dashboard on 127.0.0.1, token authentication ON, as on a real cluster), the study submitted with
`ray job submit -- tune-ptycho run --address auto ...`, and its results found on disk.

Every process the test starts is ended by session id (the head's, and those Ray's job supervisor
detaches into sessions of their own), also when it fails — never with `ray stop`.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tune_ptycho.storage.tune_files import result_rows

from conftest import short_tmp
from procs import free_ports, kill_session, session_pids

BIN = Path(sys.executable).parent  # the environment's `ray` and `tune-ptycho`


def _ppid_and_sid(pid: int) -> tuple[int, int] | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), int(fields[3])


def tree_sessions(root_sid: int) -> set[int]:
    """The session ``root_sid`` plus the sessions of every descendant of its processes (Ray's
    job supervisor starts the entrypoint and a watcher with start_new_session=True)."""
    procs = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (ps := _ppid_and_sid(int(entry.name))):
            procs[int(entry.name)] = ps
    members = {pid for pid, (_, sid) in procs.items() if sid == root_sid}
    sessions = {root_sid}
    grew = True
    while grew:
        grew = False
        for pid, (ppid, sid) in procs.items():
            if ppid in members and pid not in members:
                members.add(pid)
                sessions.add(sid)
                grew = True
    return sessions


def wait_http(url: str, timeout: float, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"`ray start --head` ended early:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError as e:
            if getattr(e, "code", None):  # an HTTP error status: the server is up
                return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {url}")


@pytest.mark.slow
def test_ray_job_submit_runs_a_study_on_a_started_head(tmp_path):
    temp_dir = short_tmp("tpj")  # Ray's socket paths must stay under 107 bytes
    gcs, dash, agent, client = free_ports(4)
    token = secrets.token_hex(32)
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
               RAY_TMPDIR=temp_dir, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token,
               PYTHONUNBUFFERED="1")
    env.pop("RAY_ADDRESS", None)
    storage = tmp_path / "runs"
    head_log = tmp_path / "head.log"
    head = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", f"--port={gcs}",
         "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}", "--include-dashboard=true",
         f"--dashboard-agent-listen-port={agent}", f"--ray-client-server-port={client}",
         "--num-cpus=2", "--num-gpus=0", f"--temp-dir={temp_dir}/ray",
         "--object-store-memory=100000000", "--disable-usage-stats"],
        env=env, stdout=head_log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    api = f"http://127.0.0.1:{dash}"
    try:
        t0 = time.monotonic()
        wait_http(f"{api}/api/version", 120, head, head_log)
        started = time.monotonic() - t0

        # token authentication is on: the job API refuses a client without the token
        anon = dict(env, RAY_AUTH_TOKEN="0" * 64)
        denied = subprocess.run([str(BIN / "ray"), "job", "list", "--address", api], env=anon,
                                capture_output=True, text=True, check=False, timeout=60)
        assert denied.returncode != 0, denied.stdout + denied.stderr

        entrypoint = ("tune-ptycho run --address auto --preset tiny --space seeds "
                      "--num-samples 2 --max-epochs 2 --no-asha --no-progress "
                      f"--storage {storage} --name job --set train/eval_every=0")
        t1 = time.monotonic()
        for _ in range(60):  # the dashboard answers a little before the head's job agent does
            job = subprocess.run(  # without --no-wait: blocks, tails the log, exits 1 on failure
                [str(BIN / "ray"), "job", "submit", "--address", api, "--submission-id",
                 "tp-job", "--", *entrypoint.split()],
                env=env, capture_output=True, text=True, check=False, timeout=300)
            log = job.stdout + job.stderr
            if "No available agent to submit job" not in log:
                break
            time.sleep(1)
        ran = time.monotonic() - t1
        assert job.returncode == 0, log[-6000:]
        assert "succeeded" in log, log[-3000:]
        status = subprocess.run([str(BIN / "ray"), "job", "status", "--address", api, "tp-job"],
                                env=env, capture_output=True, text=True, check=False, timeout=60)
        assert "succeeded" in status.stdout + status.stderr, status.stdout + status.stderr
        # the whole driver log (`submit` may stop tailing before the driver's last lines)
        logs = subprocess.run([str(BIN / "ray"), "job", "logs", "--address", api, "tp-job"],
                              env=env, capture_output=True, text=True, check=False,
                              timeout=60).stdout
    finally:
        for sid in tree_sessions(head.pid):
            kill_session(sid)
        head.wait()
        shutil.rmtree(temp_dir, ignore_errors=True)
    assert not session_pids(head.pid)

    # the experiment, written by the job's driver, where --storage said
    exp = storage / "job"
    assert (exp / "spec.json").is_file() and (exp / "optuna.db").is_file()
    trials = sorted(exp.glob("trial_*"))
    assert len(trials) == 2
    for d in trials:
        rows = result_rows(d)
        assert [r["epoch"] for r in rows] == [1, 2]
    assert f"experiment: {exp}" in logs, logs[-3000:]  # the driver's own last lines
    print(f"head up in {started:.1f}s, job ran in {ran:.1f}s")
