"""Replay search methods on the recorded table: search efficiency per epoch spent, many seeds.

The tabular method (HPOBench, LCBench): ``bench/replay_record.py`` trained every point of a
finite grid once per training seed, with ``collapse/stop`` false, and kept each run's per-epoch
curve. Here a search method proposes only grid points; a trial's "training" reads its recorded
curve epoch by epoch, so a method can be run for many searcher seeds at no training cost. Each
trial's training seed is drawn uniformly from the recorded seeds by the replay's own RNG (one
stream per method, arms variant and searcher seed): the service trains every trial at the
preset's ``train/seed``, and drawing over the recorded seeds averages over that training noise
(the live check's exact replay uses the live seed instead). The service ends a study after
``search/num_samples`` trials; a replay has no trial limit, only its epoch budget.

**Time.** Two trials run at a time, as the main job runs them (1 CPU each): an event loop where
each worker runs one trial, reports each epoch to the method's stopping rule and, when the trial
ends, asks the method's searcher for the next one. One epoch is one time unit (``--clock
seconds``: each epoch takes its recorded seconds instead, which only changes the interleaving).
The budget is the total of epochs consumed over all trials: 4x, 10x, 25x and 50x
``train/max_epochs`` (14 at the cpu preset). The methods do not know the budget, so one run per
searcher seed, continued past the largest budget, serves every budget; a trial still in flight at
a budget does not count there.

**Score.** A trial's score is its objective at the last epoch it ran (``objective``, the current
val_loss, or 1e3 for a diverged run): what the service ranks trials by (``tune-ptycho best``:
the lowest final objective) and what Optuna is told. Best-so-far is the lowest score of the trials
ended so far; lower is better.

**Methods**, each with and without the seed arms (the preset's measured arms, then upstream's,
each moved to its nearest grid point: ``bench/_replay.py``, ``seed_arms``; the same list for
every method, run first: ``enqueue_trial`` for Optuna, first proposals for the others):

* ``tune-ptycho``: the service's own searcher class (``ResumableOptunaSearch``, built as
  ``tune_ptycho.run.tuner.make_searcher`` builds it, on an in-memory study) with the service's
  sampler (``search_spaces.make_sampler``: seeded multivariate grouped TPE with the constant liar,
  ``n_startup_trials`` and ``collapse_aware`` from the preset's spec) over the service's space
  restricted to the grid (``_replay.service_spec``: the spec the live service runs); the
  service's trial scheduler (``build_trial_scheduler``: Ray's own ``AsyncHyperBandScheduler``
  class as ``ValLossASHA``, on the current val_loss, grace period from the preset, reduction
  factor 3, one bracket; its decision code runs unchanged, called as Tune's controller calls it);
  and the collapse rule (the service's ``CollapseStopper``, asked first as Tune asks its stopper:
  a trial ends the epoch its recorded flags say collapsed or diverged). Tune's order per result:
  stopper, else scheduler; a result that does not stop the trial goes to the searcher; a stopped
  or finished trial completes in the scheduler and then in the searcher.
* ``random+asha``: Ray-style random search (uniform over the grid points) with the same ASHA and
  no collapse rule (``collapse/stop`` false: a flagged trial trains on; a diverged one ends).
* ``tpe+hyperband``: ``optuna.samplers.TPESampler()`` at its defaults (seeded) with
  ``optuna.pruners.HyperbandPruner()`` at its defaults, driven by ask / report / should_prune /
  tell; a pruned trial is told PRUNED; no collapse rule. ``tpe+hyperband@grace``: the pruner with
  ``min_resource`` = the preset's grace period and ``max_resource`` = ``train/max_epochs``.
* ``random``: uniform random search; every trial runs all its epochs (a diverged one ends).
* ``hand``: the hand-run protocol, one trial at a time, each to its last epoch (no collapse
  stop, no scheduler): first the seed arms in order (without arms: the preset's own config at its
  nearest grid point); then one-factor-at-a-time passes from the best point so far: every other
  level of ``lr``, then ``clip``, then ``arch``, then ``warmup`` (the centre is the best point
  when each factor starts; a point already run is not run again); after a pass that did not
  change the best point the protocol has converged and stops (it consumes nothing more).

**Report.** Best-so-far against epochs consumed (mean over searcher seeds with a bootstrap 95%
band; ``replay_best.png``); the normalised regret area up to each budget (0: the table's best
value from the first epoch; 1: never better than the median full run; mean with a bootstrap
95% interval); the best at each budget (bootstrap 95% interval); and time-to-target as a
Kaplan-Meier curve (``replay_survival.png``): the target is the ``--target-rank``-th best grid
point's mean final objective over seeds (5th by default); every run goes on past the largest
budget until it reaches the target or ``--cap`` x max_epochs (200x), and a run that never reaches
it is censored there (not counted as reaching it at the budget). Median time-to-target with a
bootstrap 95% interval.

The service offers at most half of a study's trials as seed arms by default; a replay has no
trial limit, so every arm on the list runs first. The hand protocol runs one trial at a time
(the others two): its epochs are counted the same way.

**--live** proves the replay faithful: it runs the real service (``tune-ptycho run``, cpu preset)
restricted to the grid's points (a spec file: categorical ``search.params`` and the same seed
arms as ``search.points``; no code change) for 3 searcher seeds at 4x max_epochs, then reports
whether each live best-so-far curve and final best lies inside the replay's 95% band for
``tune-ptycho`` (the mean's bootstrap band and the 2.5-97.5% range of single runs), whether each
live trial's curve equals its recorded run, and whether an exact replay (same searcher seed, the
live training seed) proposed the same points.

Writes ``replay.md``, ``replay_best.png``, ``replay_survival.png`` and ``replay_detail.json``
(every number of the tables, per seed) into ``--out`` (``docs/bench/replay``), and the figures
(each variant's regret area at each budget) through ``bench/_results.py`` into
``docs/bench/results/replay.json`` (``--results-dir``; a ``--quick`` smoke: ``--out``).

    python bench/replay.py                        # the full table: 6 methods x 2 x 30 seeds
    python bench/replay.py --live                 # + 3 live service studies (~15 min)
    python bench/replay.py --quick --out /tmp/rq  # smoke on a tiny table (recorded if missing)
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
import warnings
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from heapq import heappop, heappush
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Protocol

import _common
import _replay
import numpy as np

OUT = _common.REPO / "docs" / "bench" / "replay"
BUDGETS = (4, 10, 25, 50)  # x train/max_epochs
CAP = 200  # x train/max_epochs: a run that has not reached the target by then is censored
HAND_FACTORS = ("lr", "clip", "arch", "warmup")
MODULES = ["search_spaces", "tune_ptycho/run/searcher.py", "tune_ptycho/run/schedulers.py",
           "tune_ptycho/run/ray_schedulers.py", "tune_ptycho/run/stoppers.py",
           "tune_ptycho/spec.py", "ptycho_model/collapse.py", "ptycho_model/presets.py",
           "ptycho_model/upstream_arms.py", "bench/replay.py", "bench/_replay.py"]

METHODS: dict[str, str] = {
    "tune-ptycho": "the service's TPE searcher + its ASHA + the collapse rule",
    "random+asha": "uniform random + the same ASHA, no collapse rule",
    "tpe+hyperband": "Optuna TPESampler() + HyperbandPruner() at defaults",
    "tpe+hyperband@grace": "Optuna TPESampler() + HyperbandPruner(min_resource=grace, "
                           "max_resource=max_epochs)",
    "random": "uniform random, every trial to its last epoch",
    "hand": "the hand protocol: arms one at a time, then one-factor-at-a-time passes",
}
STOP = "STOP"  # ray.tune.schedulers.TrialScheduler.STOP


# ------------------------------------------------------------------ the event loop
class Policy(Protocol):
    """A search method as the event loop drives it."""

    workers: int

    def start(self, number: int) -> tuple[str, Any] | None:
        """The next trial's grid point and the method's handle on it; None: nothing to run."""

    def epoch(self, handle: Any, result: dict[str, Any], last: bool) -> str | None:
        """The trial reported ``result``; the reason it ends now, or None to go on. ``last``:
        its recorded curve has no further epoch (it must end)."""


@dataclass
class TrialEnd:
    """One ended trial of a replay."""

    number: int
    point: str
    seed: int
    start: int  # epochs consumed (all trials) when it started
    end: int  # epochs consumed when its last epoch was counted
    epochs: int  # epochs it ran
    objective: float  # its score: the objective at its last epoch
    reason: str  # max_epochs | scheduler | pruned | collapse | diverged
    flag_epoch: int  # its recorded curve's first flag (0: none)


@dataclass
class Trace:
    """One replay of one method for one searcher seed."""

    method: str
    arms: bool
    seed: int
    trials: list[TrialEnd]
    consumed: int  # epochs consumed when it stopped
    hit: int  # epochs consumed when best-so-far first reached the target; 0: never (censored)

    def best_curve(self, n: int) -> np.ndarray:
        """Best-so-far at 1..n epochs consumed (inf before the first trial ended)."""
        arr = np.full(n, np.inf)
        for t in self.trials:
            if t.end <= n:
                arr[t.end - 1] = min(arr[t.end - 1], t.objective)
        return np.minimum.accumulate(arr)


@dataclass
class _Running:
    number: int
    point: str
    seed: int
    handle: Any
    curve: _replay.Curve
    start: int
    epoch: int = 0


class EventLoop:
    """``policy.workers`` trials at a time on the table's curves, one epoch per event, in time
    order (ties: the order the events were queued); a freed worker starts the next trial at
    once. ``train_seed``: every trial's training seed (default: uniform over the table's)."""

    def __init__(self, policy: Policy, table: _replay.Table, seed_rng: np.random.Generator,
                 clock: str = "epoch", train_seed: int | None = None):
        if clock not in ("epoch", "seconds"):
            raise ValueError(f"clock={clock!r} must be 'epoch' or 'seconds'")
        self.policy, self.table, self.seed_rng = policy, table, seed_rng
        self.clock, self.train_seed = clock, train_seed
        self.heap: list[tuple[float, int, int]] = []
        self.running: dict[int, _Running] = {}
        self.ended: list[TrialEnd] = []
        self.started = self.consumed = self.queued = 0

    def _queue(self, now: float, w: int) -> None:
        """Queue worker ``w``'s next epoch, which ends after its duration."""
        r = self.running[w]
        c, e = r.curve, r.epoch + 1
        self.queued += 1
        heappush(self.heap, (now + (1.0 if self.clock == "epoch" else max(c.epoch_s[e - 1],
                                                                             1e-6)),
                             self.queued, w))

    def _launch(self, w: int, now: float) -> None:
        got = self.policy.start(self.started)
        if got is None:
            return
        point, handle = got
        seed = (self.train_seed if self.train_seed is not None
                else int(self.seed_rng.choice(self.table.seeds)))
        self.running[w] = _Running(self.started, point, seed, handle,
                                   self.table.curve(point, seed), start=self.consumed)
        self.started += 1
        self._queue(now, w)

    def _step(self) -> tuple[float, int, TrialEnd | None]:
        """Count the next epoch and tell the policy; (time, worker, the trial if it ended)."""
        now, _, w = heappop(self.heap)
        r = self.running[w]
        r.epoch += 1
        self.consumed += 1
        last = r.epoch == r.curve.epochs
        reason = self.policy.epoch(r.handle, r.curve.result(r.epoch), last)
        if reason is None and last:
            raise RuntimeError(f"{type(self.policy).__name__} did not end trial {r.number} at "
                               f"its last recorded epoch {r.epoch}")
        if reason is None:
            return now, w, None
        del self.running[w]
        end = TrialEnd(r.number, r.point, r.seed, r.start, self.consumed, r.epoch,
                       r.curve.objective[r.epoch - 1], reason, r.curve.flag_epoch)
        self.ended.append(end)
        return now, w, end

    def run(self, horizon: int, cap: int, target: float | None) -> tuple[int, int]:
        """Until ``horizon`` epochs are consumed and the target reached (or ``cap`` epochs, or
        nothing is left to run): (epochs consumed, epochs at the target or 0)."""
        best, hit = math.inf, 0
        for w in range(self.policy.workers):
            self._launch(w, 0.0)
        while self.heap:
            now, w, end = self._step()
            if end is not None:
                best = min(best, end.objective)
                if target is not None and not hit and best <= target:
                    hit = self.consumed
            if self.consumed >= cap or (self.consumed >= horizon and (target is None or hit)):
                break
            if end is None:
                self._queue(now, w)
            else:
                self._launch(w, now)
        return self.consumed, hit


def simulate(policy: Policy, table: _replay.Table, seed_rng: np.random.Generator, *,
             horizon: int, cap: int, target: float | None, clock: str = "epoch",
             train_seed: int | None = None) -> tuple[list[TrialEnd], int, int]:
    """Run ``policy`` on ``table`` (:class:`EventLoop`): (ended trials, epochs consumed, epochs
    at the target or 0)."""
    loop = EventLoop(policy, table, seed_rng, clock, train_seed)
    consumed, hit = loop.run(horizon, cap, target)
    return loop.ended, consumed, hit


# ------------------------------------------------------------------ the methods
class TuneLoop:
    """Tune's controller over a searcher, a trial scheduler (or none) and a stopper, as Ray 2.60's
    ``TuneController._process_trial_result`` and ``stop_trial`` call them."""

    def __init__(self, searcher: Any, scheduler: Any, stopper: Callable[[str, dict], bool],
                 max_epochs: int, workers: int = 2):
        self.searcher, self.scheduler, self.stopper = searcher, scheduler, stopper
        self.max_epochs, self.workers = max_epochs, workers

    def start(self, number: int) -> tuple[str, Any] | None:
        trial = SimpleNamespace(trial_id=f"trial_{number:05d}", storage=None)
        point = self.searcher.suggest(trial.trial_id)
        if point is None:
            return None
        if self.scheduler is not None:
            self.scheduler.on_trial_add(None, trial)
        return point, trial

    def epoch(self, trial: Any, result: dict[str, Any], last: bool) -> str | None:
        reason = None
        if self.stopper(trial.trial_id, result):
            reason = "diverged" if result["diverged"] else "collapse"
        elif self.scheduler is not None and \
                self.scheduler.on_trial_result(None, trial, result) == STOP:
            reason = "max_epochs" if result["epoch"] >= self.max_epochs else "scheduler"
        if reason is None:
            self.searcher.on_trial_result(trial.trial_id, result)
        if reason is None and not last:
            return None
        if self.scheduler is not None:
            self.scheduler.on_trial_complete(None, trial, result)
        self.searcher.on_trial_complete(trial.trial_id, result)
        return reason or ("diverged" if result["diverged"] else "max_epochs")


class ServiceSearch:
    """The service's searcher (``ResumableOptunaSearch`` with ``make_sampler``), built as
    ``tune_ptycho.run.tuner.make_searcher`` builds it but on an in-memory study; it proposes grid
    points."""

    def __init__(self, spec: Any, points: _replay.SpacePoints, arms: list[dict[str, Any]],
                 seed: int):
        from ptycho_model import names
        from search_spaces import make_sampler
        from tune_ptycho.run.searcher import ResumableOptunaSearch

        s = spec.search
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.search = ResumableOptunaSearch(
                space=spec.space, metric=names.OBJECTIVE, mode=names.MODE,
                points_to_evaluate=arms or None,
                sampler=make_sampler(seed, s.n_startup_trials, s.collapse_aware),
                study_name="replay", max_epochs=spec.run.train.max_epochs)
        self.points = points

    def suggest(self, trial_id: str) -> str | None:
        from ptycho_model.config import flatten

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            config = self.search.suggest(trial_id)
        return None if config is None else self.points.point(flatten(config))

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        self.search.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict[str, Any]) -> None:
        self.search.on_trial_complete(trial_id, result)


class RandomSearch:
    """The arms first, then grid points uniformly at random (with replacement)."""

    def __init__(self, points: Sequence[str], arms: Sequence[str], rng: np.random.Generator):
        self.points, self.queue, self.rng = list(points), list(arms), rng

    def suggest(self, trial_id: str) -> str:
        if self.queue:
            return self.queue.pop(0)
        return self.points[int(self.rng.integers(len(self.points)))]

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        pass

    def on_trial_complete(self, trial_id: str, result: dict[str, Any]) -> None:
        pass


class OptunaPruned:
    """An Optuna study with a pruner, driven as its docs drive one: ask, report each epoch,
    should_prune, tell (PRUNED for a pruned trial). No collapse rule; a diverged run ends."""

    workers = 2

    def __init__(self, space: Any, points: _replay.SpacePoints, arms: list[dict[str, Any]],
                 seed: int, pruner: Any):
        import optuna

        self.optuna = optuna
        # a fixed study name: HyperbandPruner puts a trial in a bracket by a hash of it
        self.study = optuna.create_study(direction="minimize", pruner=pruner,
                                         study_name="replay",
                                         sampler=optuna.samplers.TPESampler(seed=seed))
        for p in arms:
            self.study.enqueue_trial(p)
        self.space, self.points = space, points

    def start(self, number: int) -> tuple[str, Any]:
        trial = self.study.ask()
        self.space(trial)
        return self.points.point(trial.params), trial

    def epoch(self, trial: Any, result: dict[str, Any], last: bool) -> str | None:
        value, epoch = float(result["objective"]), int(result["epoch"])
        trial.report(value, epoch)
        if last or result["diverged"]:
            self.study.tell(trial, value)
            return "diverged" if result["diverged"] else "max_epochs"
        if trial.should_prune():
            self.study.tell(trial, state=self.optuna.trial.TrialState.PRUNED)
            return "pruned"
        return None


class HandProtocol:
    """The hand-run protocol (module docstring, ``hand``): one trial at a time, each to its end."""

    workers = 1

    def __init__(self, grid: _replay.Grid, first: Sequence[str],
                 factors: Sequence[str] = HAND_FACTORS):
        names = [a.name for a in grid.axes]
        unknown = [f for f in factors if f not in names]
        if unknown:
            raise ValueError(f"hand factors {unknown} are not axes of grid {grid.name!r} "
                             f"({names})")
        self.grid = grid
        self.factors = [f for f in factors if len(grid.axes[names.index(f)].levels) > 1]
        self.queue = list(dict.fromkeys(first))
        self.results: dict[str, float] = {}
        self.factor_i = 0
        self.pass_start: str | None = None

    def best(self) -> str:
        return min(self.results, key=lambda p: self.results[p])

    def _others(self, factor: str) -> list[str]:
        """The best point with every other level of ``factor``, not yet run."""
        ai = [a.name for a in self.grid.axes].index(factor)
        centre = self.grid.coord_of(self.best())
        out = []
        for j in range(len(self.grid.axes[ai].levels)):
            coord = (*centre[:ai], j, *centre[ai + 1:])
            p = self.grid.point_id(coord)
            if j != centre[ai] and p not in self.results:
                out.append(p)
        return out

    def _plan(self) -> bool:
        """Queue the next factor's points; False when a pass left the best point unchanged."""
        if self.pass_start is None:
            self.pass_start = self.best()
        while True:
            if self.factor_i == len(self.factors):
                if self.best() == self.pass_start:
                    return False
                self.pass_start, self.factor_i = self.best(), 0
            factor = self.factors[self.factor_i]
            self.factor_i += 1
            self.queue = self._others(factor)
            if self.queue:
                return True

    def start(self, number: int) -> tuple[str, Any] | None:
        while not self.queue:
            if not self.factors or not self._plan():
                return None
        point = self.queue.pop(0)
        return point, point

    def epoch(self, point: Any, result: dict[str, Any], last: bool) -> str | None:
        if not last:
            return None
        self.results[point] = float(result["objective"])
        return "diverged" if result["diverged"] else "max_epochs"


# ------------------------------------------------------------------ one replay
@dataclass
class Context:
    """What every replay of one table shares (built once per process)."""

    table: _replay.Table
    spec: Any
    points: _replay.SpacePoints
    arms: list[_replay.Arm]

    @classmethod
    def of(cls, table_path: Path, seeds: tuple[int, ...] | None = None) -> Context:
        table = _replay.Table.read(table_path, seeds=seeds)
        spec = _replay.service_spec(table.grid)
        if spec.run.train.max_epochs != table.max_epochs:
            raise ValueError(f"{table_path}: recorded at {table.max_epochs} epochs, the preset "
                             f"{table.grid.preset!r} runs {spec.run.train.max_epochs}")
        return cls(table, spec, _replay.SpacePoints.of(table.grid, spec),
                   _replay.seed_arms(table.grid))

    def arm_points(self, arms: bool) -> list[str]:
        return [a.point for a in self.arms] if arms else []

    def arm_params(self, arms: bool) -> list[dict[str, Any]]:
        return [self.points.params[p] for p in self.arm_points(arms)]


def build_policy(method: str, ctx: Context, arms: bool, seed: int,
                 rng: np.random.Generator) -> Policy:
    """The method ``method`` (one of :data:`METHODS`) for searcher seed ``seed``."""
    import optuna

    from tune_ptycho.run.schedulers import build_trial_scheduler
    from tune_ptycho.run.stoppers import CollapseStopper, collapse_stopper

    spec, grid, max_epochs = ctx.spec, ctx.table.grid, ctx.table.max_epochs
    if method == "tune-ptycho":
        searcher = ServiceSearch(spec, ctx.points, ctx.arm_params(arms), seed)
        return TuneLoop(searcher, build_trial_scheduler(spec), collapse_stopper(spec),
                        max_epochs)
    if method == "random+asha":
        return TuneLoop(RandomSearch(grid.points(), ctx.arm_points(arms), rng),
                        build_trial_scheduler(spec), CollapseStopper(on_collapse=False),
                        max_epochs)
    if method in ("tpe+hyperband", "tpe+hyperband@grace"):
        pruner = (optuna.pruners.HyperbandPruner() if method == "tpe+hyperband" else
                  optuna.pruners.HyperbandPruner(min_resource=spec.grace_period,
                                                 max_resource=max_epochs))
        return OptunaPruned(spec.space, ctx.points, ctx.arm_params(arms), seed, pruner)
    if method == "random":
        return TuneLoop(RandomSearch(grid.points(), ctx.arm_points(arms), rng), None,
                        CollapseStopper(on_collapse=False), max_epochs)
    if method == "hand":
        first = ctx.arm_points(arms) or [_replay.default_point(grid)]
        return HandProtocol(grid, first)
    raise ValueError(f"unknown method {method!r}; known: {', '.join(METHODS)}")


@dataclass(frozen=True)
class Job:
    table: str
    method: str
    arms: bool
    seed: int
    horizon: int
    cap: int
    target: float | None
    clock: str = "epoch"
    train_seed: int | None = None
    training_seeds: tuple[int, ...] | None = None  # of the table's; None: all


_CONTEXTS: dict[str, Context] = {}


def _quiet() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("ray.tune").setLevel(logging.ERROR)


def run_job(job: Job) -> Trace:
    """One replay (runs in a worker process: its context is built once per process)."""
    _quiet()
    key = f"{job.table}|{job.training_seeds}"
    ctx = _CONTEXTS.get(key)
    if ctx is None:
        ctx = _CONTEXTS[key] = Context.of(Path(job.table), job.training_seeds)
    stream = [job.seed, zlib.crc32(job.method.encode()), int(job.arms)]
    seed_rng, search_rng = (np.random.default_rng(s)
                            for s in np.random.SeedSequence(stream).spawn(2))
    policy = build_policy(job.method, ctx, job.arms, job.seed, search_rng)
    trials, consumed, hit = simulate(policy, ctx.table, seed_rng, horizon=job.horizon,
                                     cap=job.cap, target=job.target, clock=job.clock,
                                     train_seed=job.train_seed)
    return Trace(job.method, job.arms, job.seed, trials, consumed, hit)


def run_jobs(jobs: list[Job], workers: int) -> list[Trace]:
    """Every job, in ``workers`` processes (0: in this one), in the jobs' order."""
    if workers <= 0:
        return [run_job(j) for j in jobs]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(run_job, jobs, chunksize=1))


# ------------------------------------------------------------------ statistics
def bootstrap_mean(values: np.ndarray, n_boot: int, rng: np.random.Generator
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, 2.5%, 97.5%) over axis 0 (the searcher seeds), by resampling the seeds."""
    values = np.asarray(values, dtype=float)
    idx = rng.integers(0, len(values), size=(n_boot, len(values)))
    means = values[idx].mean(axis=1)
    return values.mean(axis=0), np.percentile(means, 2.5, axis=0), np.percentile(means, 97.5,
                                                                                  axis=0)


def regret_area(curve: np.ndarray, floor: float, ref: float) -> float:
    """Mean normalised regret over the curve's epochs: (best - floor) / (ref - floor), cut to
    [0, 1]; 1 before the first trial ended."""
    r = np.clip((curve - floor) / max(ref - floor, 1e-12), 0.0, 1.0)
    return float(np.where(np.isfinite(curve), r, 1.0).mean())


def kaplan_meier(times: Sequence[float], events: Sequence[bool]) -> tuple[np.ndarray, np.ndarray]:
    """The product-limit estimate: (event times, survival just after each)."""
    t, e = np.asarray(times, dtype=float), np.asarray(events, dtype=bool)
    out_t, out_s, s = [0.0], [1.0], 1.0
    for u in np.unique(t[e]):
        at_risk = int((t >= u).sum())
        s *= 1.0 - int(((t == u) & e).sum()) / at_risk
        out_t.append(float(u))
        out_s.append(s)
    return np.array(out_t), np.array(out_s)


def km_median(times: Sequence[float], events: Sequence[bool]) -> float:
    """The first time the survival is 0.5 or less; inf when it never is (too many censored)."""
    t, s = kaplan_meier(times, events)
    below = np.nonzero(s <= 0.5)[0]
    return float(t[below[0]]) if len(below) else math.inf


def bootstrap_km_median(times: Sequence[float], events: Sequence[bool], n_boot: int,
                        rng: np.random.Generator) -> tuple[float, float]:
    t, e = np.asarray(times, dtype=float), np.asarray(events, dtype=bool)
    meds = []
    for _ in range(n_boot):
        i = rng.integers(0, len(t), len(t))
        meds.append(km_median(t[i], e[i]))
    # no interpolation: a median that is inf (never reached) stays inf
    return (float(np.percentile(meds, 2.5, method="lower")),
            float(np.percentile(meds, 97.5, method="higher")))


@dataclass
class Reference:
    """The table's reference values: its floor, the median full run, the target."""

    floor: float  # the lowest objective of any row at any epoch
    ref: float  # the median final objective over every row
    target: float
    target_point: str
    target_rank: int

    @classmethod
    def of(cls, table: _replay.Table, rank: int) -> Reference:
        scores = sorted(table.point_scores().items(), key=lambda kv: kv[1])
        rank = max(1, min(rank, len(scores)))
        finals = [c.final for c in table.curves.values()]
        point, target = scores[rank - 1]
        return cls(floor=table.floor(), ref=float(np.median(finals)), target=target,
                   target_point=point, target_rank=rank)


def variants(traces: list[Trace]) -> dict[tuple[str, bool], list[Trace]]:
    out: dict[tuple[str, bool], list[Trace]] = {}
    for t in traces:
        out.setdefault((t.method, t.arms), []).append(t)
    return out


def summarise(traces: list[Trace], ref: Reference, max_epochs: int, budgets: Sequence[int],
              cap: int, n_boot: int, seed: int = 0) -> list[dict[str, Any]]:
    """Per method and arms variant: at each budget the best and the regret area (mean, 95%
    bootstrap interval, per-seed values) and how many runs reached the target; the median
    time-to-target (Kaplan-Meier, censored at the cap) with its bootstrap interval."""
    rng = np.random.default_rng(seed)
    out = []
    for (method, arms), ts in variants(traces).items():
        row: dict[str, Any] = {"method": method, "arms": arms, "runs": len(ts), "budgets": {}}
        for b in budgets:
            n = b * max_epochs
            curves = np.array([t.best_curve(n) for t in ts])
            finals = curves[:, -1]
            areas = np.array([regret_area(c, ref.floor, ref.ref) for c in curves])
            entry: dict[str, Any] = {"epochs": n, "reached": int(sum(0 < t.hit <= n for t in ts))}
            for name, vals in (("best", finals), ("area", areas)):
                if np.all(np.isfinite(vals)):
                    m, lo, hi = bootstrap_mean(vals, n_boot, rng)
                    entry[name] = {"mean": float(m), "lo": float(lo), "hi": float(hi),
                                   "values": [float(v) for v in vals]}
                else:
                    entry[name] = {"mean": math.inf, "lo": math.inf, "hi": math.inf,
                                   "values": [float(v) for v in vals],
                                   "note": "some runs ended no trial by this budget"}
            row["budgets"][str(b)] = entry
        times = [t.hit if t.hit else t.consumed for t in ts]
        events = [bool(t.hit) for t in ts]
        lo, hi = bootstrap_km_median(times, events, n_boot, rng)
        row["ttt"] = {"median": km_median(times, events), "lo": lo, "hi": hi,
                      "reached": int(sum(events)), "cap": cap * max_epochs,
                      "times": times, "events": events}
        out.append(row)
    return out


# ------------------------------------------------------------------ figures
def _epoch_axis(ax: Any, max_epochs: int, budgets: Sequence[int], last: int | None = None
                ) -> None:
    """Log x with ticks at 1x, each budget (and ``last`` x) max_epochs, marked by dotted lines."""
    from matplotlib.ticker import NullFormatter

    marks = sorted({1, *budgets, *([last] if last else [])})
    for b in budgets:
        ax.axvline(b * max_epochs, color="0.7", ls=":", lw=0.8)
    ax.set_xscale("log")
    ax.set_xticks([m * max_epochs for m in marks])
    ax.set_xticklabels([f"{m * max_epochs}\n{m}x" for m in marks], fontsize=8)
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("epochs consumed (all trials)")


COLORS = {"tune-ptycho": "C3", "random+asha": "C0", "tpe+hyperband": "C2",
          "tpe+hyperband@grace": "C8", "random": "C7", "hand": "C4"}


def plot_best(traces: list[Trace], max_epochs: int, horizon: int, budgets: Sequence[int],
              ref: Reference, n_boot: int, path: Path) -> None:
    """Best-so-far (mean, bootstrap 95% band) against epochs consumed, log x; one panel per
    arms variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(1)
    fig, axes = plt.subplots(1, 2, figsize=(13, 5), sharey=True)
    x = np.arange(1, horizon + 1)
    for ax, arms in zip(axes, (True, False), strict=True):
        for (method, a), ts in variants(traces).items():
            if a != arms:
                continue
            curves = np.array([t.best_curve(horizon) for t in ts])
            ok = np.all(np.isfinite(curves), axis=0)  # x where every run has a best
            if not ok.any():
                continue
            m, lo, hi = bootstrap_mean(curves[:, ok], n_boot, rng)
            ax.plot(x[ok], m, color=COLORS.get(method), label=method, lw=1.6)
            ax.fill_between(x[ok], lo, hi, color=COLORS.get(method), alpha=0.18, lw=0)
        ax.axhline(ref.target, color="k", ls="--", lw=0.8,
                   label=f"target ({_ordinal(ref.target_rank)}-best point)")
        _epoch_axis(ax, max_epochs, budgets)
        ax.set_title(f"{'with' if arms else 'without'} seed arms")
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("best-so-far objective (lower is better)")
    axes[0].legend(fontsize=8)
    fig.suptitle("Replay: best-so-far vs epochs (mean over searcher seeds, bootstrap 95% band)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_survival(summary: list[dict[str, Any]], max_epochs: int, budgets: Sequence[int],
                  cap: int, path: Path) -> None:
    """Kaplan-Meier: the fraction of searches not yet at the target against epochs, log x."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 5), sharey=True)
    for ax, arms in zip(axes, (True, False), strict=True):
        for row in summary:
            if row["arms"] != arms:
                continue
            tt = row["ttt"]
            t, s = kaplan_meier(tt["times"], tt["events"])
            t = np.append(t, tt["cap"])
            s = np.append(s, s[-1])
            ax.step(np.maximum(t, max_epochs / 2), s, where="post", color=COLORS.get(row["method"]),
                    label=f"{row['method']} ({tt['reached']}/{row['runs']})")
        _epoch_axis(ax, max_epochs, budgets, cap)
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"{'with' if arms else 'without'} seed arms")
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("fraction of searches not yet at the target")
    axes[0].legend(fontsize=8)
    fig.suptitle("Time-to-target, Kaplan-Meier (censored at the cap)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ------------------------------------------------------------------ the report
def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def _ci(d: dict[str, Any], fmt: str = "{:.4g}") -> str:
    if not math.isfinite(d["mean"]):
        return "- (no trial ended in some runs)"
    return f"{fmt.format(d['mean'])} [{fmt.format(d['lo'])}, {fmt.format(d['hi'])}]"


def _epochs(x: float, max_epochs: int) -> str:
    return "never (censored)" if not math.isfinite(x) else f"{x:.0f} ({x / max_epochs:.1f}x)"


def markdown(summary: list[dict[str, Any]], ctx: Context, ref: Reference,
             settings: dict[str, Any], live: dict[str, Any] | None) -> str:
    """replay.md: how the replay was made, then its tables."""
    t, grid, me = ctx.table, ctx.table.grid, ctx.table.max_epochs
    meta = _replay.read_sidecar(t.path) or {}
    lines = ["# Replay benchmark: search efficiency per epoch", "",
             f"Generated by `python bench/replay.py` on {time.strftime('%Y-%m-%d %H:%M %Z')} "
             "(the method, its limits and the exact definitions are in its docstring).", "",
             "## The table", "",
             f"* table: `{_rel(t.path)}`: grid `{grid.name}` on preset `{grid.preset}`, "
             f"{len(grid.points())} points x {len(grid.seeds)} training seeds "
             f"({len(t.curves)} runs of {me} epochs, collapse/stop false)",
             "* axes: " + "; ".join(f"{a.name} = {', '.join(a.labels())}" for a in grid.axes),
             "* fixed: " + ", ".join(f"{k}={v}" for k, v in grid.fixed.items()),
             "* left out: " + "; ".join(grid.left_out)]
    if meta.get("sessions"):
        s = meta["sessions"]
        lines.append(f"* recorded: {len(s)} session(s) from {s[0]['started']}, commit "
                     f"{s[-1]['commit'][:10]}, {s[-1]['cpu']} ({s[-1]['cores']} cores), "
                     f"{s[-1]['workers']} runs at a time; total wall "
                     f"{meta.get('total_wall_s', 0) / 60:.0f} min")
    flagged = sum(1 for c in t.curves.values() if c.flag_epoch)
    lines += [f"* runs with a collapse or divergence flag: {flagged} of {len(t.curves)}",
              f"* reference values: floor (lowest objective of any run at any epoch) "
              f"{ref.floor:.4g}; median final objective {ref.ref:.4g}; target "
              f"{ref.target:.4g} = the {_ordinal(ref.target_rank)}-best point's mean final "
              f"objective (`{ref.target_point}`)",
              "* normalised regret area up to a budget B: the mean over epochs 1..B of "
              "(best-so-far - floor) / (median final - floor), cut to [0, 1] and 1 before any "
              "trial ended; lower is better", "",
             "## Seed arms (the same list for every method)", "",
             "Run first by every method. The service offers at most half of a study's trials "
             "as arms by default (4 of the cpu preset's 8); a replay has no trial limit, so all "
             "of them are run.", "",
             "| # | arm | grid point | moved to the grid |", "|---|---|---|---|"]
    for i, a in enumerate(ctx.arms, 1):
        lines.append(f"| {i} | {a.name} | `{a.point}` | {'; '.join(a.moved) or '-'} |")
    lines += ["", f"Without arms the hand protocol starts from the preset's own config at "
              f"`{_replay.default_point(grid)}`.", "", "## Methods", ""]
    lines += [f"* `{m}`: {d}" for m, d in METHODS.items() if m in settings["methods"]]
    lines += ["", "Settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()
                                          if k not in ("methods",)), ""]
    for b in settings["budgets"]:
        lines += [f"## Budget {b}x max_epochs ({b * me} epochs)", "",
                  "| method | seed arms | best at budget, mean [95% CI] | normalised regret "
                  "area [95% CI] | reached target |", "|---|---|---|---|---|"]
        for row in summary:
            e = row["budgets"][str(b)]
            lines.append(f"| {row['method']} | {'yes' if row['arms'] else 'no'} | "
                         f"{_ci(e['best'])} | {_ci(e['area'], '{:.3f}')} | "
                         f"{e['reached']}/{row['runs']} |")
        lines.append("")
    lines += [f"## Time to target (objective <= {ref.target:.4g}), Kaplan-Meier", "",
              f"Runs go on to the target or {settings['cap']}x max_epochs; those that never "
              "reach it are censored there.", "",
              "| method | seed arms | reached | median epochs [95% CI] |", "|---|---|---|---|"]
    for row in summary:
        tt = row["ttt"]
        lo, hi = _epochs(tt["lo"], me), _epochs(tt["hi"], me)
        lines.append(f"| {row['method']} | {'yes' if row['arms'] else 'no'} | "
                     f"{tt['reached']}/{row['runs']} | {_epochs(tt['median'], me)} "
                     f"[{lo}, {hi}] |")
    lines += ["", "![best-so-far](replay_best.png)", "", "![time to target](replay_survival.png)",
              ""]
    if live:
        lines += live_markdown(live)
    return "\n".join(lines) + "\n"


def _rel(p: Path) -> str:
    try:
        return str(Path(p).resolve().relative_to(_common.REPO))
    except ValueError:
        return str(p)


# ------------------------------------------------------------------ --live
def proposal_order(exp: Path, rows_by_trial: dict[str, list[dict[str, Any]]]) -> dict[str, int]:
    """Tune trial id -> the order the searcher proposed it: the experiment's Optuna study numbers
    its trials as asked (each carries its ``tune_trial_id``); without the study, the order the
    trials started in (two trials starting together may then swap)."""
    from tune_ptycho.analysis.load import load_experiment

    study = load_experiment(exp, with_study=True).study
    if study is not None:
        asked = {t.user_attrs.get("tune_trial_id"): t.number for t in study.trials}
        if all(tid in asked for tid in rows_by_trial):
            return {tid: asked[tid] for tid in rows_by_trial}
    started = sorted((rows[0].get("trial_start_ts", rows[0]["report_ts"]), tid)
                     for tid, rows in rows_by_trial.items() if rows)
    return {tid: n for n, (_, tid) in enumerate(started)}


def live_trace(rows_by_trial: dict[str, list[dict[str, Any]]], points: _replay.SpacePoints,
               order: dict[str, int]) -> list[TrialEnd]:
    """A live study's trials as the replay counts them: every reported epoch in report order
    is one epoch consumed; a trial ends at its last row; ``order``: its proposal number."""
    from ptycho_model.config import flatten

    events = sorted(((r["report_ts"], tid, r) for tid, rows in rows_by_trial.items()
                     for r in rows), key=lambda x: x[0])
    position: dict[tuple[str, int], int] = {}
    for i, (_, tid, r) in enumerate(events, 1):
        position[(tid, int(r["epoch"]))] = i
    out = []
    for tid, rows in rows_by_trial.items():
        if not rows:
            continue
        last = rows[-1]
        point = points.point(flatten(rows[0].get("config", {})))
        flag = next((int(r["epoch"]) for r in rows if r.get("collapsed") or r.get("diverged")), 0)
        out.append(TrialEnd(order[tid], point, -1, position[(tid, int(rows[0]["epoch"]))] - 1,
                            position[(tid, int(last["epoch"]))], int(last["epoch"]),
                            float(last["objective"]), "live", flag))
    return sorted(out, key=lambda t: t.end)


def curve_fidelity(rows_by_trial: dict[str, list[dict[str, Any]]], ctx: Context,
                   train_seed: int) -> list[dict[str, Any]]:
    """Per live trial: the largest relative difference of its objective from the recorded run
    of its point at the live training seed, epoch by epoch."""
    from ptycho_model.config import flatten

    out = []
    for tid, rows in rows_by_trial.items():
        if not rows:
            continue
        point = ctx.points.point(flatten(rows[0].get("config", {})))
        rec = ctx.table.curve(point, train_seed)
        diffs = [abs(float(r["objective"]) - rec.objective[int(r["epoch"]) - 1]) /
                 max(abs(rec.objective[int(r["epoch"]) - 1]), 1e-12) for r in rows]
        out.append({"trial": tid, "point": point, "epochs": len(rows),
                    "max_rel_diff": max(diffs)})
    return out


def run_live(ctx: Context, args: argparse.Namespace, replay: list[Trace]) -> dict[str, Any]:
    """Run the real service on the grid for ``--live-seeds`` searcher seeds and compare."""
    from _common import LocalRay, read_trials

    grid, me = ctx.table.grid, ctx.table.max_epochs
    budget = args.live_budget * me
    trials = args.live_trials or math.ceil(budget / ctx.spec.grace_period) + 2
    arms = ctx.arm_params(True)
    sets = [f"{k}={v}" for k, v in grid.fixed.items()]
    train_seed = ctx.spec.run.train.seed
    rng = np.random.default_rng(2)
    mine = [t for t in replay if t.method == "tune-ptycho" and t.arms]
    if not mine:
        raise SystemExit("--live compares with the replay of tune-ptycho with arms: keep it in "
                         "--methods")
    curves = np.array([t.best_curve(budget) for t in mine])
    report: dict[str, Any] = {"budget_epochs": budget, "trials": trials, "train_seed": train_seed,
                              "seeds": []}
    with LocalRay(num_cpus=2) as ray_env:
        for s in range(args.live_seeds):
            spec_path = ray_env.root / f"live_spec_s{s}.json"  # removed with Ray's temp dir
            spec_path.write_text(json.dumps(_replay.spec_file(grid, s, arms, trials), indent=1))
            argv = ["--spec", str(spec_path), *[x for kv in sets for x in ("--set", kv)]]
            t0 = time.perf_counter()
            code, wall, exp = ray_env.run_cli(f"live-s{s}", argv)
            if code != 0:
                raise SystemExit(f"live study seed {s} exited {code}")
            rows = read_trials(exp)
            live = live_trace(rows, ctx.points, proposal_order(exp, rows))
            exact = run_job(Job(str(ctx.table.path), "tune-ptycho", True, s, budget,
                                budget, None, args.clock, train_seed,
                                training_seeds=tuple(ctx.table.seeds)))
            report["seeds"].append(compare_live(s, live, exact, curves, budget, rng,
                                                curve_fidelity(rows, ctx, train_seed),
                                                wall or time.perf_counter() - t0))
    return report


def compare_live(seed: int, live: list[TrialEnd], exact: Trace, curves: np.ndarray,
                 budget: int, rng: np.random.Generator, fidelity: list[dict[str, Any]],
                 wall: float) -> dict[str, Any]:
    """One live study against the replay, up to the budget or the live study's last epoch,
    whichever comes first: its best-so-far curve inside the mean's bootstrap band and inside the
    single runs' 2.5-97.5% range (their extremes for few runs), epoch by epoch where both exist,
    and its final best inside that range. The points it ran, in the order Tune started them,
    against the exact replay's (same searcher seed, the live training seed)."""
    lt = Trace("live", True, seed, live, max((t.end for t in live), default=0), 0)
    n = max(1, min(budget, lt.consumed))
    lc, curves = lt.best_curve(n), curves[:, :n]
    ok = np.isfinite(lc) & np.all(np.isfinite(curves), axis=0)
    x = lc[ok]
    inside = {"inside_mean_band": math.nan, "inside_run_range": math.nan}
    if ok.any():
        _, lo, hi = bootstrap_mean(curves[:, ok], 2000, rng)
        plo = np.percentile(curves[:, ok], 2.5, axis=0, method="lower")
        phi = np.percentile(curves[:, ok], 97.5, axis=0, method="higher")
        inside = {"inside_mean_band": float(np.mean((x >= lo) & (x <= hi))),
                  "inside_run_range": float(np.mean((x >= plo) & (x <= phi)))}
    final, finals = float(lc[-1]), curves[:, -1]
    return {
        "seed": seed, "wall_s": round(wall, 1), "epochs_live": lt.consumed,
        "epochs_compared_to": n, "final_best": final,
        "points_live": [t.point for t in sorted(live, key=lambda t: t.number)],
        "points_exact_replay": [t.point for t in sorted(exact.trials, key=lambda t: t.number)],
        "final_best_exact_replay": float(exact.best_curve(n)[-1]),
        "epochs_compared": int(ok.sum()), **inside,
        "final_inside_run_range": bool(np.percentile(finals, 2.5, method="lower") <= final
                                       <= np.percentile(finals, 97.5, method="higher")),
        "max_curve_rel_diff": max((f["max_rel_diff"] for f in fidelity), default=math.nan),
        "trials": fidelity,
    }


def live_markdown(live: dict[str, Any]) -> list[str]:
    lines = ["## Live check: the real service on the grid", "",
             f"`tune-ptycho run` restricted to the grid, seed arms as `search.points`, "
             f"{live['trials']} trials, compared up to {live['budget_epochs']} epochs consumed "
             "(or the live study's last) with the replay of `tune-ptycho` with arms (training "
             f"seed {live['train_seed']} live). The run range is the 2.5-97.5% range of single "
             "replay runs, the test for one run; the mean band is narrower by design. The exact "
             "replay uses the live searcher and training seeds; its interleaving follows "
             "`--clock`, the live one the real timings.", "",
             "| searcher seed | epochs | final best live | exact replay | inside run range "
             "(epochs) | inside mean band | final inside run range | max curve diff vs table | "
             "same points as exact replay |", "|---|---|---|---|---|---|---|---|---|"]
    for s in live["seeds"]:
        n = min(len(s["points_live"]), len(s["points_exact_replay"]))
        same = s["points_live"][:n] == s["points_exact_replay"][:n]
        lines.append(f"| {s['seed']} | {s['epochs_compared_to']} | {s['final_best']:.4g} | "
                     f"{s['final_best_exact_replay']:.4g} | {s['inside_run_range']:.0%} | "
                     f"{s['inside_mean_band']:.0%} | {s['final_inside_run_range']} | "
                     f"{s['max_curve_rel_diff']:.2g} | {same} (first {n}) |")
    return lines + [""]


# ------------------------------------------------------------------ main
def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", type=Path, default=None,
                    help="the recorded table (default docs/bench/replay/table.jsonl; --quick: "
                         "OUT/table.jsonl, recorded when missing)")
    ap.add_argument("--out", type=Path, default=None,
                    help="replay.md and the figures (default docs/bench/replay; --quick: needed)")
    ap.add_argument("--seeds", type=int, default=30, help="searcher seeds per method")
    ap.add_argument("--training-seeds", default=None,
                    help="replay only these of the table's training seeds, comma-separated "
                         "(e.g. 0 while the second seed is still being recorded; default all)")
    ap.add_argument("--budgets", default=",".join(map(str, BUDGETS)),
                    help="budgets in x max_epochs, comma-separated")
    ap.add_argument("--cap", type=int, default=CAP,
                    help="time-to-target: runs stop here (x max_epochs), censored")
    ap.add_argument("--target-rank", type=int, default=5,
                    help="the target is this best grid point's mean final objective")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--clock", choices=("epoch", "seconds"), default="epoch")
    ap.add_argument("--workers", type=int, default=2, help="processes (0: this one)")
    ap.add_argument("--bootstrap", type=int, default=2000)
    ap.add_argument("--traces", action="store_true", help="also write every trial as JSON")
    ap.add_argument("--results-dir", type=Path, default=None,
                    help="where bench/_results.py's JSON goes (default docs/bench/results; "
                         "--quick: --out)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke: 3 seeds, budgets 4,10, cap 20x, target rank 2, in-process")
    ap.add_argument("--live", action="store_true", help="also run the real service (see doc)")
    ap.add_argument("--live-seeds", type=int, default=3)
    ap.add_argument("--live-budget", type=int, default=4, help="x max_epochs")
    ap.add_argument("--live-trials", type=int, default=0,
                    help="num_samples of each live study (0: enough for the budget)")
    args = ap.parse_args(argv)
    if args.quick:
        if args.out is None:
            ap.error("--quick needs --out (a smoke never writes into docs/)")
        args.seeds, args.budgets, args.cap, args.target_rank = 3, "4,10", 20, 2
        args.workers, args.bootstrap = 0, 200
    return args


def budgets_of(text: str) -> list[int]:
    try:
        out = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise SystemExit(f"--budgets {text!r}: give whole numbers, comma-separated") from None
    if not out or out[0] < 1:
        raise SystemExit(f"--budgets {text!r}: each must be >= 1")
    return out


def quick_table(args: argparse.Namespace) -> Path:
    table = args.table or args.out / "table.jsonl"
    if not table.exists():
        import replay_record

        replay_record.record(_replay.QUICK_GRID, table, workers=2)
    return table


def main(argv: list[str] | None = None) -> None:
    from _results import load_average

    started, load = time.perf_counter(), load_average()
    args = parse(argv)
    budgets = budgets_of(args.budgets)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise SystemExit(f"--methods: unknown {bad}; known: {', '.join(METHODS)}")
    if args.cap < budgets[-1]:
        raise SystemExit(f"--cap {args.cap} must be >= the largest budget {budgets[-1]}")
    out = args.out or OUT
    table_path = quick_table(args) if args.quick else (args.table or _replay.TABLE)
    if args.seeds < 30 and not args.quick:
        print(f"WARNING: --seeds {args.seeds}: fewer than 30 searcher seeds per method; the "
              "bands are wide and the result is not the benchmark's", flush=True)
    _quiet()
    training_seeds = (None if args.training_seeds is None else
                      tuple(int(x) for x in args.training_seeds.split(",")))
    try:
        ctx = Context.of(table_path, training_seeds)
    except ValueError as e:
        raise SystemExit(str(e)) from None
    out.mkdir(parents=True, exist_ok=True)
    _CONTEXTS[f"{table_path}|{training_seeds}"] = ctx
    me = ctx.table.max_epochs
    ref = Reference.of(ctx.table, args.target_rank)
    settings = {"table": _rel(table_path), "grid": ctx.table.grid.name, "seeds": args.seeds,
                "budgets": budgets, "cap": args.cap, "target_rank": ref.target_rank,
                "target": ref.target, "clock": args.clock, "workers_simulated": 2,
                "training_seed": "uniform over the recorded seeds",
                "training_seeds": list(ctx.table.seeds), "methods": methods,
                "bootstrap": args.bootstrap}
    print(f"replaying {len(methods)} methods x 2 arms variants x {args.seeds} seeds on "
          f"{_rel(table_path)} ({len(ctx.table.curves)} runs, {me} epochs); target "
          f"{ref.target:.4g} ({_ordinal(ref.target_rank)}-best point)", flush=True)
    jobs = [Job(str(table_path), m, arms, s, budgets[-1] * me, args.cap * me, ref.target,
                args.clock, training_seeds=training_seeds)
            for m in methods for arms in (True, False) for s in range(args.seeds)]
    traces = run_jobs(jobs, args.workers)
    print(f"{len(traces)} replays in {time.perf_counter() - started:.0f} s", flush=True)
    summary = summarise(traces, ref, me, budgets, args.cap, args.bootstrap)
    plot_best(traces, me, budgets[-1] * me, budgets, ref, min(args.bootstrap, 500),
              out / "replay_best.png")
    plot_survival(summary, me, budgets, args.cap, out / "replay_survival.png")
    live = run_live(ctx, args, traces) if args.live else None
    (out / "replay.md").write_text(markdown(summary, ctx, ref, settings, live))
    detail = {"settings": settings, "reference": asdict(ref), "summary": summary, "live": live}
    (out / "replay_detail.json").write_text(json.dumps(detail, indent=1, default=float) + "\n")
    if args.traces:
        (out / "traces.json").write_text(json.dumps([asdict(t) for t in traces]) + "\n")
    print_summary(summary, budgets, me)
    publish(summary, settings, budgets, table_path, args, out, started, load)


def print_summary(summary: list[dict[str, Any]], budgets: Sequence[int], me: int) -> None:
    rows = []
    for r in summary:
        rows.append([r["method"], "yes" if r["arms"] else "no",
                     *[_ci(r["budgets"][str(b)]["area"], "{:.3f}") for b in budgets],
                     _epochs(r["ttt"]["median"], me)])
    print(_common.table(["method", "arms", *[f"regret area @{b}x" for b in budgets],
                         "median time-to-target"], rows))


def publish(summary: list[dict[str, Any]], settings: dict[str, Any], budgets: Sequence[int],
            table_path: Path, args: argparse.Namespace, out: Path, started: float,
            load: list[float]) -> None:
    """The figures through ``bench/_results.py``: each variant's regret area at each budget
    (per-seed repeats); a quick run writes into ``--out``, never docs/bench/results."""
    from _results import figure, publish as write

    figures = []
    for r in summary:
        for b in budgets:
            area = r["budgets"][str(b)]["area"]
            if all(math.isfinite(v) for v in area["values"]):
                figures.append(figure(f"{r['method']}{' +arms' if r['arms'] else ''} regret "
                                      f"area @{b}x", area["values"], unit="",
                                      note="normalised regret area (0 best, 1 median run)"))
    modules = list(MODULES)
    if Path(table_path).resolve().is_relative_to(_common.REPO):
        modules.append(_rel(table_path))
    write("bench/replay.py", modules, settings, figures, load_start=load, started=started,
          quick=args.quick, out_dir=args.results_dir or (out if args.quick else None))


if __name__ == "__main__":
    main()
