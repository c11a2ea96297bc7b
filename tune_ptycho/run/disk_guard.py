"""Never let a full disk corrupt an experiment.

A disk that fills while Tune writes leaves zero-byte result, error and state files behind, and the
trials being written are lost (measured on a small tmpfs). So the run keeps a reserve: it refuses to
start with less free space than the reserve, and while it runs, a callback stops it the way Ctrl+C
does — Tune saves a consistent experiment state, trials stay resumable — as soon as free space falls
below the reserve. ``tune-ptycho resume`` then continues once space is freed.

Holds the policy (:func:`check_space`: the reserve, the refusal and the warning) and the callback
that keeps it (:class:`StorageGuard`).
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time

import torch
from ray import tune

from ptycho_model.config import RunConfig
from ptycho_model.generators import build_generator

from ..spec import ExperimentSpec
from ..storage.fs import StorageError

MB = 1024 * 1024


def checkpoint_bytes(cfg: RunConfig) -> int:
    """Size of one trial checkpoint: weights, two Adam moments and the best weights (4 copies of
    the parameters, 4 bytes each; complex weights 8), plus history and headroom."""
    with torch.device("meta"):
        model = build_generator(cfg.model, N=cfg.data.N)
    n_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    return 4 * n_bytes + 256 * 1024


def reserve_bytes(cfg: RunConfig, concurrent: int) -> int:
    """Room for every running trial to write two more checkpoints, plus 32 MB for Tune's files."""
    return 2 * max(1, concurrent) * checkpoint_bytes(cfg) + 32 * MB


def free_bytes(path: str) -> int | None:
    """Free bytes on the filesystem holding ``path`` (its nearest existing parent)."""
    p = os.path.abspath(path)
    while not os.path.exists(p):
        parent = os.path.dirname(p)
        if parent == p:
            return None
        p = parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


class StorageGuard(tune.Callback):
    """Interrupts the run (as SIGINT does) when the experiment's disk runs low."""

    def __init__(self, path: str, reserve: int, every_s: float = 2.0):
        self.path, self.reserve, self.every_s = path, reserve, every_s
        self._next = 0.0
        self.tripped = False

    def on_step_begin(self, iteration, trials, **info):
        now = time.monotonic()
        if self.tripped or now < self._next:
            return
        self._next = now + self.every_s
        free = free_bytes(self.path)
        if free is not None and free < self.reserve:
            self.tripped = True
            print(f"tune-ptycho: only {free / MB:.0f} MB free at {self.path} (reserve "
                  f"{self.reserve / MB:.0f} MB): stopping while the experiment can still be "
                  "saved consistently", file=sys.stderr)
            os.kill(os.getpid(), signal.SIGINT)  # Tune's own graceful, resumable stop


def check_space(spec: ExperimentSpec) -> StorageGuard:
    """Refuse to start below the free-space reserve (StorageError, exit 2); warn when the whole
    study's checkpoints may not fit; return the guard that keeps the reserve while it runs."""
    s = spec.search
    concurrent = s.max_concurrent or min(s.num_samples, os.cpu_count() or 1)
    reserve = reserve_bytes(spec.run, concurrent)
    free = free_bytes(spec.storage.path)
    if free is not None and free < reserve:
        raise StorageError(
            f"storage/path={spec.storage.path!r} has {free / MB:.0f} MB free; a run needs a "
            f"reserve of {reserve / MB:.0f} MB "
            f"(two {checkpoint_bytes(spec.run) / MB:.1f} MB checkpoints per "
            "running trial + 32 MB): free space or choose another --storage")
    need = s.num_samples * (spec.storage.keep_checkpoints + 1) * checkpoint_bytes(spec.run)
    if free is not None and need > free:
        print(f"warning: the study may write up to {need / MB:.0f} MB of checkpoints and "
              f"{free / MB:.0f} MB are free; it will stop (resumable) if space runs low",
              file=sys.stderr)
    return StorageGuard(spec.storage.path, reserve)
