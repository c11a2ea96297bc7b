"""Synchronous HyperBand whose stops reproduce: across runs, and across a kill and ``resume``.

ASHA promotes a trial the moment it reaches a rung, against whichever trials reached the rung
before it, so the same study can stop different trials on different runs. Ray's synchronous
``HyperBandScheduler`` instead pauses the members of a bracket at each rung until all of them have
reached it, then keeps the best 1/eta by their values *at the rung* (Li et al., "Hyperband", JMLR
2018). Given the same trials in the same order, its stops then depend on the values alone. Two
things in Ray's class still depend on timing, or break on restore; :class:`ReproducibleHyperBand`
fixes both:

* **Bracket membership.** Ray fills a bracket until its *live* trials number ``n``. A member the
  collapse rule ended frees a place, and whether the next trial takes it depends on when the
  searcher created that trial. Here a bracket takes its first ``n0`` members, in the order the
  searcher created them (the counter in Tune's ``experiment_tag``), and no more.
* **Restore.** Ray saves no scheduler state. ``Tuner.restore`` re-adds every trial, finished ones
  too, newest result first, and every unfinished one as PENDING. A bracket then waits for members
  that will never report again, or starts a trial that was paused at an undecided rung: it trains
  past the rung and is judged on a later epoch. Here the trials re-enter their brackets in creation
  order, and each bracket's halvings are replayed from the trials' own ``result.json`` (a rung is
  decided on each member's row at the rung's epoch, exactly the row the live run decided on). The
  trials the replay stops are stopped; those waiting at an undecided rung are paused again.

What still depends on timing is the searcher, not this scheduler: TPE conditions on whichever
trials have finished when it is asked (docs/design.md, "Schedulers").
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ray.tune.experiment import Trial
from ray.tune.schedulers import HyperBandScheduler
from ray.tune.schedulers.hyperband import _Bracket
from ray.tune.schedulers.trial_scheduler import TrialScheduler

log = logging.getLogger(__name__)

ENDED = (Trial.TERMINATED, Trial.ERROR)


class _OrderedBracket(_Bracket):
    """A bracket full once ``n0`` trials joined it, whatever became of them since."""

    def filled(self) -> bool:
        return len(self._all_trials) >= self._n0

    def cleanup_full(self, tune_controller) -> None:
        # Ray's stops the PAUSED members only; one still saving its pause checkpoint would stay
        # PAUSED for good (the halving itself handles both)
        for trial in self.current_trials():
            if trial.status == Trial.PAUSED or trial.is_saving:
                tune_controller.stop_trial(trial)  # the proxy below: after the save, recorded


class _StopsAfterSaves:
    """The controller as the halving sees it, with one change: a trial still saving its pause
    checkpoint is stopped once the save is done, not during it. Tune's save callback then pauses
    a trial already stopped, which stays PAUSED for good (seen on Ray 2.60 at ~1 run in 3)."""

    def __init__(self, controller, later: list[Trial]) -> None:
        self._controller, self._later = controller, later

    def stop_trial(self, trial: Trial) -> None:
        if trial.is_saving:
            if trial not in self._later:
                self._later.append(trial)
        else:
            stop_and_record(self._controller, trial)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._controller, name)


def stop_and_record(tune_controller, trial: Trial) -> None:
    """``stop_trial``, and the TERMINATED status in Tune's next snapshot. Tune re-serializes a
    trial it stopped only if it had an actor to stop; a paused one (no actor) would be saved as
    PAUSED, and ``resume`` would run it again."""
    tune_controller.stop_trial(trial)
    controller = getattr(tune_controller, "_tune_controller", tune_controller)  # Tune's wrapper
    mark = getattr(controller, "_mark_trial_to_checkpoint", None)
    if mark is not None:
        mark(trial)


def creation_index(trial: Trial) -> int:
    """The searcher's running count of the trial (``"7_..."`` -> 7); Tune persists it."""
    head = (trial.experiment_tag or "").split("_", 1)[0]
    return int(head) if head.isdigit() else 0


class ReproducibleHyperBand(HyperBandScheduler):
    """Ray's ``HyperBandScheduler`` with ordered brackets and a restore that replays them.

    ``stopped_by_rule(trial_id, row)``: whether the run's stopper ended a trial on this result
    (the service passes its ``CollapseStopper``, which asks ``ptycho_model.collapse.should_stop``,
    the one stop decision). Tune does not show the scheduler a result its stopper acts on, so
    such a trial left its bracket at the epoch before its last row."""

    def __init__(self, *, stopped_by_rule: Callable[[str, dict], bool] | None = None,
                 grace_period: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._stopped_by_rule = stopped_by_rule
        self._grace = grace_period
        self._unassigned: list[Trial] = []
        self._deciding = False
        self._stop_after_save: list[Trial] = []

    # -- bracket membership ---------------------------------------------------------------

    def _create_bracket(self, s: int) -> _Bracket:
        r0, halvings = first_rung(self._get_r0(s), s, self._grace, self._max_t_attr, self._eta)
        return _OrderedBracket(time_attr=self._time_attr, max_trials=self._get_n0(s),
                               init_t_attr=r0, max_t_attr=self._max_t_attr,
                               eta=self._eta, s=halvings, stop_last_trials=self._stop_last_trials)

    def on_trial_add(self, tune_controller, trial: Trial) -> None:
        # Deferred until the next decision: a restore adds its trials newest first, and they
        # must enter their brackets in the order they were created.
        self._unassigned.append(trial)

    def _assign(self, tune_controller) -> None:
        if not self._unassigned:
            return
        batch = sorted(self._unassigned, key=creation_index)
        self._unassigned = []
        replay = []
        for trial in batch:
            super().on_trial_add(tune_controller, trial)
            bracket = self._trial_info[trial][0]
            if _has_run(trial, self._time_attr) and bracket not in replay:
                replay.append(bracket)
        for bracket in replay:
            self._replay(tune_controller, bracket)

    # -- every decision first places the trials added since the last one ------------------

    def choose_trial_to_run(self, tune_controller) -> Trial | None:
        self._assign(tune_controller)
        for t in [t for t in self._stop_after_save if not t.is_saving]:
            self._stop_after_save.remove(t)
            stop_and_record(tune_controller, t)
        return super().choose_trial_to_run(tune_controller)

    def _process_bracket(self, tune_controller, bracket: _Bracket) -> str:
        return super()._process_bracket(_StopsAfterSaves(tune_controller, self._stop_after_save),
                                        bracket)

    def on_trial_result(self, tune_controller, trial: Trial, result: dict) -> str:
        self._assign(tune_controller)
        action = super().on_trial_result(tune_controller, trial, result)
        if action == TrialScheduler.PAUSE and result.get(self._time_attr, 0) >= self._max_t_attr:
            # Ray would pause a trial that has run all its epochs until its bracket's others
            # have: a checkpoint and an actor restart for nothing. Nothing is decided there.
            return TrialScheduler.STOP
        return action

    def on_trial_remove(self, tune_controller, trial: Trial) -> None:
        """Ray decides a rung on a member's removal only until the bracket's first halving (its
        ``is_being_processed`` is never reset): a member the collapse rule ends after that, while
        the others wait at the next rung, would leave them paused for good. Here any removal
        that completes a rung decides it."""
        self._assign(tune_controller)
        bracket, _ = self._trial_info[trial]
        bracket.cleanup_trial(trial)
        self._decide_if_complete(tune_controller, bracket)

    def _decide_if_complete(self, tune_controller, bracket: _Bracket) -> None:
        if self._deciding or not bracket.current_trials() or not bracket.cur_iter_done():
            return
        self._deciding = True  # stopping a bad trial removes it: no decision inside a decision
        try:
            self._process_bracket(tune_controller, bracket)
        finally:
            self._deciding = False

    def debug_string(self) -> str:
        return super().debug_string() + (f"\n{len(self._unassigned)} trial(s) not yet placed"
                                         if self._unassigned else "")

    # -- restore --------------------------------------------------------------------------

    def _replay(self, tune_controller, bracket: _Bracket) -> None:
        """Rebuild ``bracket`` from its members' results, as the killed driver had it."""
        members = list(bracket._all_trials)
        rows = {t: _history(t, self._time_attr) for t in members}
        ended = {t: self._scheduler_end(t, rows[t]) for t in members if t.status in ENDED}
        live = bracket._live_trials  # trial -> the result it is judged on
        to_stop: list[Trial] = []
        while live:
            rung = bracket._cumul_r
            for t in [t for t in live if t in ended and ended[t] < rung]:
                bracket.cleanup_trial(t)  # ended (collapse rule, error) before this rung
            if not live or any(rung not in rows[t] for t in live):
                break  # a member has yet to reach the rung: it stays undecided
            for t in live:
                bracket.update_trial_stats(t, rows[t][rung])
            if bracket.finished():  # the last rung: its survivors have run out (stopped below)
                break
            good, bad = bracket.successive_halving(self._metric, self._metric_op)
            self._num_stopped += len(bad)
            for t in bad:
                bracket.cleanup_trial(t)
                if t not in ended:
                    to_stop.append(t)  # decided before the kill, never carried out
        for t in [t for t in live if t in ended]:  # ended for good after the last decided rung
            bracket.cleanup_trial(t)
        for t in live:
            if rows[t]:
                bracket.update_trial_stats(t, rows[t][max(rows[t])])
            if not bracket.continue_trial(t):  # waiting at the undecided rung, as before the kill
                tune_controller._set_trial_status(t, Trial.PAUSED)
        for t in to_stop:
            stop_and_record(tune_controller, t)
        self._decide_if_complete(tune_controller, bracket)
        log.info("hyperband: rebuilt %s from %d member(s); stopped %d", bracket, len(members),
                 len(to_stop))

    def _scheduler_end(self, trial: Trial, rows: dict[int, dict]) -> int:
        """The last epoch this scheduler saw of an ended trial."""
        if not rows:
            return 0
        last = max(rows)
        if self._stopped_by_rule is not None and self._stopped_by_rule(trial.trial_id, rows[last]):
            return last - 1
        return last


def first_rung(r0: int, s: int, grace: int, max_t: int, eta: float) -> tuple[int, int]:
    """A bracket's first rung and its number of halvings, the first rung no earlier than
    ``grace``. Ray's brackets start at ``max_t / eta**s`` whatever the schedule: at 14 epochs and
    eta 3, rungs at epochs 1 and 4, where a warmup trial is still climbing to its peak and is
    judged against trials that do not warm up (BENCHMARKS.md, early stopping). A bracket that
    would start earlier starts at the grace period instead, keeps its size, and makes only the
    halvings that still fit below ``max_t``."""
    if r0 >= grace:
        return r0, s
    first = r = min(grace, max_t)
    halvings = 0
    while r < max_t and halvings < s:
        r, halvings = min(int(r * eta), max_t), halvings + 1
    return first, halvings


def _has_run(trial: Trial, time_attr: str) -> bool:
    return trial.status in ENDED or time_attr in (trial.last_result or {})


def _history(trial: Trial, time_attr: str) -> dict[int, dict]:
    """The trial's results by epoch from its ``result.json``, read by the one reader of that file
    (the newest row of an epoch a resumed trial reported twice); empty if it never reported."""
    from ..storage.tune_files import result_rows

    try:
        rows = result_rows(trial.path, trial.storage.storage_filesystem)
    except AttributeError:  # a trial without a storage context
        return {}
    return {int(row[time_attr]): row for row in rows if time_attr in row}
