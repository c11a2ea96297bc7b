"""The Ray Tune trainable: a thin adapter over :class:`ptycho_model.train.Trainer`.

config dict (Optuna's sampled ``a/b`` parameters, unflattened by Ray) + the experiment's base
config -> validated :class:`RunConfig` -> epochs. After every epoch, ``tune.report`` with the
metric names of :mod:`ptycho_model.names`; every ``checkpoint_every``-th epoch and the trial's
last, a checkpoint of the trainer's whole state too (model, optimizer, scheduler, epoch, RNG,
collapse streaks, best weights). On a retry or a restore it resumes from
``tune.get_checkpoint()`` at the right epoch. Only the ``ray.tune`` reporting API is used: in
Ray 2.60 ``ray.train.report`` inside a Tune function fails the trial.
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from ptycho_model import names
from ptycho_model.config import RunConfig, flatten
from ptycho_model.data import Datasets
from ptycho_model.train import Trainer, save_history


def trial_device(gpu_ids: list) -> torch.device:
    """CUDA when Ray assigned this trial a GPU and torch can see one.

    Ray may assign GPUs a node only *declares* (a local multi-node test cluster has no real GPU):
    then the trial warns once and trains on the CPU. That fallback exists for such tests.
    """
    if gpu_ids:
        if torch.cuda.is_available():
            return torch.device("cuda")
        warnings.warn(f"Ray assigned GPU(s) {gpu_ids} but torch sees no CUDA device; "
                      "training on the CPU (expected only on a test cluster that declares GPUs)",
                      RuntimeWarning, stacklevel=2)
    return torch.device("cpu")


def trial_config(base: dict[str, Any], sampled: dict[str, Any]) -> RunConfig:
    """The experiment's base config with the sampled parameters on top."""
    return RunConfig.from_dict(base).with_updates(flatten(sampled))


def train_ptycho(config: dict[str, Any], *, base: dict[str, Any], data: Datasets,
                 threads: int = 1, checkpoint_every: int = 1) -> None:
    torch.set_num_threads(max(1, int(threads)))
    cfg = trial_config(base, config)
    device = trial_device(ray.get_gpu_ids())
    trainer = Trainer(cfg, data, device=device)
    ckpt = tune.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as d:
            trainer.load(Path(d) / names.STATE_FILE)
    where = {"node_id": ray.get_runtime_context().get_node_id(), "hostname": socket.gethostname(),
             "pid": os.getpid(), "device": str(device), "trial_start_ts": time.time(),
             "resumed_from_epoch": trainer.epoch}
    for metrics in trainer.epochs():
        # the per-block table stays in the checkpoint's history.json; rows get its summary
        row = {**{k: v for k, v in metrics.items() if k != names.LAYERS}, **where,
               "report_ts": time.time()}
        # trainer.finished: the trial ends after this epoch on its own (its last epoch, or a
        # flag: collapse.should_stop, as the run's stopper decides); ASHA's stops come unannounced
        if metrics[names.EPOCH] % checkpoint_every and not trainer.finished:
            tune.report(row)
            continue
        with tempfile.TemporaryDirectory() as d:
            trainer.save(Path(d) / names.STATE_FILE)
            save_history(trainer.history, Path(d) / names.HISTORY_FILE)
            tune.report(row, checkpoint=tune.Checkpoint.from_directory(d))
