"""``tune-ptycho run`` and ``tune-ptycho resume``: from a validated spec to a finished study."""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path
from typing import Any

from ..analysis.collapses import collapse_summary
from ..analysis.ranking import best_lines, rank_key
from ..cluster.resources import check_request, connect
from ..exits import EXIT_INTERRUPTED, EXIT_OK, EXIT_TRIAL_ERRORS
from ..secrets import aws_keys_kept_from_trials
from ..spec import ExperimentSpec
from ..storage.dataset_cache import get_datasets, slim_for_trials
from ..storage.experiment import (
    ExperimentInfo,
    NotAnExperiment,
    create_experiment,
    reconcile_study,
    refuse_existing,
    saved_trial_statuses,
    utc_stamp,
)
from ..storage.fs import check_writable, is_remote
from ..storage.layout import ERROR_PICKLE, TRIAL_DIR_PREFIX
from ..storage.lock import DriverLock
from ..storage.study import check_reachable, load_study
from .disk_guard import check_space
from .driver_errors import DRIVER_ERROR_FILE, failure_reason, tracebacks_to_file
from .progress import ProgressCallback
from .relocation import resumed_at
from .searcher import repair_before_resume
from .trackers import check_trackers, logger_callbacks, own_loggers, tracker_hints
from .tuner import build_tuner, make_trainable, pending_trials


def _tune_env() -> None:
    """Set Tune's switches for this process before a study (at each call, not at import: a
    caller that restores its environment must not undo them for later studies).

    Quiet Ray's experiment-snapshot warnings (ray #31613) and keep relative paths working. Tune's
    context-aware output engine (RAY_AIR_NEW_OUTPUT=1) prints, whatever the verbosity, a
    configuration table and "tensorboard --logdir /tmp/ray/session_.../driver_artifacts": a
    temporary path that is gone after the run. The classic engine at verbose=0 prints nothing;
    progress comes from our own callback, and `finish` names the experiment directory instead."""
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"


_tune_env()  # also at import: Ray reads some of these when its modules load


def default_name(spec: ExperimentSpec) -> str:
    return f"{spec.search.space}-{spec.preset}-{utc_stamp()}"


def _prepare(spec: ExperimentSpec, address: str | None, dashboard: bool) -> Any:
    _tune_env()
    url = connect(address, dashboard)
    if url:
        print(f"Ray dashboard: {url}")
    r = spec.resources
    check_request(r.cpus_per_trial, r.gpus_per_trial, r.wait_for_nodes_s)
    data, fp, entry = get_datasets(spec.run.data, spec.storage.dataset_cache or None)
    manifest = {"fingerprint": fp, "cache_entry": str(entry),
                "train_patches": int(data.train.n), "val_patches": int(data.val.n),
                "test_patches": int(data.test.n), "val_is_test": data.val_is_test}
    return data, manifest


def run(spec: ExperimentSpec, address: str | None = None, dashboard: bool = True,
        progress: bool = True, study_name: str | None = None,
        before_fit: Any = None) -> int:
    """Create the experiment and run it to the end. ``study_name``: see
    :func:`create_experiment`; ``before_fit(info)`` runs once the experiment exists."""
    name = spec.storage.name or default_name(spec)
    uri = refuse_existing(spec, name)  # before Ray starts: cheap checks first
    check_reachable(spec.storage.study_storage)
    check_trackers(spec.storage.log_to)
    guard = None
    if not is_remote(spec.storage.path):
        check_writable(spec.storage.path)
        guard = check_space(spec)
    with DriverLock(uri):  # two `run --name X` at once: the second stops here
        data, manifest = _prepare(spec, address, dashboard)
        info = create_experiment(spec, name, manifest, study_name)
        if before_fit is not None:
            before_fit(info)
        print(f"experiment {info.uri}: space {spec.search.space}, preset {spec.preset}, "
              f"{spec.search.num_samples} trials, {spec.run.train.max_epochs} epochs max")
        if not spec.search.points:  # explicit points (a crash hunt's) replace the seed arms
            print(spec.arms_line())
        cb = ProgressCallback(spec.search.num_samples, spec.run.train.max_epochs,
                              enabled=progress)
        callbacks = [cb] + ([guard] if guard else []) + logger_callbacks(
            spec.storage.log_to, info.uri, name, spec.storage.mlflow_uri)
        tuner = build_tuner(spec, slim_for_trials(data), name, info.storage_path,
                            info.study_url, callbacks, study_name=info.study_name)
        return fit_and_finish(info, tuner)


def resume(path: str, address: str | None = None, dashboard: bool = True,
           trust: bool = False) -> int:
    from ray import tune

    from ..storage.pickle_scan import check_trusted

    info = ExperimentInfo.load(path)
    if not tune.Tuner.can_restore(info.uri):
        raise NotAnExperiment(f"{info.uri!r} holds no Tune experiment state to resume from")
    # Tune unpickles the experiment's files: only what the service itself pickles (or --trust)
    check_trusted(info.uri, trust)
    check_reachable(info.study_url)
    check_trackers(info.spec.storage.log_to)  # the callbacks come back from tuner.pkl
    own_loggers(info.uri)
    # Before Ray and before the study repair, which would mark a live driver's trials FAIL.
    with DriverLock(info.uri):
        if not is_remote(info.uri):
            check_space(info.spec)
        data, _ = _prepare(info.spec, address, dashboard)
        if not is_remote(info.uri):
            removed = drop_unreadable_error_files(Path(info.uri))
            if removed:
                print(f"removed {removed} empty error file(s) a full disk had left behind")
        failed, requeued = repair_before_resume(info.uri,
                                                load_study(info.study_url, info.study_name))
        if failed:
            print(f"study: {failed} trial(s) the killed driver had started but Tune never "
                  f"recorded marked FAIL; {requeued} seed arm(s) among them enqueued again")
        print(f"resuming {info.uri}")
        # Tune unpickles the searcher twice (tuner.pkl now, its state in fit): its study is
        # the one the experiment holds where it is now, if it was copied or moved
        with resumed_at(info.uri, info.study_url):
            tuner = tune.Tuner.restore(info.uri, trainable=make_trainable(
                info.spec, slim_for_trials(data)), resume_unfinished=True, resume_errored=True)
            return fit_and_finish(info, tuner)


def drop_unreadable_error_files(experiment_dir: Path) -> int:
    """A trial that failed on a full disk leaves an empty ``error.pkl``, on which Tune's
    ResultGrid itself crashes (EOFError); without it Tune falls back to ``error.txt``."""
    n = 0
    for f in experiment_dir.glob(f"{TRIAL_DIR_PREFIX}*/{ERROR_PICKLE}"):
        if f.stat().st_size == 0:
            f.unlink()
            n += 1
    return n


def fit_and_finish(info: ExperimentInfo, tuner) -> int:
    """Run the Tuner; a failure of the driver itself (a full disk, lost storage, a study database
    gone) is reported in one line with the command that continues the experiment, never as a bare
    traceback; the tracebacks go to ``driver_error.txt`` in the experiment."""
    with tracebacks_to_file(info.uri) as tracebacks:
        try:
            with pending_trials(info.spec), aws_keys_kept_from_trials(info.uri):
                results = tuner.fit()
        except KeyboardInterrupt:
            raise
        except Exception as e:  # noqa: BLE001 — anything Tune raises ends the run the same way
            tracebacks.append("".join(traceback.format_exception(e)))
            print(f"tune-ptycho: the experiment stopped: {failure_reason(e)}", file=sys.stderr)
            print(f"the whole traceback: {info.uri}/{DRIVER_ERROR_FILE}", file=sys.stderr)
            if isinstance(e, OSError) or "No space left" in str(e):
                print(f"check the storage at {info.storage_path} (space, rights)",
                      file=sys.stderr)
            print(f"continue it with: tune-ptycho resume {info.uri}", file=sys.stderr)
            return EXIT_TRIAL_ERRORS
    return finish(info, results)


def finish(info: ExperimentInfo, results) -> int:
    n_total = info.spec.search.num_samples
    statuses = saved_trial_statuses(info.uri)
    unfinished = sum(1 for st in statuses.values() if st in ("RUNNING", "PENDING", "PAUSED"))
    n_done = sum(1 for st in statuses.values() if st == "TERMINATED") if statuses else \
        results.num_terminated
    interrupted = unfinished > 0 or n_done + results.num_errors < n_total
    if not interrupted:  # every Tune trial has ended: a study trial still RUNNING is an orphan
        failed = reconcile_study(info)
        if failed:
            print(f"study: {failed} trial(s) left RUNNING by an interrupted driver marked FAIL")
    best = best_result(results)
    print(collapse_summary([r.metrics for r in results]))
    if best is not None:
        print_best(best)
    print(f"experiment: {info.uri}")
    for line in tracker_hints(info.spec.storage.log_to, info.uri, info.spec.storage.mlflow_uri,
                              info.study_url):
        print(line)
    print(f"analyse it: tune-ptycho analyze {info.uri}")
    if interrupted:
        print(f"{n_done}/{n_total} trials finished; continue with: tune-ptycho resume {info.uri}",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    if results.num_errors:
        print(f"{results.num_errors} trial(s) errored past resources/max_failures="
              f"{info.spec.resources.max_failures}; see their error.txt", file=sys.stderr)
        return EXIT_TRIAL_ERRORS
    return EXIT_OK


def best_result(result_grid) -> Any | None:
    """The ResultGrid's best trial (:func:`rank_key`), or None when no trial reported."""
    results = [r for r in result_grid if r.metrics]
    return min(results, key=lambda r: rank_key(r.metrics)) if results else None


def print_best(result) -> None:
    ckpt = None
    c = result.checkpoint  # the newest: its state's best_model holds the trial's best weights
    if c is not None:  # a remote checkpoint's path lacks its scheme: name it in full
        kind = c.filesystem.type_name if c.filesystem is not None else "local"
        ckpt = c.path if kind == "local" else f"{kind}://{c.path}"
    trial_id = result.path.rstrip("/").rsplit("/", 1)[-1]
    print("\n".join(best_lines(trial_id, result.config, result.metrics, ckpt)))
