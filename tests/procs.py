"""Starting and ending the Ray processes a test owns: by session id, never `ray stop`.

Standard library only: the benchmarks end their children the same way (``bench/startup.py``
imports this module as ``tests.procs``; bench/_common.py puts the repository on the path)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path


def session_pids(sid: int) -> list[int]:
    """Every live process whose session id is ``sid`` (a driver started with
    start_new_session=True and all the Ray processes it spawned)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[3]) == sid:  # fields after "comm)": state ppid pgrp session ...
            pids.append(int(entry.name))
    return pids


def kill_session(sid: int, sig: int = signal.SIGKILL) -> int:
    """Send ``sig`` to every process of session ``sid`` until none is left (4 s at most);
    returns how many signals were delivered."""
    sent = 0
    for _ in range(20):
        pids = session_pids(sid)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, sig)
                sent += 1
            except ProcessLookupError:
                pass
        time.sleep(0.2)
    return sent


def cli(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    """``tune-ptycho ARGS`` in a new session, so that it and its Ray can be ended together."""
    return subprocess.Popen([sys.executable, "-m", "tune_ptycho.cli", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def wait_for(cond: Callable[[], bool], timeout: float, proc: subprocess.Popen | None = None,
             what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process ended before {what}:\n{proc.stdout.read()}")
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def free_ports(n: int = 1) -> list[int]:
    """``n`` distinct loopback ports free right now (all held open while choosing)."""
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports
