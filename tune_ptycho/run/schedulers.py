"""The trial schedulers (``scheduler/name``): what may stop a study's trials early, beside the
collapse rule (docs/design.md, "Schedulers").

:data:`TRIAL_SCHEDULERS` is the one home of their names: the spec's validation and default, the
CLI's ``--scheduler`` choices and help, the report's scheduler line, ``tune-ptycho paths`` and the
Tuner (:mod:`.tuner`) all read it. Each entry carries what differs between schedulers; adding
one is adding an entry (the registry sweep in ``tests/test_schedulers.py`` then runs it through a
tiny study with no new test).

Not to be confused with the *LR schedules* (``sched/name``,
``ptycho_model.optim.LR_SCHEDULES``), which change the learning rate inside one run. The config
paths keep both names: ``sched/`` is the run's LR schedule, ``scheduler/`` the study's trial
scheduler.

This module imports no Ray (the spec and the CLI read it before Ray starts): a builder imports
the Ray classes (:mod:`.ray_schedulers`) when it is called.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ptycho_model import names
from ptycho_model.errors import ConfigError, closest

if TYPE_CHECKING:
    from ..spec import ExperimentSpec

ASHA = "asha"
HYPERBAND = "hyperband"
NONE = "none"
DEFAULT = ASHA  # scheduler/name's default


@dataclass(frozen=True)
class TrialScheduler:
    """One entry of :data:`TRIAL_SCHEDULERS`.

    ``build(spec)``: the Ray scheduler for the study (its classes judge on the *current*
    ``val_loss``; :mod:`.ray_schedulers`).
    ``summary``: what it does, in the few words ``run --help`` shows ("" for none).
    ``doc``: how it decides, in a sentence or two (docs, ``SchedulerSpec``).
    ``report_line(spec)``: the report's "scheduler:" line.
    ``whole_brackets``: a bracket needs all its members at once (synchronous HyperBand): the
    study runs without ``search/max_concurrent`` (Tune's limit counts paused trials) and lets
    that many trials wait to start instead (:func:`.tuner.pending_trials`); on ``resume`` the
    scheduler rebuilds each bracket whole from its members' results (:mod:`.hyperband`).
    """

    build: Callable[[ExperimentSpec], Any]
    summary: str
    doc: str
    report_line: Callable[[ExperimentSpec], str]
    whole_brackets: bool = False


def _rung_kwargs(spec: ExperimentSpec) -> dict[str, Any]:
    return dict(time_attr=names.EPOCH, metric=names.VAL_LOSS, mode=names.MODE,
                max_t=spec.run.train.max_epochs, grace_period=spec.grace_period,
                reduction_factor=spec.scheduler.reduction_factor)


def _build_asha(spec: ExperimentSpec) -> Any:
    from .ray_schedulers import ValLossASHA

    return ValLossASHA(**_rung_kwargs(spec), brackets=spec.scheduler.brackets)


def _build_hyperband(spec: ExperimentSpec) -> Any:
    from .ray_schedulers import ValLossHyperBand
    from .stoppers import collapse_stopper

    # a trial the stopper ended left its bracket an epoch before its last row: the replay asks
    # the stopper (collapse.should_stop) which trials it ended
    return ValLossHyperBand(**_rung_kwargs(spec), stopped_by_rule=collapse_stopper(spec))


def _build_none(spec: ExperimentSpec) -> Any:
    from .ray_schedulers import NoEarlyStop

    return NoEarlyStop()


def _asha_line(spec: ExperimentSpec) -> str:
    a = spec.scheduler
    return (f"ASHA: time_attr `epoch`, metric current `val_loss`, max_t "
            f"{spec.run.train.max_epochs}, grace {spec.grace_period}, reduction factor "
            f"{a.reduction_factor}, brackets {a.brackets}")


def _hyperband_line(spec: ExperimentSpec) -> str:
    return (f"HyperBand (synchronous): time_attr `epoch`, metric current `val_loss`, max_t "
            f"{spec.run.train.max_epochs}, no rung before epoch {spec.grace_period}, reduction "
            f"factor {spec.scheduler.reduction_factor}")


TRIAL_SCHEDULERS: dict[str, TrialScheduler] = {
    ASHA: TrialScheduler(
        build=_build_asha, report_line=_asha_line,
        summary="asynchronous, its stops depend on arrival order",
        doc="asynchronous successive halving; a trial is judged when it reaches a rung, against "
            "the trials that reached it before, so which trials stop depends on arrival order"),
    HYPERBAND: TrialScheduler(
        build=_build_hyperband, report_line=_hyperband_line, whole_brackets=True,
        summary="synchronous: the same trials meet the same stops",
        doc="Ray's synchronous HyperBand; a bracket pauses its members at each rung until all "
            "of them reached it, so the same trials in the same order meet the same stops"),
    NONE: TrialScheduler(
        build=_build_none, report_line=lambda spec: "none (the collapse rule stays)",
        summary="",
        doc="every trial runs until its epochs or the collapse rule end it"),
}


def trial_scheduler(name: str) -> TrialScheduler:
    """The entry named ``name``, or a :class:`ConfigError` naming the value and the choices."""
    if name not in TRIAL_SCHEDULERS:
        raise ConfigError(f"scheduler/name={name!r} is not a scheduler"
                          f"{closest(str(name), TRIAL_SCHEDULERS)}; allowed: "
                          f"{', '.join(TRIAL_SCHEDULERS)}")
    return TRIAL_SCHEDULERS[name]


def build_trial_scheduler(spec: ExperimentSpec) -> Any:
    """The Ray scheduler ``spec.scheduler.name`` names, built for ``spec``."""
    return trial_scheduler(spec.scheduler.name).build(spec)


def help_text() -> str:
    """``run --scheduler``'s help: every name with its summary, the default marked."""
    parts = []
    for name, entry in TRIAL_SCHEDULERS.items():
        say = "; ".join(s for s in ("the default" if name == DEFAULT else "", entry.summary) if s)
        parts.append(f"{name} ({say})" if say else name)
    return "early stopping beside the collapse rule: " + ", ".join(parts)
