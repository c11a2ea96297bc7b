"""``tune-ptycho crash-hunt EXPERIMENT --top K --seeds S``: how often does a configuration collapse?

Upstream's crash-hunt plan ran each arm over 3 seeds and counted the crashes (P_crash): whether a
configuration is stable is a probability, and one study trial per configuration says little about
it. This command takes the K trials of an experiment with the lowest ``best_val_loss`` (collapsed
or not) and reruns each configuration over S new ``train/seed`` values, the same S for every
configuration (paired: a seed that is hard for one is tried on all).

The reruns are a follow-up Tune experiment at ``EXPERIMENT/crash_hunt/``, on the same machinery
and storage as any study (local, shared filesystem or ``s3://``): each (configuration, seed) is
one enqueued point of its Optuna study, so ``tune-ptycho resume EXPERIMENT/crash_hunt`` after a
killed driver runs every one exactly once (:func:`.searcher.repair_before_resume`).
No early stopping: every run ends at ``train/max_epochs``, or when the collapse rule stops it.
``crash_hunt.json`` beside its ``spec.json`` records the plan. The results are read by
:mod:`tune_ptycho.analysis.crash_hunt` into ``EXPERIMENT/report/crash_hunt.csv`` and the report.
"""

from __future__ import annotations

import json
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

from ptycho_model import names
from ptycho_model.errors import InputError

from ..analysis.crash_hunt import SEED_PATH
from ..spec import ExperimentSpec, validate
from ..storage.experiment import ExperimentInfo, refuse_existing
from ..storage.fs import exists, is_remote, read_text, write_text
from ..storage.layout import CRASH_HUNT_CSV, CRASH_HUNT_DIR, CRASH_HUNT_META, REPORT_MD
from .schedulers import NONE as NO_SCHEDULER


class CrashHuntRefused(InputError):
    """A crash hunt that cannot be run as asked (bad --top/--seeds, no trial to rerun)."""


def check_counts(top: int, seeds: int) -> None:
    if top < 1:
        raise CrashHuntRefused(f"--top {top}: give at least 1 configuration to rerun")
    if seeds < 1:
        raise CrashHuntRefused(f"--seeds {seeds}: give at least 1 seed per configuration")


def hunt_seeds(spec: ExperimentSpec, n: int) -> list[int]:
    """``n`` train seeds none of the experiment's trials used: the base seed + 1 .. + n."""
    base = spec.run.train.seed
    return [base + 1 + i for i in range(n)]


def pick_trials(exp, top: int) -> list[Any]:
    """The ``top`` trials with the lowest best_val_loss among those that reported (any outcome).
    Refused, naming what the experiment holds, when none reported."""
    from ..analysis.load import finite
    from ..outcomes import OUTCOME_LABELS

    done = [t for t in exp.trials if t.rows and finite(t.last.get(names.BEST_VAL_LOSS)) is not None
            and t.params]
    if not done:
        held = {}
        for t in exp.trials:
            held[OUTCOME_LABELS.get(t.outcome, t.outcome)] = held.get(
                OUTCOME_LABELS.get(t.outcome, t.outcome), 0) + 1
        what = ", ".join(f"{n} {k}" for k, n in held.items()) or "no trials at all"
        raise CrashHuntRefused(f"{str(exp.path)!r}: no trial reported a best_val_loss to rerun "
                               f"(it holds {what})")
    done.sort(key=lambda t: (finite(t.last.get(names.BEST_VAL_LOSS)), t.trial_id))
    return done[:top]


def hunt_spec(parent: ExperimentInfo, configs: list[dict[str, Any]], seeds: list[int]
              ) -> ExperimentSpec:
    """The follow-up experiment's spec: the parent's, with every (configuration, seed) as an
    explicit point, ``train/seed`` added to the space, and no early stopping."""
    spec = parent.spec
    points = [{**c["params"], SEED_PATH: s} for c in configs for s in seeds]
    resolved = {**spec.search.resolved,
                # the seeds as choices: a range would refuse a single seed (low == high)
                SEED_PATH: {"choices": list(seeds)}}
    search = replace(spec.search, num_samples=len(points), points=points, resolved=resolved,
                     seed_points=False, seed_arms=0)
    storage = replace(spec.storage, path=parent.uri, name=CRASH_HUNT_DIR)
    hunt = replace(spec, search=search, scheduler=replace(spec.scheduler, name=NO_SCHEDULER),
                   storage=storage)
    validate(hunt)
    return hunt


def is_crash_hunt(uri: str) -> bool:
    return exists(uri.rstrip("/") + "/" + CRASH_HUNT_META)


def crash_hunt(path: str, top: int, seeds: int, address: str | None = None,
               dashboard: bool = True, progress: bool = True) -> int:
    """Plan, run and report a crash hunt of the experiment at ``path``; returns the exit code."""
    from ..analysis.load import load_experiment
    from ..analysis.remote import local_copy
    from .launch import run

    check_counts(top, seeds)
    parent = ExperimentInfo.load(path)
    remote = is_remote(parent.uri)
    with local_copy(parent.uri) if remote else nullcontext(Path(parent.uri)) as local:
        exp = load_experiment(local, with_study=False)
        picked = pick_trials(exp, top)
    if len(picked) < top:
        print(f"crash hunt: {top} configurations asked for, {len(picked)} trial(s) reported: "
              f"rerunning those {len(picked)}")
    seed_list = hunt_seeds(parent.spec, seeds)
    configs = [{"source_trial": t.trial_id, "params": dict(t.params),
                names.BEST_VAL_LOSS: t.last.get(names.BEST_VAL_LOSS)} for t in picked]
    spec = hunt_spec(parent, configs, seed_list)
    uri = refuse_existing(spec, CRASH_HUNT_DIR)
    meta = {"parent": parent.uri, "top": top, "seeds": seed_list, "configs": configs}
    print(f"crash hunt: {len(configs)} configuration(s) x {len(seed_list)} seed(s) "
          f"{seed_list} = {len(configs) * len(seed_list)} runs, no early stopping, at {uri}")

    def record(info: ExperimentInfo) -> None:
        write_text(info.uri + "/" + CRASH_HUNT_META, json.dumps(meta, indent=2, default=str))

    code = run(spec, address=address, dashboard=dashboard, progress=progress,
               study_name=f"{parent.study_name}.{CRASH_HUNT_DIR}", before_fit=record)
    report_parent(uri)
    return code


def report_parent(hunt_uri: str) -> None:
    """Rebuild the parent experiment's report, which holds the crash hunt's section and CSV.
    A report that cannot be built must not cost the runs: say so and go on."""
    import sys

    from ..analysis.report import analyze

    meta = json.loads(read_text(hunt_uri.rstrip("/") + "/" + CRASH_HUNT_META))
    try:
        out = analyze(meta["parent"])
    except Exception as e:  # noqa: BLE001
        print(f"crash hunt: the report was not rebuilt ({type(e).__name__}: {e}); run "
              f"`tune-ptycho analyze {meta['parent']}`", file=sys.stderr)
        return
    print(f"crash hunt report: {out}/{REPORT_MD} and {out}/{CRASH_HUNT_CSV}")
