"""Reading one experiment directory into :class:`Experiment`: its trials, their outcomes, the rank.

Holds the error classes every CLI command imports and the number helper (:func:`finite`) the
other analysis modules share; the outcome names and their classification live in
:mod:`tune_ptycho.outcomes`. Reads Ray Tune's files through their one reader
(:mod:`tune_ptycho.storage.tune_files`: ``trial_*/result.json`` and the newest readable
``experiment_state-*.json``), plus each trial's ``params.json`` and ``error.txt``, ``spec.json``
and the Optuna study; needs no running Ray. Leaves out the checkpoints (``best``), the tables
(``tables``), figures and report.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ptycho_model import names
from ptycho_model.config import RunConfig, flatten
from ptycho_model.errors import InputError

from ..outcomes import ERROR, classify, num
from ..storage.experiment import ExperimentInfo, NotAnExperiment, read_study_record
from ..storage.layout import (
    CHECKPOINT_PREFIX,
    ERROR_FILE,
    PARAMS_FILE,
    RESULT_FILE,
    SPEC_FILE,
    TRIAL_DIR_PREFIX,
)
from ..storage.tune_files import newest_per_epoch, result_rows, trial_states
from .ranking import rank_key


class NoResults(InputError):
    """No trial of the experiment reported a result, so there is no best trial (exit code 2)."""


def finite(x: Any) -> float | None:
    """``x`` as a float, None unless it is a finite number."""
    v = num(x)
    return v if math.isfinite(v) else None


@dataclass
class TrialRecord:
    trial_id: str
    dir: Path | None
    status: str | None = None  # Tune's: TERMINATED, ERROR, RUNNING, PENDING, PAUSED
    params: dict[str, Any] = field(default_factory=dict)  # flat a/b names
    rows: list[dict[str, Any]] = field(default_factory=list)  # one per epoch
    error: str | None = None  # last line of error.txt
    start_state: float | None = None  # experiment_state start_time
    cfg: RunConfig | None = None
    outcome: str = ERROR
    rank: int | None = None

    @property
    def last(self) -> dict[str, Any]:
        return self.rows[-1] if self.rows else {}


@dataclass
class Experiment:
    path: Path
    info: ExperimentInfo
    trials: list[TrialRecord]
    study: Any = None  # optuna.Study or None
    study_error: str | None = None
    spec_note: str | None = None  # set when spec.json only loaded leniently

    @property
    def spec(self):
        return self.info.spec

    def ranked(self) -> list[TrialRecord]:
        """Trials with results, best first (``rank_key``; ties by trial id)."""
        done = [t for t in self.trials if t.rows]
        return sorted(done, key=lambda t: (rank_key(t.last), t.trial_id))


def _backfill(rows: list[dict[str, Any]], d: Path) -> list[dict[str, Any]]:
    """Add the epochs missing from result.json that the trial's newest checkpoint recorded.

    Ray copies result.json to storage every few seconds, apart from the checkpoints; a driver
    killed with SIGKILL can leave a resumed trial's file without the rows since the last copy,
    while its checkpoint (the trainer's ``history.json``) has them. Such rows carry
    ``restored_from_checkpoint: True`` and only the trainer's metrics.
    """
    found = sorted(d.glob(f"{CHECKPOINT_PREFIX}*/{names.HISTORY_FILE}"))
    if not found:
        return rows
    try:
        history = json.loads(found[-1].read_text())
    except (OSError, ValueError):
        return rows
    have = {r.get(names.EPOCH) for r in rows}
    extra = [{**{k: v for k, v in h.items() if k != names.LAYERS},
              "restored_from_checkpoint": True} for h in history
             if isinstance(h, dict) and h.get(names.EPOCH) not in have]
    return newest_per_epoch(rows + extra) if extra else rows


def _is_trial_dir(d: Path) -> bool:
    return d.is_dir() and any((d / f).exists() for f in (PARAMS_FILE, RESULT_FILE))


def _trial_config(base: dict[str, Any], params: dict[str, Any]) -> RunConfig | None:
    try:
        # = trainables.ptycho.trial_config (not imported: that module imports ray)
        return RunConfig.from_dict(base).with_updates(params)
    except Exception:  # noqa: BLE001 - a config the current code refuses: analyse without it
        return None


def _classify(t: TrialRecord, max_epochs: int) -> str:
    return classify(t.last if t.rows else None, max_epochs, t.status)


def _lenient_info(root: Path) -> ExperimentInfo:
    """ExperimentInfo for a spec.json written under older rules (``spec.lenient_spec``)."""
    from ..spec import lenient_spec
    from ..storage.study import storage_url

    spec = lenient_spec(json.loads((root / SPEC_FILE).read_text()))
    root = root.resolve()
    try:
        url, study_name = read_study_record(str(root))
    except InputError:
        url, study_name = storage_url(str(root), spec.storage.study_storage), ""
    return ExperimentInfo(uri=str(root), name=root.name, storage_path=str(root.parent), spec=spec,
                          study_url=url, study_name=study_name)


def _read_trial(d: Path, states: dict[str, dict[str, Any]]) -> TrialRecord:
    """One trial directory: its de-duplicated results, params, error and Tune status."""
    rows = _backfill(newest_per_epoch(result_rows(d)), d)
    tid = next((str(r["trial_id"]) for r in rows if r.get("trial_id")), None)
    if tid is None:
        tid = next((k for k, s in states.items() if s.get("logdir") == d.name), None)
    if tid is None:
        tid = d.name.removeprefix(TRIAL_DIR_PREFIX)
    params: dict[str, Any] = {}
    try:
        params = flatten(json.loads((d / PARAMS_FILE).read_text()))
    except (OSError, ValueError, AttributeError):
        if rows and isinstance(rows[0].get("config"), dict):
            params = flatten(rows[0]["config"])
    err = None
    if (d / ERROR_FILE).exists():
        try:
            lines = [x for x in (d / ERROR_FILE).read_text().splitlines() if x.strip()]
            err = lines[-1].strip() if lines else ERROR_FILE
        except OSError:
            err = ERROR_FILE
    st = states.get(tid, {})
    return TrialRecord(trial_id=tid, dir=d, status=st.get("status"), params=params, rows=rows,
                       error=err, start_state=st.get("start_time"))


def load_experiment(path: str | Path, with_study: bool = True,
                    study_storage: str | None = None) -> Experiment:
    """Read an experiment directory. Raises :class:`NotAnExperiment` for anything else.
    ``study_storage``: a study URL the user names, read instead of the experiment's own."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise NotAnExperiment(f"{str(path)!r} is not a tune-ptycho experiment: no such directory")
    if not (root / SPEC_FILE).exists():
        raise NotAnExperiment(f"{str(path)!r} is not a tune-ptycho experiment: no {SPEC_FILE} "
                              "(give the directory `tune-ptycho run` printed)")
    spec_note = None
    try:
        info = ExperimentInfo.load(str(root))
    except Exception as e:  # noqa: BLE001 - e.g. a spec today's validation rules refuse
        try:
            info = _lenient_info(root)
        except Exception:  # noqa: BLE001
            raise NotAnExperiment(f"{str(path)!r}: cannot read the experiment ({e})") from None
        spec_note = f"{SPEC_FILE} read without today's validation ({e})"
    root = Path(info.uri)
    states = trial_states(root)
    dirs = {d.name: d for d in root.iterdir() if _is_trial_dir(d)}
    base = info.spec.run.to_dict()
    trials: dict[str, TrialRecord] = {}
    for d in sorted(dirs.values()):
        t = _read_trial(d, states)
        trials[t.trial_id] = t
    for tid, st in states.items():  # trials Tune knows of that never wrote a directory
        if tid not in trials:
            trials[tid] = TrialRecord(trial_id=tid, dir=None, status=st.get("status"),
                                      start_state=st.get("start_time"))
    for t in trials.values():
        t.cfg = _trial_config(base, t.params)
        max_epochs = (t.cfg or info.spec.run).train.max_epochs
        t.outcome = _classify(t, max_epochs)
    exp = Experiment(path=root, info=info, trials=sorted(trials.values(), key=lambda t: t.trial_id),
                     spec_note=spec_note)
    for i, t in enumerate(exp.ranked(), start=1):
        t.rank = i
    if with_study:
        _open_study(exp, info, study_storage)
    return exp


def _open_study(exp: Experiment, info: ExperimentInfo, named: str | None) -> None:
    """The experiment's own study, read-only; a server or a file outside the experiment that
    ``study.json`` names is not opened (``exp.study_error`` says why), unless the user names a
    study (``named``: ``analyze --study-storage``)."""
    from ..storage.study import load_study, open_study_readonly, readonly_study_url

    try:
        if named:
            exp.study = load_study(named, info.study_name)
            return
        url, why = readonly_study_url(exp.path, info.study_url)
        if url is None:
            exp.study_error = f"the study was not opened: {why}"
            return
        exp.study = open_study_readonly(url, info.study_name)
    except Exception as e:  # noqa: BLE001 - no study, another backend, a locked file
        exp.study_error = f"{type(e).__name__}: {e}"
