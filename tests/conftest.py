"""Shared fixtures: one Ray for the whole session, a short temp dir for its sockets, a private
dataset cache, and one finished tiny experiment that several tests read.

The environment the suite needs (no Ray token prompt, no snapshot warnings, a private dataset
cache) is set in ``pytest_configure``, before any test module is imported, and restored with the
cache removed in ``pytest_unconfigure``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

_DEFAULTS = {  # set unless the caller's environment says otherwise
    "RAY_AUTH_MODE": "disabled",
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
    "RAY_CHDIR_TO_TRIAL_DIR": "0",
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "0",
}
_saved: dict[str, str | None] = {}
_cache: list[str] = []


def pytest_configure(config) -> None:
    env = {k: os.environ.get(k, v) for k, v in _DEFAULTS.items()}
    _cache.append(tempfile.mkdtemp(prefix="tp-cache-"))
    env["TUNE_PTYCHO_CACHE"] = _cache[0]  # always private: tests must not share a user's cache
    for k, v in env.items():
        _saved[k] = os.environ.get(k)
        os.environ[k] = v


def pytest_unconfigure(config) -> None:
    for k, v in _saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    for d in _cache:
        shutil.rmtree(d, ignore_errors=True)


SHARED_BUILDS = ("tiny_experiment",)  # session fixtures worth building once, not once per process


def pytest_itemcollected(item) -> None:
    """The tests that read a shared build run in one process (an ``xdist_group`` per build), so
    it is built once. Marked as each test is collected, before any ``modifyitems`` hook:
    pytest-xdist turns the marks into groups in its own."""
    for name in SHARED_BUILDS:
        if name in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group(name))


def pytest_collection_modifyitems(config, items) -> None:
    """Order the tests for two test processes (pyproject's ``-n 2``): the ``slow`` tests come
    first, so that the two processes take them up side by side and the quick ones fill in at the
    end, when one process would otherwise wait on the other. Without xdist only the order
    changes."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable: file order


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session) -> None:
    """Fail loudly when pytest-xdist's ``--dist loadgroup`` did not group: it renames each
    grouped test's node id (``...@group``), which pytest 9 ignores, and then every process
    builds the shared fixtures again (pyproject pins pytest below 9 for that reason)."""
    if not session.config.getoption("loadgroup", False):
        return
    spread = [i.nodeid for i in session.items
              if i.get_closest_marker("xdist_group") and "@" not in i.nodeid]
    if spread:
        raise pytest.UsageError(f"--dist loadgroup did not group {len(spread)} tests (e.g. "
                                f"{spread[0]}): pytest {pytest.__version__} with this "
                                "pytest-xdist; pyproject's test extra pins pytest below 9")


def short_tmp(prefix: str = "tp") -> str:
    """A short directory under /tmp: Ray's AF_UNIX socket paths are capped at 107 bytes."""
    return tempfile.mkdtemp(prefix=prefix, dir="/tmp")


@pytest.fixture(scope="session")
def ray_session():
    import ray

    if ray.is_initialized():  # an in-process `run` before any test asked for this fixture
        ray.shutdown()
    tmp = short_tmp("tpr")
    ctx = ray.init(address="local", num_cpus=2, num_gpus=0, include_dashboard=False,
                   object_store_memory=100 * 1024**2, log_to_driver=False, _temp_dir=tmp)
    _shared.update(address=ctx.address_info["gcs_address"], temp_dir=tmp)
    yield ray
    ray.shutdown()
    shutil.rmtree(tmp, ignore_errors=True)


_shared: dict[str, str] = {}


@dataclass(frozen=True)
class SharedRay:
    """The session's Ray, for drivers started as processes: they join it (``RAY_ADDRESS``, as
    under ``ray job submit``) instead of each starting and stopping a Ray of their own (~9 s on
    two cores, and one more set of Ray daemons competing for them). A SIGKILLed driver's trials
    go with it: Ray ends the workers of a job whose driver died."""

    address: str
    temp_dir: str  # where the drivers' staging directories are (``<temp_dir>/session_*/...``)

    def env(self, **extra: str) -> dict[str, str]:
        return dict(os.environ, RAY_ADDRESS=self.address, PYTHONUNBUFFERED="1", **extra)


@pytest.fixture(scope="session")
def shared_ray(ray_session) -> SharedRay:
    return SharedRay(**_shared)


# search/seed_arms=4: every trial a seed arm (the default would offer 2 of the 4), so the study's
# trials are the same known configurations on every run
TINY_ARGS = ["--preset", "tiny", "--space", "stage_a", "--num-samples", "4", "--max-epochs", "4",
             "--grace-period", "2", "--no-dashboard", "--no-progress",
             "--set", "train/eval_every=2", "--set", "search/seed_arms=4"]


@pytest.fixture(scope="session")
def tiny_experiment(ray_session, tmp_path_factory) -> Path:
    """A finished 4-trial tiny study (stage_a space: its first 4 seed arms, asked for with
    ``search/seed_arms=4``)."""
    from tune_ptycho.cli import main

    storage = tmp_path_factory.mktemp("runs")
    code = main(["run", *TINY_ARGS, "--storage", str(storage), "--name", "tiny"])
    assert code == 0
    return storage / "tiny"


S3_BUCKET = "tp-runs"


@pytest.fixture(scope="session")
def s3_endpoint():
    """A local S3 endpoint (moto's server) with the bucket ``S3_BUCKET``; its URL."""
    from procs import free_ports

    url = f"http://127.0.0.1:{free_ports()[0]}"
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                               "-p", url.rsplit(":", 1)[1]], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(urllib.request.Request(f"{url}/{S3_BUCKET}",
                                                              method="PUT"))
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.3)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def s3_env(endpoint: str) -> dict[str, str]:
    """The variables that point pyarrow, Ray and boto at ``endpoint``."""
    return {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true"}


@pytest.fixture(scope="session")
def postgres(tmp_path_factory):
    """A PostgreSQL server for the session (``tests/pg.py``), stopped by its own pid."""
    from pg import PostgresServer

    server = PostgresServer(tmp_path_factory.mktemp("pg")).start()
    yield server
    server.stop()
    assert server.proc.returncode == 0  # a clean shutdown
