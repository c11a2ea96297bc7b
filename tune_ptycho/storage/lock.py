"""One driver per experiment: ``driver.lock`` inside the experiment names its holder.

``run`` and ``resume`` take the lock before Ray starts and before the study repair (which would
otherwise mark a live driver's RUNNING trials FAIL). The holder is written as JSON: host, pid, the
process's start time, when it took the lock, and a lease that a background thread renews.

When is a lock stale, so that the next driver takes it over?

* same host: at once when the pid is gone, or belongs to a process started at another time (the
  pid was reused);
* another host (a shared filesystem seen from two machines) and ``s3://``: when the lease has
  run out, i.e. the holder stopped renewing it ``LEASE_S`` seconds ago.

Local and shared filesystems create the file with ``O_CREAT | O_EXCL``, atomic on a local disk and
on NFS v3+. S3 has no create-if-absent through pyarrow, so there the lock is a lease object taken by
read, check, write, read back: two drivers started within the same second can both believe they
won. ``run`` then still refuses the second (its spec.json exists), so the window is a ``resume``
started twice at once, against which the README warns.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ptycho_model.errors import InputError

from .fs import delete, is_remote, read_text, write_text

LOCK_FILE = "driver.lock"
LEASE_S = 60.0


class ExperimentLocked(InputError):
    """Another driver, still alive, holds the experiment."""


@dataclass(frozen=True)
class Holder:
    host: str
    pid: int
    process_started: float | None  # the pid's start time (epoch s); None where /proc is absent
    since: str  # when it took the lock, UTC ISO
    lease_until: float  # epoch s; renewed every LEASE_S / 3
    token: str  # tells this holder from a later one with the same pid

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}, holding it since {self.since}"

    def stale(self, now: float | None = None) -> str | None:
        """Why this holder no longer holds the lock, or None while it does."""
        now = time.time() if now is None else now
        if self.host == socket.gethostname():
            if not pid_alive(self.pid):
                return f"its pid {self.pid} is gone"
            started = process_start_time(self.pid)
            if None not in (started, self.process_started) and \
                    abs(started - self.process_started) > 2.0:
                return f"pid {self.pid} is now another process"
            return None
        if now > self.lease_until:
            return f"its lease ran out {now - self.lease_until:.0f} s ago"
        return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def process_start_time(pid: int) -> float | None:
    """When ``pid`` started (epoch seconds), from /proc; None where there is no /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        btime = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                     if line.startswith("btime "))
    except (OSError, StopIteration, IndexError, ValueError):
        return None
    return btime + int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: starttime in ticks


class DriverLock:
    """``with DriverLock(uri):`` holds the experiment for this process, or raises
    :class:`ExperimentLocked` naming the live holder. Released on any way out of the block
    (a clean end, an exception, Ctrl+C); a SIGKILL leaves a lock that the rules above free."""

    def __init__(self, experiment_uri: str, lease_s: float = LEASE_S):
        self.uri = experiment_uri.rstrip("/")
        self.path = f"{self.uri}/{LOCK_FILE}"
        self.lease_s = lease_s
        self.holder: Holder | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ the file itself
    def read(self) -> Holder | None:
        try:
            raw = read_text(self.path)
        except OSError:  # none (pyarrow says so with an OSError on every filesystem)
            return None
        try:
            return Holder(**json.loads(raw))
        except (ValueError, TypeError):  # torn or foreign: treat as a holder long gone
            return Holder(host="?", pid=0, process_started=None, since="?", lease_until=0.0,
                          token="")

    def _write(self, holder: Holder, exclusive: bool) -> bool:
        """Write the lock file; with ``exclusive`` only if none exists (False when one does)."""
        data = json.dumps(asdict(holder), indent=2)
        if is_remote(self.path):
            write_text(self.path, data)
            return True
        Path(self.uri).mkdir(parents=True, exist_ok=True)
        if exclusive:
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "w") as f:
                f.write(data)
            return True
        tmp = f"{self.path}.{holder.token}"
        Path(tmp).write_text(data)
        os.replace(tmp, self.path)  # atomic: a reader sees the old lease or the new one
        return True

    def _delete(self) -> None:
        try:
            delete(self.path)
        except OSError:  # storage away: the lease runs out on its own
            pass

    def _new_holder(self) -> Holder:
        now = time.time()
        return Holder(host=socket.gethostname(), pid=os.getpid(),
                      process_started=process_start_time(os.getpid()),
                      since=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                      lease_until=now + self.lease_s, token=uuid.uuid4().hex)

    # ------------------------------------------------------------------ taking and giving back
    def acquire(self) -> None:
        me = self._new_holder()
        for _ in range(3):  # a stale lock removed by a racing driver: look again
            if is_remote(self.path):
                current = self.read()
                if current is None or current.stale():
                    self._announce_takeover(current)
                    self._write(me, exclusive=False)
                    time.sleep(0.2)
                    back = self.read()
                    if back is not None and back.token == me.token:
                        return self._held(me)
                    current = back
                raise ExperimentLocked(self._held_message(current))
            if self._write(me, exclusive=True):
                return self._held(me)
            current = self.read()
            if current is None:
                continue
            why = current.stale()
            if why is None:
                raise ExperimentLocked(self._held_message(current))
            self._announce_takeover(current, why)
            self._delete()
        raise ExperimentLocked(f"{self.path}: could not take the lock (other drivers keep "
                               "taking it)")

    def _held(self, me: Holder) -> None:
        self.holder = me
        self._stop.clear()
        self._thread = threading.Thread(target=self._renew, name="driver-lock-lease",
                                        daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            h = self.holder
            if h is None:
                return
            renewed = Holder(**{**asdict(h), "lease_until": time.time() + self.lease_s})
            try:
                self._write(renewed, exclusive=False)
                self.holder = renewed
            except OSError:  # storage away for a moment: the next renewal tries again
                pass

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        me, self.holder = self.holder, None
        if me is None:
            return
        current = self.read()
        if current is not None and current.token == me.token:
            self._delete()
        if not is_remote(self.uri):
            try:  # a run that failed before it wrote anything leaves no empty directory
                Path(self.uri).rmdir()
            except OSError:
                pass

    def __enter__(self) -> DriverLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    # ------------------------------------------------------------------ messages
    def _held_message(self, holder: Holder | None) -> str:
        who = holder.describe() if holder else "another driver"
        return (f"experiment {self.uri!r} is being driven by {who}; wait for it to end, or stop "
                f"it (Ctrl+C) and run `tune-ptycho resume {self.uri}`. A driver that was killed "
                f"frees it at once on its own host, elsewhere once its lease of "
                f"{self.lease_s:.0f} s runs out")

    def _announce_takeover(self, holder: Holder | None, why: str | None = None) -> None:
        if holder is None:
            return
        why = why or holder.stale() or "it is stale"
        print(f"{LOCK_FILE}: taking over the lock of {holder.describe()}: {why}")

