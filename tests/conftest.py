"""Shared fixtures: one Ray for the whole session, a short temp dir for its sockets, a private
dataset cache, and one finished tiny experiment that several tests read."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

# Keep tests hermetic: no token prompt, no snapshot warnings, private cache.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "0")
_CACHE = tempfile.mkdtemp(prefix="tp-cache-")
os.environ["TUNE_PTYCHO_CACHE"] = _CACHE


def short_tmp(prefix: str = "tp") -> str:
    """A short directory under /tmp: Ray's AF_UNIX socket paths are capped at 107 bytes."""
    return tempfile.mkdtemp(prefix=prefix, dir="/tmp")


@pytest.fixture(scope="session")
def ray_session():
    import ray

    tmp = short_tmp("tpr")
    ray.init(address="local", num_cpus=2, num_gpus=0, include_dashboard=False,
             object_store_memory=100 * 1024**2, log_to_driver=False, _temp_dir=tmp)
    yield ray
    ray.shutdown()
    shutil.rmtree(tmp, ignore_errors=True)


TINY_ARGS = ["--preset", "tiny", "--space", "stage_a", "--num-samples", "4", "--max-epochs", "4",
             "--grace-period", "2", "--no-dashboard", "--no-progress",
             "--set", "train/eval_every=2"]


@pytest.fixture(scope="session")
def tiny_experiment(ray_session, tmp_path_factory) -> Path:
    """A finished 4-trial tiny study (stage_a space: its 4 seed arms run first)."""
    from tune_ptycho.cli import main

    storage = tmp_path_factory.mktemp("runs")
    code = main(["run", *TINY_ARGS, "--storage", str(storage), "--name", "tiny"])
    assert code == 0
    return storage / "tiny"
