"""The peers of ``bench/vs_peers.py``: Ray Tune's own search, Optuna alone, and an epoch budget.

* :func:`tune_param_space` writes a :class:`~search_spaces.ranges.DeclaredSpace` (define-by-run,
  conditional) as a Tune ``param_space``: unconditional ranges become Tune's own domains
  (``tune.choice``, ``tune.loguniform``, ``tune.uniform``, ``tune.randint``), each conditional
  one a ``tune.sample_from`` whose function reads the parameters its condition names and draws
  from the same Tune domain when the condition holds (and the parameters it depends on are
  themselves active); otherwise it takes the study's base value, which is what a config path
  that Optuna never suggested takes. Both draw the same ranges as Optuna's space, uniformly.
* :class:`EpochBudget` ends a Tune experiment once its trials have reported ``budget`` epochs.
* :func:`optuna_worker` is one process of an Optuna study written as a researcher writes it
  without Ray: TPE and Hyperband on one journal file, ``trial.report`` every epoch,
  ``trial.should_prune()``, the same ``fit`` on the same data; every epoch logged with its
  wall-clock time.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

_INACTIVE = object()


# ------------------------------------------------------------------ Tune's own search
def _domain(r):
    """The Tune domain of one range (upper bounds of Tune's integer domains are exclusive)."""
    from ray import tune

    if r.categorical:
        return tune.choice(list(r.choices))
    if r.int:
        lo, hi = int(r.low), int(r.high) + 1
        return tune.lograndint(lo, hi) if r.log else tune.randint(lo, hi)
    return tune.loguniform(r.low, r.high) if r.log else tune.uniform(r.low, r.high)


def _root(config: Any) -> Any:
    """Tune hands a ``sample_from`` function the whole spec (``config`` under it)."""
    while isinstance(config, dict) and "config" in config:
        config = config.config  # attribute access: Tune's guard defers unresolved values
    return config


def _value(config: Any, path: str) -> Any:
    v = config
    for key in path.split("/"):
        v = getattr(v, key)
    return v


class _Conditional:
    """The ``sample_from`` function of one conditional path (picklable, for Tune's snapshots)."""

    def __init__(self, path: str, by_path: dict[str, list], base: dict[str, Any], rng):
        self.path, self.by_path, self.base, self.rng = path, by_path, base, rng

    def __deepcopy__(self, memo: dict) -> _Conditional:
        # Tune deep-copies the param_space for every variant: a copied generator would draw the
        # same values for every trial.
        return self

    def branch(self, path: str, config: Any):
        """The range of ``path`` whose condition holds, or None when ``path`` is inactive."""
        for r in self.by_path[path]:
            if all(self.active_value(q, config) in vals for q, vals in r.when):
                return r
        return None

    def active_value(self, path: str, config: Any) -> Any:
        if any(not r.when for r in self.by_path[path]):
            return _value(config, path)
        return _value(config, path) if self.branch(path, config) is not None else _INACTIVE

    def __call__(self, config: Any) -> Any:
        config = _root(config)
        r = self.branch(self.path, config)
        if r is None:
            return self.base[self.path]
        return _domain(r).sample(random_state=self.rng)


def tune_param_space(space, base: dict[str, Any], seed: int) -> dict[str, Any]:
    """``space`` as a nested Tune ``param_space``; ``base`` is the study's flat run config (the
    value of a path whose condition does not hold). ``seed`` seeds the conditional draws; the
    unconditional ones follow ``BasicVariantGenerator(random_state=...)``."""
    by_path: dict[str, list] = {}
    for r in space.ranges:
        by_path.setdefault(r.path, []).append(r)
    rng = np.random.default_rng([seed, 20261203])
    out: dict[str, Any] = {}
    for path, ranges in by_path.items():
        if len(ranges) == 1 and not ranges[0].when:
            dom = _domain(ranges[0])
        else:
            from ray import tune

            dom = tune.sample_from(_Conditional(path, by_path, base, rng))
        node = out
        *parents, leaf = path.split("/")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = dom
    return out


def epoch_budget(budget: int):
    """A Tune stopper that ends the whole experiment after ``budget`` reported epochs."""
    from ray import tune

    class EpochBudget(tune.Stopper):
        def __init__(self) -> None:
            self.seen = 0

        def __call__(self, trial_id: str, result: dict) -> bool:
            self.seen += 1
            return False

        def stop_all(self) -> bool:
            return self.seen >= budget

    return EpochBudget()


# ------------------------------------------------------------------ Optuna alone
def optuna_worker(worker: int, study_name: str, journal: str, preset: str, max_epochs: int,
                  space, seed: int, budget: int, counter, log_path: str) -> None:
    """One worker process: trials of the shared study until ``budget`` epochs are spent (counted
    over both workers in ``counter``); every epoch and every trial's end go to ``log_path``."""
    import optuna
    import torch
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from ptycho_model import names
    from ptycho_model.data import simulate
    from ptycho_model.evaluate import evaluate_test_image
    from ptycho_model.generators import build_generator
    from ptycho_model.presets import preset_config
    from ptycho_model.train import fit

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # the peer has no collapse stopper: its trials train on past a flag
    base = preset_config(preset, {"train/max_epochs": max_epochs, "collapse/stop": False})
    data = simulate(base.data)
    storage = JournalStorage(JournalFileBackend(journal))
    study = optuna.load_study(
        study_name=study_name, storage=storage,
        sampler=optuna.samplers.TPESampler(seed=seed * 100 + worker),
        pruner=optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max_epochs,
                                              reduction_factor=3))
    log = Path(log_path).open("a")

    def write(**row: Any) -> None:
        log.write(json.dumps({"ts": time.time(), "worker": worker, **row}) + "\n")
        log.flush()

    def objective(trial: optuna.Trial) -> float:
        space(trial)  # the define-by-run suggest calls of the same ranges
        cfg = base.with_updates(dict(trial.params))
        write(event="start", trial=trial.number)

        def on_epoch(m: dict[str, Any]) -> None:
            with counter.get_lock():
                counter.value += 1
                n = counter.value
            write(event="epoch", trial=trial.number, epoch=m[names.EPOCH],
                  objective=m[names.OBJECTIVE], val_loss=m[names.VAL_LOSS],
                  collapsed=m[names.COLLAPSED], diverged=m[names.DIVERGED], n=n)
            trial.report(m[names.OBJECTIVE], m[names.EPOCH])
            if n >= budget or trial.should_prune():
                raise optuna.TrialPruned()

        res = fit(cfg, data, on_epoch=on_epoch)
        ssim = math.nan
        if res.best_model_state is not None:  # the winner's best weights, scored as the service
            model = build_generator(cfg.model, N=cfg.data.N)
            model.load_state_dict(res.best_model_state)
            ssim = float(evaluate_test_image(model, data.test)[0][names.AMP_SSIM])
        write(event="end", trial=trial.number, amp_ssim=ssim)
        value = float(res.final[names.OBJECTIVE])
        return value if math.isfinite(value) else names.DIVERGED_SENTINEL

    while counter.value < budget:
        study.optimize(objective, n_trials=1)
    log.close()


def run_optuna_alone(root: Path, name: str, preset: str, max_epochs: int, space, seed: int,
                     budget: int, workers: int = 2) -> tuple[list[dict[str, Any]], float, float]:
    """Two worker processes on one journal-file study: (logged rows, start time, wall s)."""
    import multiprocessing as mp

    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    journal = str(root / f"{name}.journal")
    optuna.create_study(study_name=name, direction="minimize",
                        storage=JournalStorage(JournalFileBackend(journal)))
    ctx = mp.get_context("spawn")
    counter = ctx.Value("i", 0)
    logs = [root / f"{name}-w{w}.jsonl" for w in range(workers)]
    t0 = time.time()
    procs = [ctx.Process(target=optuna_worker, args=(w, name, journal, preset, max_epochs, space,
                                                     seed, budget, counter, str(logs[w])))
             for w in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    wall = time.time() - t0
    for p in procs:
        if p.exitcode:
            print(f"optuna worker pid {p.pid} exited {p.exitcode}", flush=True)
    rows = []
    for f in logs:
        if f.exists():
            rows += [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
    return rows, t0, wall
