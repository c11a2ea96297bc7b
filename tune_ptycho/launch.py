"""``tune-ptycho run`` and ``tune-ptycho resume``: from a validated spec to a finished study."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from ptycho_model import names

from .cluster import check_request, connect
from .datasets import get_datasets, slim_for_trials
from .experiment import (
    ExperimentInfo, best_result, check_writable, create_experiment, reconcile_study,
    refuse_existing,
)
from .progress import ProgressCallback, describe_params
from .single_run import utc_stamp
from .searcher import repair_before_resume
from .spec import ExperimentSpec, is_remote
from .study import load_study
from .tuner import build_tuner, make_trainable

EXIT_OK, EXIT_TRIAL_ERRORS, EXIT_INTERRUPTED = 0, 1, 130

# Quiet Ray's experiment-snapshot warnings (ray #31613) and keep relative paths working.
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "1")


def default_name(spec: ExperimentSpec) -> str:
    return f"{spec.search.space}-{spec.preset}-{utc_stamp()}"


def _prepare(spec: ExperimentSpec, address: str | None, dashboard: bool) -> Any:
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
        progress: bool = True) -> int:
    name = spec.storage.name or default_name(spec)
    refuse_existing(spec, name)  # before Ray starts: cheap checks first
    if not is_remote(spec.storage.path):
        check_writable(spec.storage.path)
    data, manifest = _prepare(spec, address, dashboard)
    info = create_experiment(spec, name, manifest)
    print(f"experiment {info.uri}: space {spec.search.space}, preset {spec.preset}, "
          f"{spec.search.num_samples} trials, {spec.run.train.max_epochs} epochs max")
    cb = ProgressCallback(spec.search.num_samples, spec.run.train.max_epochs, enabled=progress)
    tuner = build_tuner(spec, slim_for_trials(data), name, info.storage_path, info.study_url, cb)
    results = tuner.fit()
    return finish(info, results)


def resume(path: str, address: str | None = None, dashboard: bool = True) -> int:
    from ray import tune

    info = ExperimentInfo.load(path)
    if not tune.Tuner.can_restore(info.uri):
        raise ValueError(f"{info.uri!r} holds no Tune experiment state to resume from")
    data, _ = _prepare(info.spec, address, dashboard)
    if not is_remote(info.uri):
        failed, requeued = repair_before_resume(Path(info.uri), load_study(info.study_url, info.name))
        if failed:
            print(f"study: {failed} trial(s) the killed driver had started but Tune never "
                  f"recorded marked FAIL; {requeued} seed arm(s) among them enqueued again")
    print(f"resuming {info.uri}")
    tuner = tune.Tuner.restore(info.uri, trainable=make_trainable(info.spec, slim_for_trials(data)),
                               resume_unfinished=True, resume_errored=True)
    results = tuner.fit()
    return finish(info, results)


def finish(info: ExperimentInfo, results) -> int:
    failed = reconcile_study(info)
    if failed:
        print(f"study: {failed} trial(s) left RUNNING by an interrupted driver marked FAIL")
    n_total = info.spec.search.num_samples
    n_done = sum(1 for r in results if r.metrics and r.error is None)
    best = best_result(results)
    if best is not None:
        print_best(best)
    print(f"experiment: {info.uri}")
    print(f"analyse it: tune-ptycho analyze {info.uri}")
    if results.num_errors:
        print(f"{results.num_errors} trial(s) errored past resources/max_failures="
              f"{info.spec.resources.max_failures}; see their error.txt", file=sys.stderr)
        return EXIT_TRIAL_ERRORS
    if n_done < n_total:
        print(f"{n_done}/{n_total} trials finished; continue with: tune-ptycho resume {info.uri}",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_OK


def print_best(result) -> None:
    m = result.metrics
    ckpt = None
    try:
        c = result.get_best_checkpoint(names.VAL_LOSS, names.MODE)
        ckpt = c.path if c is not None else None
    except (RuntimeError, ValueError):
        pass
    ssim = m.get(names.BEST_CKPT_PREFIX + names.AMP_SSIM, m.get(names.AMP_SSIM))
    const = m.get(names.AMP_SSIM_CONSTANT) or m.get(names.BEST_CKPT_PREFIX + names.AMP_SSIM_CONSTANT)
    print("best trial:", result.path.rstrip("/").rsplit("/", 1)[-1])
    print(f"  config: {describe_params(result.config)}")
    print(f"  objective {m.get(names.OBJECTIVE):.4g}, best_val_loss {m.get(names.BEST_VAL_LOSS):.4g}"
          f" at epoch {m.get(names.BEST_EPOCH)}, stopped at epoch {m.get(names.EPOCH)}"
          f" ({'collapsed ' + str(m.get(names.COLLAPSE_KIND)) if m.get(names.COLLAPSED) else 'not collapsed'})")
    if ssim is not None:
        extra = f" (constant-output fingerprint {const:.3f})" if const is not None else ""
        print(f"  amp SSIM of its best checkpoint {ssim:.3f}{extra}")
    if ckpt:
        print(f"  best checkpoint: {ckpt}")


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=2, default=str)
