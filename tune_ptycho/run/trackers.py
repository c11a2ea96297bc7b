"""Experiment trackers (``storage/log_to``): Ray Tune's own logger callbacks, nothing of ours.

tune-ptycho names every logger explicitly (and tells Tune not to add its defaults): the JSON and
CSV loggers always, since ``result.json`` is what analysis reads, and then those asked for:

* ``tensorboard``: Tune's ``TBXLoggerCallback``; the event files sit in each trial directory.
* ``mlflow``: ``MLflowLoggerCallback``: one MLflow run per trial (named after the Tune trial),
  its sampled config as params, every numeric result per epoch as metrics (the collapse flags
  included). The tracking URI is ``storage/mlflow_uri``, by default an SQLite store inside the
  experiment; with an SQLite store and a local experiment the MLflow experiment is created
  beforehand with its artifacts in ``<experiment>/mlartifacts`` (MLflow's default would be
  ``./mlruns`` in whatever directory the driver was started from).
* ``wandb``: :class:`KeylessWandbCallback`, Tune's ``WandbLoggerCallback`` without the API key
  in its actors' ``runtime_env``; needs ``WANDB_MODE=offline`` or ``WANDB_API_KEY`` in the
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

from ..secrets import redact
from ..storage.fs import is_remote, read_text
from ..storage.layout import MLFLOW_ARTIFACTS, MLFLOW_DB

TRACKERS = {"tensorboard": "tensorboardX", "mlflow": "mlflow", "wandb": "wandb"}  # -> module
EXTRA = 'pip install -e ".[trackers]"'
WANDB_PROJECT = "tune-ptycho"
NO_AUTO_LOGGERS = "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"


class TrackerUnavailable(InputError):
    """A tracker was asked for whose package or credentials are missing (exit code 2)."""


def resolved_mlflow_uri(experiment_uri: str, given: str) -> str:
    """The MLflow tracking URI: ``storage/mlflow_uri`` as given, or the experiment's SQLite."""
    if given:
        return given
    return f"sqlite:///{Path(experiment_uri).resolve() / MLFLOW_DB}"


def mlflow_artifact_location(experiment_uri: str, tracking_uri: str) -> str | None:
    """Where the MLflow experiment keeps its artifacts: inside a local experiment when the
    tracking store is SQLite (MLflow's own default there is ``./mlruns`` in the driver's working
    directory); None (the store's or server's default) otherwise."""
    if is_remote(experiment_uri) or not tracking_uri.startswith("sqlite:"):
        return None
    return (Path(experiment_uri).resolve() / MLFLOW_ARTIFACTS).as_uri()


def prepare_mlflow_experiment(tracking_uri: str, name: str, experiment_uri: str) -> None:
    """Create the MLflow experiment ``name`` with its artifacts inside the tune-ptycho experiment
    (:func:`mlflow_artifact_location`) before Tune's callback looks for it: the callback uses an
    existing experiment of that name and would otherwise create one with the default location.
    An MLflow experiment of that name that already exists is left as it is."""
    location = mlflow_artifact_location(experiment_uri, tracking_uri)
    if location is None:
        return
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    if client.get_experiment_by_name(name) is not None:
        return
    try:
        client.create_experiment(name, artifact_location=location)
    except MlflowException:  # created meanwhile by another driver sharing the store
        if client.get_experiment_by_name(name) is None:
            raise


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

        tracking_uri = resolved_mlflow_uri(experiment_uri, mlflow_tracking_uri)
        prepare_mlflow_experiment(tracking_uri, name, experiment_uri)
        callbacks.append(MLflowLoggerCallback(
            tracking_uri=tracking_uri, experiment_name=name,
            tags={"tune_ptycho_experiment": experiment_uri}, save_artifact=False))
    if "wandb" in log_to:
        kw = {}
        if os.environ.get("WANDB_MODE"):  # the logging actors may not inherit the environment
            kw["mode"] = os.environ["WANDB_MODE"]
        if not is_remote(experiment_uri):
            # Straight into the experiment: Tune copies a trial's staging directory there before
            # the W&B actors have finished writing, which leaves truncated offline runs behind.
            kw["dir"] = str(Path(experiment_uri).resolve())
        from .wandb_keyless import KeylessWandbCallback  # imports Ray's W&B integration

        callbacks.append(KeylessWandbCallback(project=WANDB_PROJECT, group=name, **kw))
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


def _full_mlflow() -> bool:
    """Whether the full ``mlflow`` package (with the UI) is installed, not only mlflow-skinny."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        version("mlflow")
        return True
    except PackageNotFoundError:
        return False


def _name(experiment_uri: str) -> str:
    return experiment_uri.rstrip("/").rsplit("/", 1)[-1]


def _wandb_hint(experiment_uri: str) -> str:
    mode = os.environ.get("WANDB_MODE", "")
    if mode == "disabled":
        return "W&B: WANDB_MODE=disabled, nothing was recorded"
    if mode == "offline":
        if is_remote(experiment_uri):
            return ("upload the W&B runs from a downloaded copy of the experiment: "
                    "wandb sync <copy>/trial_*/wandb/offline-run-*")
        return f"upload the W&B runs: wandb sync {experiment_uri}/wandb/offline-run-*"
    return f"see it in W&B: project {WANDB_PROJECT}, group {_name(experiment_uri)}"


def _dashboard_target(study_url: str) -> str:
    # optuna-dashboard takes a database URL, or a journal file by its path
    if study_url.startswith("journal://"):
        return study_url[len("journal://"):]
    return redact(study_url)


def tracker_hints(log_to: list[str], experiment_uri: str, mlflow_uri: str,
                  study_url: str | None = None) -> list[str]:
    """One line per tracker asked for, with the command that opens it: TensorBoard, MLflow
    (``mlflow_uri``: ``storage/mlflow_uri`` as given, "" for the default store), W&B, and the
    study in optuna-dashboard when ``study_url`` is given. No line shows a secret: URLs are
    printed through :func:`~tune_ptycho.secrets.redact`."""
    lines = []
    tb = tensorboard_hint(log_to, experiment_uri)
    if tb:
        lines.append(tb)
    if "mlflow" in log_to:
        uri = redact(resolved_mlflow_uri(experiment_uri, mlflow_uri))
        if uri.startswith(("http://", "https://")):  # a tracking server serves its own UI
            lines.append(f"browse it in MLflow: {uri} (experiment {_name(experiment_uri)})")
        else:
            ui = "" if _full_mlflow() else " (the UI needs the full package: pip install mlflow)"
            lines.append(f"browse it in MLflow: mlflow ui --backend-store-uri {uri}{ui}")
    if "wandb" in log_to:
        lines.append(_wandb_hint(experiment_uri))
    if study_url:
        viewer = "" if _installed("optuna_dashboard") else f" (the viewer: {EXTRA})"
        lines.append(f"open the study: optuna-dashboard {_dashboard_target(study_url)}{viewer}")
    return lines
