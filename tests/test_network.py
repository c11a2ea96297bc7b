"""A one-machine study listens on loopback only (every exception named in SECURITY.md), keeps
Ray's token auth on, and leaves the token file 0600 in a 0700 folder."""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest

from tune_ptycho.cluster.resources import AUTH_DISABLED_WARNING

ROOT = Path(__file__).resolve().parents[1]
_LIST = re.compile(r"^- `(?P<component>[^`]+)`, port `(?P<port>\d+)`: ", re.M)


def security_ports() -> dict[str, str]:
    """SECURITY.md's list of ports a local Ray opens beyond loopback (the lines between the two
    markers), as ``{port: component}``. Every line there is either such an item or says None."""
    text = (ROOT / "SECURITY.md").read_text()
    start = text.index("<!-- ports-beyond-loopback -->")
    end = text.index("<!-- /ports-beyond-loopback -->")
    lines = [ln for ln in text[start:end].splitlines()[1:] if ln.strip()]
    items = {m["port"]: m["component"] for m in map(_LIST.match, lines) if m}
    assert len(items) == len(lines) or (not items and lines[0].startswith("None")), lines
    return items


def _http_status(port: int, path: str) -> int | str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except Exception as e:  # noqa: BLE001 - a gRPC port, a reset: not HTTP
        return type(e).__name__


def _is_loopback(ip: str) -> bool:
    addr = ipaddress.ip_address(ip.split("%")[0])
    mapped = getattr(addr, "ipv4_mapped", None)
    return (mapped or addr).is_loopback


def _listeners(pid: int) -> list[tuple[str, int, str]]:
    """``(ip, port, process name)`` of every LISTEN socket of ``pid`` and its descendants."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return []
    out = []
    for p in procs:
        try:
            conns = p.net_connections(kind="inet")
            name = " ".join(p.cmdline()[:3])[:120]
        except psutil.Error:
            continue
        out += [(c.laddr.ip, c.laddr.port, name) for c in conns if c.status == psutil.CONN_LISTEN]
    return out


def _env(home: Path, tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")}
    env.update(HOME=str(home), RAY_TMPDIR=str(tmp), PYTHONUNBUFFERED="1", **extra)
    return env


@pytest.mark.slow
def test_local_study_listens_on_loopback_only_and_keeps_the_token_private(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    ray_tmp = Path(tempfile.mkdtemp(prefix="tpn-", dir="/tmp"))  # Ray's sockets: <=107 bytes
    storage = tmp_path / "runs"
    argv = [sys.executable, "-m", "tune_ptycho.cli", "run", "--preset", "tiny", "--space",
            "stage_a", "--num-samples", "1", "--max-epochs", "3", "--no-progress", "--storage",
            str(storage), "--name", "net", "--set", "faults/allowed=true",
            "--set", "faults/sleep_s=1"]
    allowed = security_ports()
    proc = subprocess.Popen(argv, cwd=ROOT, env=_env(home, ray_tmp), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    seen: dict[tuple[str, int], str] = {}
    answers: dict[tuple[int, str], int | str] = {}
    try:
        deadline = time.monotonic() + 90
        # Sample until a trial has reported (every component is up by then) and the dashboard has
        # answered over HTTP; a port asked before its server was ready is asked again.
        while time.monotonic() < deadline and proc.poll() is None:
            for ip, port, name in _listeners(proc.pid):
                seen.setdefault((ip, port), name)
                if ("dashboard.py" in name or "RuntimeEnvAgent" in name) \
                        and not isinstance(answers.get((port, name)), int):
                    answers[(port, name)] = _http_status(port, "/api/version")
            reported = any(f.stat().st_size for f in storage.rglob("result.json"))
            if reported and 401 in answers.values():
                break
            time.sleep(0.5)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert proc.returncode == 0, out[-3000:]
    assert seen, "no listening socket seen: the study ended before it was sampled"
    print("\n".join(f"{ip}:{port} {name}" for (ip, port), name in sorted(seen.items())))
    beyond = {f"{ip}:{port} ({name})" for (ip, port), name in seen.items()
              if not _is_loopback(ip) and str(port) not in allowed}
    assert not beyond, f"listening beyond loopback, not named in SECURITY.md: {sorted(beyond)}"
    print(answers)
    assert 401 in answers.values(), answers  # the dashboard wants Ray's token
    assert AUTH_DISABLED_WARNING not in out  # token auth is on (Ray's default): no warning
    token = home / ".ray" / "auth_token"
    assert token.is_file(), "token auth is Ray's default for a local Ray: it writes the token"
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    assert stat.S_IMODE(token.parent.stat().st_mode) == 0o700


def test_connect_binds_local_ray_to_loopback_warns_once_and_protects_the_token(
        tmp_path, monkeypatch, capsys):
    """Without starting a Ray: what connect() hands ray.init for a local Ray, and for a cluster."""
    import ray
    from ray._private import ray_constants

    from tune_ptycho.cluster import resources

    home = tmp_path / "home"
    (home / ".ray").mkdir(parents=True)
    token = home / ".ray" / "auth_token"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    monkeypatch.delenv(resources._LOCAL_ONLY_ENV, raising=False)
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    calls = []

    def fake_init(**kw):  # what Ray would see: its own switch, and the token it writes 0644
        calls.append((kw, os.environ.get(resources._LOCAL_ONLY_ENV),
                      ray_constants.ENABLE_RAY_CLUSTER))
        token.write_text("t")
        token.chmod(0o644)
        token.parent.chmod(0o755)
        return None

    monkeypatch.setattr(ray, "init", fake_init)
    before = ray_constants.ENABLE_RAY_CLUSTER
    resources.connect(None, dashboard=True)
    kw, env, const = calls[-1]
    assert kw["address"] == "local" and kw["dashboard_host"] == "127.0.0.1"
    assert env == "0" and const is False  # Ray's one-machine switch: node IP = loopback
    assert os.environ.get(resources._LOCAL_ONLY_ENV) is None  # restored for a later cluster
    assert ray_constants.ENABLE_RAY_CLUSTER is before
    assert capsys.readouterr().err.splitlines() == [AUTH_DISABLED_WARNING]
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    assert stat.S_IMODE(token.parent.stat().st_mode) == 0o700

    monkeypatch.delenv("RAY_AUTH_MODE")
    resources.connect(None, dashboard=False)
    assert capsys.readouterr().err == ""  # token auth on: no warning

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    resources.connect("10.0.0.10:6379", dashboard=True)  # joining a cluster: Ray's own settings
    kw, env, const = calls[-1]
    assert kw == {"address": "10.0.0.10:6379", "log_to_driver": False}
    assert env is None and const is before
    assert capsys.readouterr().err == ""
