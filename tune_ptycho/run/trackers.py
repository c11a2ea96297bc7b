"""Experiment trackers (``storage/log_to``): Ray Tune's own logger callbacks, nothing of ours.

tune-ptycho names every logger explicitly (and tells Tune not to add its defaults): the JSON and
CSV loggers always, since ``result.json`` is what analysis reads, and then those asked for:

* ``tensorboard``: Tune's ``TBXLoggerCallback``; the event files sit in each trial directory.
* ``mlflow``: ``MLflowLoggerCallback``: one MLflow run per trial, its sampled config as params,
  every numeric result per epoch as metrics (the collapse flags included). The tracking URI is
  ``storage/mlflow_uri``, by default an SQLite store inside the experiment.
* ``wandb``: ``WandbLoggerCallback``; needs ``WANDB_MODE=offline`` or ``WANDB_API_KEY`` in the
  environment. The key is never passed to the callback (it would be pickled into tuner.pkl).
  A local experiment keeps the runs in ``<experiment>/wandb/`` (offline: ``wandb sync`` them).

The callbacks are pickled into ``tuner.pkl``, so ``resume`` attaches the same ones.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

from ptycho_model.errors import InputError

from ..storage.fs import is_remote, read_text

TRACKERS = {"tensorboard": "tensorboardX", "mlflow": "mlflow", "wandb": "wandb"}  # -> module
EXTRA = 'pip install -e ".[trackers]"'
MLFLOW_DB = "mlflow.db"
WANDB_PROJECT = "tune-ptycho"
NO_AUTO_LOGGERS = "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"


class TrackerUnavailable(InputError):
    """A tracker was asked for whose package or credentials are missing (exit code 2)."""


def mlflow_uri(experiment_uri: str, given: str) -> str:
    if given:
        return given
    return f"sqlite:///{Path(experiment_uri).resolve() / MLFLOW_DB}"


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a module blocked in sys.modules, a broken install
        return False


def check_trackers(log_to: list[str]) -> None:
    """Each tracker's package is importable and W&B has a mode or key; before Ray starts."""
    missing = [t for t in log_to if not _installed(TRACKERS[t])]
    if missing:
        raise TrackerUnavailable(
            f"storage/log_to asks for {', '.join(missing)}, whose package is not installed; "
            f"install the trackers extra: {EXTRA}")
    if "wandb" in log_to and os.environ.get("WANDB_MODE") not in ("offline", "disabled") \
            and not os.environ.get("WANDB_API_KEY"):
        raise TrackerUnavailable(
            "storage/log_to asks for wandb: set WANDB_MODE=offline (files only, `wandb sync` "
            "later) or WANDB_API_KEY in the environment; the key is never written to the "
            "experiment")


def logger_callbacks(log_to: list[str], experiment_uri: str, name: str,
                     mlflow_tracking_uri: str) -> list:
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    os.environ[NO_AUTO_LOGGERS] = "1"  # exactly the loggers named here
    callbacks = [JsonLoggerCallback(), CSVLoggerCallback()]
    if "tensorboard" in log_to:
        from ray.tune.logger import TBXLoggerCallback

        callbacks.append(TBXLoggerCallback())
    if "mlflow" in log_to:
        from ray.air.integrations.mlflow import MLflowLoggerCallback

        callbacks.append(MLflowLoggerCallback(
            tracking_uri=mlflow_uri(experiment_uri, mlflow_tracking_uri), experiment_name=name,
            tags={"tune_ptycho_experiment": experiment_uri}, save_artifact=False))
    if "wandb" in log_to:
        from ray.air.integrations.wandb import WandbLoggerCallback

        kw = {}
        if os.environ.get("WANDB_MODE"):  # the logging actors may not inherit the environment
            kw["mode"] = os.environ["WANDB_MODE"]
        if not is_remote(experiment_uri):
            # Straight into the experiment: Tune copies a trial's staging directory there before
            # the W&B actors have finished writing, which leaves truncated offline runs behind.
            kw["dir"] = str(Path(experiment_uri).resolve())
        callbacks.append(WandbLoggerCallback(project=WANDB_PROJECT, group=name, **kw))
    return callbacks


def own_loggers(experiment_uri: str) -> None:
    """Before a resume: an experiment that records ``storage/log_to`` named its loggers itself
    (they come back from tuner.pkl), so Tune must not add its defaults; one from before that
    field keeps Tune's defaults, which wrote its result.json."""
    raw = json.loads(read_text(f"{experiment_uri}/spec.json"))
    if "log_to" in raw.get("storage", {}):
        os.environ[NO_AUTO_LOGGERS] = "1"


def tensorboard_hint(log_to: list[str], experiment_uri: str) -> str | None:
    if "tensorboard" not in log_to:
        return None
    viewer = "" if _installed("tensorboard") else f" (the viewer: {EXTRA})"
    return f"watch it in TensorBoard: tensorboard --logdir {experiment_uri}{viewer}"
