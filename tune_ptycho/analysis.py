"""Offline analysis of one experiment directory: ``tune-ptycho analyze`` and ``tune-ptycho best``.

Reads Ray Tune's files (``trial_*/result.json``, ``params.json``, ``checkpoint_*/state.pt``, the
newest ``experiment_state-*.json`` for each trial's status) plus ``spec.json`` and the Optuna
study; needs no running Ray. Writes ``<experiment>/report/``:

``trials.csv``          one row per trial: outcome, searched parameters, final and best metrics,
                        node, start / end time, rank (``experiment.rank_key``)
``results.parquet``     every per-epoch result of every trial (config columns as ``config/a/b``)
``learning_curves.png`` val_loss per epoch per trial, coloured by outcome, stop epoch marked
``params_vs_loss.png``  best_val_loss against each searched parameter
``best_reconstruction.png``  the best trial's best-val_loss checkpoint on test image 0
``trials_per_node.png`` trials per node, and a timeline of trials
``report.md``           the summary, with the figures linked

Every file is written whatever the experiment holds (errored trials, empty ``result.json``, no
completed trial): a figure without data says so, and so does the report.
"""

from __future__ import annotations

import glob
import json
import math
import shutil
import tempfile
import traceback
import warnings
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pandas is imported where used: every CLI command imports this module
    import pandas as pd

from ptycho_model import names
from ptycho_model.config import RunConfig, flatten

from .experiment import DATASET_FILE, SPEC_FILE, ExperimentInfo, rank_key
from .spec import is_remote

# pandas and matplotlib are imported where used: the CLI imports this module for its error
# classes on every command.

REPORT_DIR = "report"
STATE_FILE = "state.pt"  # trainables.ptycho.STATE_FILE (not imported: that module imports ray)

# Outcomes, in the order the report counts them.
FINISHED = "finished"  # reached train/max_epochs without collapse or divergence
STOPPED_EARLY = "stopped_early"  # ASHA stopped it before max_epochs, no collapse
COLLAPSED_RATIO = "collapsed_" + names.KIND_RATIO
COLLAPSED_FLAT = "collapsed_" + names.KIND_FLAT
DIVERGED = "diverged"
ERROR = "error"  # errored past max_failures, or left no result
UNFINISHED = "unfinished"  # still pending / running (an interrupted experiment)
OUTCOMES = (FINISHED, STOPPED_EARLY, COLLAPSED_RATIO, COLLAPSED_FLAT, DIVERGED, ERROR, UNFINISHED)
OUTCOME_LABELS = {
    FINISHED: "finished", STOPPED_EARLY: "stopped early (ASHA)",
    COLLAPSED_RATIO: "collapsed (ratio)", COLLAPSED_FLAT: "collapsed (flat)",
    DIVERGED: "diverged", ERROR: "error / no result", UNFINISHED: "unfinished",
}
COLORS = {
    FINISHED: "tab:green", STOPPED_EARLY: "tab:gray", COLLAPSED_RATIO: "tab:orange",
    COLLAPSED_FLAT: "tab:purple", DIVERGED: "tab:red", ERROR: "black", UNFINISHED: "tab:cyan",
}
MARKERS = {
    FINISHED: "o", STOPPED_EARLY: "s", COLLAPSED_RATIO: "X", COLLAPSED_FLAT: "P",
    DIVERGED: "*", ERROR: "D", UNFINISHED: ">",
}

FIGURES = ("learning_curves.png", "params_vs_loss.png", "best_reconstruction.png",
           "trials_per_node.png")


class NotAnExperiment(ValueError):
    """The path is not a readable tune-ptycho experiment directory (CLI exit code 2)."""


class NoResults(ValueError):
    """No trial of the experiment reported a result, so there is no best trial (exit code 2)."""


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# ============================================================================ reading


@dataclass
class TrialRecord:
    trial_id: str
    dir: Path | None
    status: str | None = None  # Tune's: TERMINATED, ERROR, RUNNING, PENDING, PAUSED
    params: dict[str, Any] = field(default_factory=dict)  # flat a/b names
    rows: list[dict[str, Any]] = field(default_factory=list)  # one per epoch
    error: str | None = None  # first line of error.txt
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


def _read_json_lines(path: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    try:
        text = path.read_text()
    except OSError:
        return rows
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            d = json.loads(line)
        except ValueError:
            continue  # a line cut short by a killed writer
        if isinstance(d, dict):
            rows.append(d)
    return rows


def _dedupe_epochs(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per epoch (a retried trial re-reports epochs after its checkpoint; keep the last)."""
    by_epoch: dict[Any, dict[str, Any]] = {}
    for i, r in enumerate(rows):
        key = r.get(names.EPOCH, r.get("training_iteration", f"row{i}"))
        by_epoch.pop(key, None)
        by_epoch[key] = r
    return sorted(by_epoch.values(), key=lambda r: _num(r.get(names.EPOCH,
                                                              r.get("training_iteration"))))


def _num(x: Any, default: float = math.nan) -> float:
    if isinstance(x, bool):
        return float(x)
    try:
        v = float(x)
    except (TypeError, ValueError):
        return default
    return v


def _finite(x: Any) -> float | None:
    v = _num(x)
    return v if math.isfinite(v) else None


def _trial_states(root: Path) -> dict[str, dict[str, Any]]:
    """trial_id -> {status, logdir, start_time} from the newest experiment_state-*.json."""
    files = sorted(glob.glob(str(root / "experiment_state-*.json")))
    out: dict[str, dict[str, Any]] = {}
    for f in reversed(files):
        try:
            data = json.loads(Path(f).read_text())
            for entry in data.get("trial_data", []):
                a = json.loads(entry[0]) if isinstance(entry[0], str) else entry[0]
                b = json.loads(entry[1]) if len(entry) > 1 and isinstance(entry[1], str) else {}
                out[str(a.get("trial_id"))] = {
                    "status": a.get("status"), "logdir": a.get("relative_logdir"),
                    "start_time": (b or {}).get("start_time"),
                }
            return out
        except (OSError, ValueError, TypeError, IndexError, KeyError, AttributeError):
            continue  # a half-written snapshot: try the previous one
    return out


def _is_trial_dir(d: Path) -> bool:
    return d.is_dir() and any((d / f).exists() for f in ("params.json", "result.json"))


def _trial_config(base: dict[str, Any], params: dict[str, Any]) -> RunConfig | None:
    try:
        # = trainables.ptycho.trial_config (not imported: that module imports ray)
        return RunConfig.from_dict(base).with_updates(params)
    except Exception:  # noqa: BLE001 - a config the current code refuses: analyse without it
        return None


def _classify(t: TrialRecord, max_epochs: int) -> str:
    last = t.last
    if t.status == "ERROR":
        return ERROR
    if not t.rows:
        return UNFINISHED if t.status in ("PENDING", "RUNNING", "PAUSED") else ERROR
    if _num(last.get(names.DIVERGED), 0.0) > 0:
        return DIVERGED
    if _num(last.get(names.COLLAPSED), 0.0) > 0:
        return COLLAPSED_FLAT if last.get(names.COLLAPSE_KIND) == names.KIND_FLAT else COLLAPSED_RATIO
    epoch = _num(last.get(names.EPOCH, last.get("training_iteration")), 0.0)
    if epoch >= max_epochs:
        return FINISHED
    if t.status in ("RUNNING", "PENDING", "PAUSED"):
        return UNFINISHED
    return STOPPED_EARLY


def _lenient_info(root: Path) -> ExperimentInfo:
    """ExperimentInfo for a spec.json written under older rules: the same merge as
    ``spec.build_spec`` (preset defaults < file) without the experiment-level validation."""
    from dataclasses import asdict

    from ptycho_model.config import build_dataclass
    from ptycho_model.presets import get_preset

    from .spec import RUN_SECTIONS, SPEC_SECTIONS, ExperimentSpec, _deep_merge
    from .study import storage_url

    d = json.loads((root / SPEC_FILE).read_text())
    preset = d.pop("preset", "cpu")
    merged: dict[str, Any] = get_preset(preset).config().to_dict()
    for name, cls in SPEC_SECTIONS.items():
        merged[name] = asdict(cls())
    _deep_merge(merged, d)
    spec = ExperimentSpec(
        preset=preset, run=RunConfig.from_dict({k: merged[k] for k in RUN_SECTIONS}),
        **{name: build_dataclass(cls, merged[name], name) for name, cls in SPEC_SECTIONS.items()})
    root = root.resolve()
    try:
        url = json.loads((root / "study.json").read_text())["url"]
    except (OSError, ValueError, KeyError):
        url = storage_url(str(root), spec.storage.study_storage)
    return ExperimentInfo(uri=str(root), name=root.name, storage_path=str(root.parent), spec=spec,
                          study_url=url)


def load_experiment(path: str | Path, with_study: bool = True) -> Experiment:
    """Read an experiment directory. Raises :class:`NotAnExperiment` for anything else."""
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
        spec_note = f"spec.json read without today's validation ({e})"
    root = Path(info.uri)
    states = _trial_states(root)
    dirs = {d.name: d for d in root.iterdir() if _is_trial_dir(d)}
    base = info.spec.run.to_dict()
    trials: dict[str, TrialRecord] = {}
    for d in sorted(dirs.values()):
        rows = _dedupe_epochs(_read_json_lines(d / "result.json"))
        tid = next((str(r["trial_id"]) for r in rows if r.get("trial_id")), None)
        if tid is None:
            tid = next((k for k, s in states.items() if s.get("logdir") == d.name), None)
        if tid is None:
            tid = d.name[len("trial_"):] if d.name.startswith("trial_") else d.name
        params: dict[str, Any] = {}
        try:
            params = flatten(json.loads((d / "params.json").read_text()))
        except (OSError, ValueError, AttributeError):
            if rows and isinstance(rows[0].get("config"), dict):
                params = flatten(rows[0]["config"])
        err = None
        if (d / "error.txt").exists():
            try:
                lines = [x for x in (d / "error.txt").read_text().splitlines() if x.strip()]
                err = lines[-1].strip() if lines else "error.txt"
            except OSError:
                err = "error.txt"
        st = states.get(tid, {})
        trials[tid] = TrialRecord(trial_id=tid, dir=d, status=st.get("status"), params=params,
                                  rows=rows, error=err, start_state=st.get("start_time"))
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
        try:
            from .study import load_study

            exp.study = load_study(info.study_url, info.name)
        except Exception as e:  # noqa: BLE001 - no study, another backend, a locked file
            exp.study_error = f"{type(e).__name__}: {e}"
    return exp


# ============================================================================ best trial


def _checkpoint_val_loss(ckpt: Path) -> float:
    import torch

    try:
        state = torch.load(ckpt / STATE_FILE, map_location="cpu", weights_only=True)
        hist = state.get("history") or []
        return _num(hist[-1].get(names.VAL_LOSS), math.inf) if hist else math.inf
    except Exception:  # noqa: BLE001
        return math.inf


def best_checkpoint_dir(t: TrialRecord) -> Path | None:
    """The trial's kept checkpoint whose reported val_loss is lowest (the pre-collapse weights)."""
    if t.dir is None:
        return None
    best: tuple[float, float, Path] | None = None
    for r in t.rows:
        name = r.get("checkpoint_dir_name")
        if not name or not (t.dir / name / STATE_FILE).exists():
            continue  # not checkpointed, or deleted by num_to_keep
        v = _num(r.get(names.VAL_LOSS), math.inf)
        v = v if math.isfinite(v) else math.inf
        key = (v, _num(r.get(names.EPOCH), 0.0), t.dir / name)
        if best is None or key[:2] < best[:2]:
            best = key
    if best is not None:
        return best[2]
    # result.json does not name them (an old or truncated file): ask the checkpoints themselves
    ckpts = sorted(p.parent for p in t.dir.glob(f"checkpoint_*/{STATE_FILE}"))
    if not ckpts:
        return None
    return min(ckpts, key=lambda c: (_checkpoint_val_loss(c), c.name))


def _best_record(exp: Experiment) -> TrialRecord:
    ranked = exp.ranked()
    if not ranked:
        raise NoResults(f"no trial of {str(exp.path)!r} reported a result, so there is no best trial")
    return ranked[0]


def best_trial(path: str | Path) -> tuple[str, Path, Path | None, dict[str, Any]]:
    """(trial_id, trial_dir, best_checkpoint_dir, final metrics) of the best trial: the lowest
    final objective, ties broken by best_val_loss (:func:`experiment.rank_key`). The checkpoint
    is the trial's kept one with the lowest val_loss (None if none is left on disk)."""
    exp = load_experiment(path, with_study=False)
    t = _best_record(exp)
    return t.trial_id, t.dir, best_checkpoint_dir(t), dict(t.last)


def _load_state(ckpt: Path) -> dict[str, Any]:
    import torch

    return torch.load(ckpt / STATE_FILE, map_location="cpu", weights_only=True)


def _model_config(t: TrialRecord, state: dict[str, Any], fallback: RunConfig) -> RunConfig:
    if t.cfg is not None:
        return t.cfg
    try:
        return RunConfig.from_dict(state["config"])
    except Exception:  # noqa: BLE001
        return fallback


def load_best_model(path: str | Path):
    """(model in eval mode on the CPU, its RunConfig, trial record, checkpoint dir)."""
    from ptycho_model.generators import build_generator

    exp = load_experiment(path, with_study=False)
    t = _best_record(exp)
    ckpt = best_checkpoint_dir(t)
    if ckpt is None:
        raise NoResults(f"best trial {t.trial_id} of {str(exp.path)!r} has no checkpoint left")
    state = _load_state(ckpt)
    cfg = _model_config(t, state, exp.spec.run)
    model = build_generator(cfg.model, N=cfg.data.N)
    model.load_state_dict(state["model"], strict=True)
    model.eval()
    return model, cfg, t, ckpt


def export_best(path: str | Path, file: str | Path) -> Path:
    """Write the best trial's best-checkpoint weights as a plain state dict (``torch.save``) and,
    beside it, ``<file>.json``: the trial's full RunConfig dict. Rebuild with::

        cfg = RunConfig.from_dict(json.load(open(file + ".json")))
        model = build_generator(cfg.model, N=cfg.data.N)
        model.load_state_dict(torch.load(file, weights_only=True))
    """
    import torch

    model, cfg, t, ckpt = load_best_model(path)  # proves the weights load strictly
    state = _load_state(ckpt)
    out = Path(file).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state["model"], out)
    Path(str(out) + ".json").write_text(json.dumps(cfg.to_dict(), indent=2, default=str) + "\n")
    return out


# ============================================================================ tables


def _iso(ts: float | None) -> str | None:
    if ts is None or not math.isfinite(ts):
        return None
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _times(t: TrialRecord) -> tuple[float | None, float | None]:
    starts = [v for r in t.rows if (v := _finite(r.get("trial_start_ts"))) is not None]
    ends = [v for r in t.rows if (v := _finite(r.get("report_ts", r.get("timestamp")))) is not None]
    start = min(starts) if starts else _finite(t.start_state)
    end = max(ends) if ends else None
    return start, end


def _latest(rows: list[dict[str, Any]], key: str) -> float | None:
    for r in reversed(rows):
        v = _finite(r.get(key))
        if v is not None:
            return v
    return None


def searched_params(exp: Experiment) -> list[str]:
    seen: dict[str, None] = {}
    for t in exp.trials:
        for k in t.params:
            seen.setdefault(k, None)
    return list(seen)


STAT_COLUMNS = (names.AMP_SSIM, names.BEST_CKPT_PREFIX + names.AMP_SSIM, names.AMP_SSIM_TWIN,
                names.BEST_CKPT_PREFIX + names.AMP_SSIM_TWIN, names.AMP_SSIM_CONSTANT)


def trials_frame(exp: Experiment) -> pd.DataFrame:
    import pandas as pd
    params = searched_params(exp)
    records = []
    for t in exp.trials:
        last = t.last
        start, end = _times(t)
        rec: dict[str, Any] = {"trial_id": t.trial_id, "outcome": t.outcome, "status": t.status}
        for p in params:
            rec[p] = t.params.get(p)
        rec.update({
            "last_epoch": _finite(last.get(names.EPOCH, last.get("training_iteration"))),
            names.BEST_VAL_LOSS: _finite(last.get(names.BEST_VAL_LOSS)),
            names.BEST_EPOCH: _finite(last.get(names.BEST_EPOCH)),
            names.VAL_LOSS: _finite(last.get(names.VAL_LOSS)),
            names.OBJECTIVE: _finite(last.get(names.OBJECTIVE)),
        })
        # eval metrics: the latest epoch that reported them (eval epochs are every k epochs;
        # best_ckpt_* only at a trial's own end, not when ASHA stopped it)
        for c in STAT_COLUMNS:
            rec[c] = _latest(t.rows, c)
        if rec[names.AMP_SSIM_CONSTANT] is None:
            rec[names.AMP_SSIM_CONSTANT] = _latest(t.rows,
                                                   names.BEST_CKPT_PREFIX + names.AMP_SSIM_CONSTANT)
        rec["eval_epoch"] = next((r.get(names.EPOCH) for r in reversed(t.rows)
                                  if _finite(r.get(names.AMP_SSIM)) is not None), None)
        rec.update({
            "node_id": last.get("node_id"), "hostname": last.get("hostname"),
            "start_time": _iso(start), "end_time": _iso(end), "start_ts": start, "end_ts": end,
            "wall_s": (end - start) if start is not None and end is not None else None,
            "time_total_s": _finite(last.get("time_total_s")),
            "n_results": len(t.rows), "error": t.error or (None if t.rows else "no result"),
            "rank": t.rank,
        })
        records.append(rec)
    df = pd.DataFrame.from_records(records)
    if df.empty:
        df = pd.DataFrame(columns=["trial_id", "outcome", "status", "last_epoch", "rank"])
    for c in ("rank", "last_epoch", names.BEST_EPOCH, "n_results"):
        if c in df:
            df[c] = pd.array([None if v is None or pd.isna(v) else int(v) for v in df[c].tolist()],
                             dtype="Int64")
    return df.sort_values(["rank", "trial_id"], na_position="last").reset_index(drop=True)


def _flat_row(r: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in r.items():
        if isinstance(v, dict):
            for kk, vv in flatten(v, str(k)).items():
                out[kk] = vv if not isinstance(vv, (dict, list, tuple)) else json.dumps(vv)
        elif isinstance(v, (list, tuple)):
            out[k] = json.dumps(v, default=str)
        else:
            out[k] = v
    return out


def results_frame(exp: Experiment) -> pd.DataFrame:
    import pandas as pd
    rows = []
    for t in exp.trials:
        for r in t.rows:
            row = _flat_row(r)
            row["trial_id"] = str(row.get("trial_id") or t.trial_id)
            rows.append(row)
    df = pd.DataFrame.from_records(rows)
    if df.empty:
        return pd.DataFrame({"trial_id": pd.Series(dtype=str), names.EPOCH: pd.Series(dtype=float)})
    return df


def _write_parquet(df: pd.DataFrame, path: Path) -> None:
    try:
        df.to_parquet(path, index=False)
        return
    except Exception:  # noqa: BLE001 - a column mixing types pyarrow cannot unify
        pass
    df = df.copy()
    for c in df.columns:
        if df[c].dtype == object:
            df[c] = df[c].map(lambda v: None if v is None or (isinstance(v, float) and math.isnan(v))
                              else str(v))
    df.to_parquet(path, index=False)


# ============================================================================ figures


def _placeholder(path: Path, title: str, message: str) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.axis("off")
    ax.text(0.5, 0.6, "no data", ha="center", va="center", fontsize=20, color="0.4")
    ax.text(0.5, 0.3, message, ha="center", va="center", fontsize=9, wrap=True)
    ax.set_title(title)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _plain_log_ticks(axis, values) -> None:
    """``0.215`` rather than ``2.15x10^-1`` on a log axis; minor ticks labelled only when the
    data span less than a decade (else the decades alone)."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    v = np.asarray([x for x in values if x is not None and np.isfinite(x) and x > 0], dtype=float)
    fmt = FuncFormatter(lambda x, _: f"{x:.4g}")
    axis.set_major_formatter(fmt)
    narrow = v.size > 0 and v.max() / v.min() < 10
    axis.set_minor_formatter(fmt if narrow else NullFormatter())


def _outcome_legend(ax_or_fig, outcomes: list[str], **kw) -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=COLORS[o], marker=MARKERS[o], linestyle="-",
                      label=OUTCOME_LABELS[o]) for o in OUTCOMES if o in outcomes]
    if handles:
        ax_or_fig.legend(handles=handles, fontsize=8, **kw)


def learning_curves_figure(exp: Experiment, path: Path) -> Path:
    """val_loss per epoch, log y, one line per trial coloured by outcome, its stop epoch marked.
    The divergence sentinel is not plotted as a loss: a diverged trial's line ends at its last
    finite epoch and its stop marker sits on the top edge."""
    from matplotlib.transforms import blended_transform_factory

    plt = _plt()
    curves = []
    for t in exp.trials:
        pts = [(_num(r.get(names.EPOCH, r.get("training_iteration"))), _num(r.get(names.VAL_LOSS)))
               for r in t.rows]
        stop = max((e for e, _ in pts if math.isfinite(e)), default=None)
        pts = [(e, v) for e, v in pts if math.isfinite(e) and math.isfinite(v)
               and 0 < v < names.DIVERGED_SENTINEL]
        if pts or (stop is not None and t.outcome == DIVERGED):
            curves.append((t, pts, stop))
    if not curves:
        return _placeholder(path, "val_loss per epoch", "no trial reported a val_loss")
    best = exp.ranked()[0].trial_id if exp.ranked() else None
    fig, ax = plt.subplots(figsize=(8, 5), constrained_layout=True)
    top_edge = blended_transform_factory(ax.transData, ax.transAxes)
    for t, pts, stop in curves:
        is_best = t.trial_id == best
        style = dict(color=COLORS[t.outcome], marker=MARKERS[t.outcome], ms=8, linestyle="none",
                     markeredgecolor="k", markeredgewidth=0.5, zorder=4)
        if pts:
            e, v = zip(*pts)
            ax.plot(e, v, color=COLORS[t.outcome], alpha=0.95 if is_best else 0.55,
                    lw=2.4 if is_best else 1.1, zorder=3 if is_best else 2)
        if t.outcome == DIVERGED:
            ax.plot([stop], [1.0], transform=top_edge, clip_on=False, **style)
        elif pts:
            ax.plot(e[-1], v[-1], **style)
            if is_best:
                ax.annotate(f"best: {t.trial_id}", (e[-1], v[-1]), textcoords="offset points",
                            xytext=(6, 6), fontsize=8)
    ax.set_yscale("log")
    _plain_log_ticks(ax.yaxis, [v for _, pts, _ in curves for _, v in pts])
    ax.set_xlabel("epoch")
    ax.set_ylabel("val_loss (current)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_title(f"{exp.info.name}: val_loss per epoch ({len(curves)} trials; marker = stop "
                 "epoch" + ("; diverged: top edge" if any(t.outcome == DIVERGED
                                                          for t, _, _ in curves) else "") + ")")
    ax.grid(True, which="both", alpha=0.25)
    _outcome_legend(ax, [t.outcome for t, _, _ in curves], loc="best", title="outcome")
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def param_kinds(exp: Experiment, params: list[str], df: pd.DataFrame) -> dict[str, str]:
    """``categorical`` | ``log`` | ``linear`` per parameter: the study's distributions first,
    then the named space's, then the values (numeric spanning more than 2 decades -> log)."""
    import pandas as pd
    import optuna.distributions as od

    dists: dict[str, list[Any]] = {}
    if exp.study is not None:
        try:
            for tr in exp.study.get_trials(deepcopy=False):
                for k, d in tr.distributions.items():
                    dists.setdefault(k, []).append(d)
        except Exception:  # noqa: BLE001
            pass
    try:
        from search_spaces import distributions

        for k, ds in distributions(exp.spec.search.space).items():
            if k not in dists:
                dists[k] = list(ds)
    except Exception:  # noqa: BLE001
        pass
    kinds: dict[str, str] = {}
    for p in params:
        ds = dists.get(p, [])
        if any(isinstance(d, od.CategoricalDistribution) for d in ds):
            kinds[p] = "categorical"
            continue
        if any(getattr(d, "log", False) for d in ds):
            kinds[p] = "log"
            continue
        col = df[p] if p in df else pd.Series(dtype=object)
        vals = [v for v in col.tolist() if v is not None and not (isinstance(v, float) and math.isnan(v))]
        numeric = vals and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals)
        if not numeric and not ds:
            kinds[p] = "categorical"
        elif numeric and min(vals) > 0 and max(vals) / min(vals) > 100:
            kinds[p] = "log"
        else:
            kinds[p] = "linear" if (numeric or ds) else "categorical"
    return kinds


def _loss_column(df: pd.DataFrame) -> str:
    import pandas as pd
    for c in (names.BEST_VAL_LOSS, names.OBJECTIVE):
        if c in df and pd.to_numeric(df[c], errors="coerce").notna().any():
            return c
    return names.BEST_VAL_LOSS


def params_vs_loss_figure(exp: Experiment, df: pd.DataFrame, kinds: dict[str, str],
                          path: Path) -> Path:
    import pandas as pd
    plt = _plt()
    params = [p for p in kinds if p in df]
    ycol = _loss_column(df)
    y_all = pd.to_numeric(df.get(ycol, pd.Series(dtype=float)), errors="coerce")
    if not params or not y_all.notna().any():
        why = "no searched parameters" if not params else f"no trial reported {ycol}"
        return _placeholder(path, f"{ycol} vs parameters", why)
    ncols = min(3, len(params))
    nrows = math.ceil(len(params) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.4 * ncols, 3.5 * nrows + 0.6),
                             squeeze=False, constrained_layout=True)
    rng = np.random.default_rng(0)
    y_pos = bool((y_all[y_all.notna()] > 0).all())
    for ax, p in zip(axes.flat, params):
        sub = df[[p, ycol, "outcome"]].copy()
        sub[ycol] = pd.to_numeric(sub[ycol], errors="coerce")
        sub = sub[sub[p].notna() & sub[ycol].notna()]
        ax.set_title(p, fontsize=10)
        ax.set_ylabel(ycol, fontsize=8)
        if y_pos:
            ax.set_yscale("log")
            _plain_log_ticks(ax.yaxis, y_all.dropna().tolist())
        if sub.empty:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
            continue
        if kinds[p] == "categorical":
            cats = sorted({str(v) for v in sub[p]})
            xpos = {c: i for i, c in enumerate(cats)}
            x = np.array([xpos[str(v)] for v in sub[p]], dtype=float)
            x = x + rng.uniform(-0.15, 0.15, size=len(x))
            ax.set_xticks(range(len(cats)))
            ax.set_xticklabels(cats, rotation=20 if max(len(c) for c in cats) > 6 else 0,
                               fontsize=8)
            ax.set_xlim(-0.6, len(cats) - 0.4)
        else:
            x = pd.to_numeric(sub[p], errors="coerce").to_numpy(dtype=float)
            if kinds[p] == "log" and np.all(x[np.isfinite(x)] > 0):
                ax.set_xscale("log")
        for o in OUTCOMES:
            m = (sub["outcome"] == o).to_numpy()
            if m.any():
                ax.scatter(x[m], sub[ycol].to_numpy()[m], c=COLORS[o], marker=MARKERS[o], s=36,
                           edgecolors="k", linewidths=0.4, alpha=0.85)
        ax.grid(True, which="both", alpha=0.25)
    for ax in list(axes.flat)[len(params):]:
        ax.axis("off")
    fig.suptitle(f"{exp.info.name}: {ycol} vs each searched parameter")
    _outcome_legend(fig, sorted(set(df["outcome"])), loc="outside lower center",
                    ncol=min(4, len(set(df["outcome"]))))
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def best_reconstruction_figure(exp: Experiment, path: Path) -> tuple[Path, str | None]:
    """The best trial's best checkpoint on test image 0. Returns (path, note or None)."""
    ranked = exp.ranked()
    if not ranked:
        _placeholder(path, "best reconstruction", "no trial reported a result")
        return path, "no trial reported a result"
    try:
        from ptycho_model.evaluate import evaluate_test_image

        from .figures import reconstruction_figure

        model, cfg, t, ckpt = load_best_model(exp.path)
        test, note = _test_split(exp, cfg)
        metrics, pred, gt = evaluate_test_image(model, test)
        row = next((r for r in t.rows if r.get("checkpoint_dir_name") == ckpt.name), {})
        title = (f"best trial {t.trial_id}, {ckpt.name}"
                 + (f" (epoch {row[names.EPOCH]})" if names.EPOCH in row else "")
                 + ": test image 0")
        reported = _finite(t.last.get(names.BEST_CKPT_PREFIX + names.AMP_SSIM))
        if reported is not None:
            title += f" (amp_ssim reported in training: {reported:.3f})"
        scores = {k: metrics.get(k) for k in (names.AMP_SSIM, names.AMP_SSIM_TWIN,
                                              names.AMP_SSIM_CONSTANT, names.PHASE_SSIM,
                                              names.AMP_PSNR)}
        reconstruction_figure(pred, gt, path, title=title, scores=scores)
        return path, note
    except Exception as e:  # noqa: BLE001 - the report still builds; it says what went wrong
        msg = f"{type(e).__name__}: {e}"
        _placeholder(path, "best reconstruction", msg[:200])
        return path, msg


def _test_split(exp: Experiment, cfg: RunConfig):
    """(test split, note or None): the experiment's own dataset (its recorded cache entry, if it is
    still there and intact), else the cache / a fresh simulation of ``cfg.data`` — with a note
    when that differs from what the trials saw (the simulation code changed since)."""
    from ptycho_model.data import load_datasets

    from .datasets import get_datasets, verify_entry

    try:
        manifest = json.loads((exp.path / DATASET_FILE).read_text())
    except (OSError, ValueError):
        manifest = {}
    recorded = manifest.get("fingerprint")
    entry = Path(str(manifest.get("cache_entry") or "")) if manifest.get("cache_entry") else None
    if entry is not None and entry.is_dir() and verify_entry(entry) is None:
        try:
            return load_datasets(entry, val_is_test=cfg.data.val_is_test).test, None
        except Exception:  # noqa: BLE001 - an entry the current loader cannot read
            pass
    logs: list[str] = []
    data, fp, _ = get_datasets(cfg.data, exp.spec.storage.dataset_cache or None, log=logs.append)
    note = None
    if recorded and fp != recorded:
        note = (f"best_reconstruction.png: the experiment's dataset {recorded} is gone and today's "
                f"code simulates {fp} for the same data config: its scores may differ from those "
                "reported during training")
    return data.test, note


def _node_label(node_id: Any, hostname: Any) -> str:
    nid = str(node_id)[:8] if node_id else "?"
    return f"{hostname or '?'} ({nid})"


def trials_per_node_figure(exp: Experiment, df: pd.DataFrame, path: Path) -> Path:
    import pandas as pd
    plt = _plt()
    d = df[df["node_id"].notna()].copy() if "node_id" in df else pd.DataFrame()
    if d.empty:
        return _placeholder(path, "trials per node", "no trial reported its node")
    d["node"] = [_node_label(n, h) for n, h in zip(d["node_id"], d["hostname"])]
    nodes = sorted(d["node"].unique())
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, max(3.2, 0.9 + 0.25 * len(d))),
                               gridspec_kw={"width_ratios": [1, 2]}, constrained_layout=True)
    bottom = np.zeros(len(nodes))
    for o in OUTCOMES:
        counts = np.array([((d["node"] == n) & (d["outcome"] == o)).sum() for n in nodes])
        if counts.any():
            a.barh(nodes, counts, left=bottom, color=COLORS[o], label=OUTCOME_LABELS[o])
            bottom += counts
    a.set_xlabel("trials")
    a.set_title("trials per node")
    a.xaxis.get_major_locator().set_params(integer=True)
    handles, labels = a.get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="outside lower center", ncol=len(labels))
    # timeline: one row per trial, grouped by node
    starts = pd.to_numeric(d["start_ts"], errors="coerce")
    t0 = starts.min()
    d["s"] = starts - t0
    d["e"] = pd.to_numeric(d["end_ts"], errors="coerce") - t0
    d = d.sort_values(["node", "s"], na_position="last").reset_index(drop=True)
    prev = None
    for i, r in d.iterrows():
        if r["node"] != prev and prev is not None:
            b.axhline(i - 0.5, color="0.6", lw=0.8)
        prev = r["node"]
        if math.isfinite(_num(r["s"])) and math.isfinite(_num(r["e"])):
            b.barh(i, max(r["e"] - r["s"], 1e-3), left=r["s"], color=COLORS[r["outcome"]],
                   height=0.7)
    b.set_yticks(range(len(d)))
    b.set_yticklabels([f"{n.split(' ')[0]}: {tid}" for n, tid in zip(d["node"], d["trial_id"])]
                      if len(d) <= 60 else [""] * len(d), fontsize=7)
    b.invert_yaxis()
    b.set_xlabel("seconds since the first trial started")
    b.set_title("trial timeline (colour = outcome)")
    b.grid(True, axis="x", alpha=0.25)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


# ============================================================================ report


def _fmt(v: Any, digits: int = 4) -> str:
    import pandas as pd
    if v is None:
        return "–"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        if not math.isfinite(float(v)):
            return "–"
        if float(v).is_integer() and abs(v) < 1e6:
            return str(int(v))
        return f"{float(v):.{digits}g}"
    try:
        if pd.isna(v):
            return "–"
    except (TypeError, ValueError):
        pass
    return str(v).replace("|", "\\|")


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(_fmt(c) for c in r) + " |" for r in rows]
    return out


def counts(df: pd.DataFrame) -> dict[str, int]:
    c = Counter(df["outcome"]) if "outcome" in df else Counter()
    return {o: int(c.get(o, 0)) for o in OUTCOMES}


def counts_line(df: pd.DataFrame) -> str:
    c = counts(df)
    line = (f"Trials: {len(df)} — finished {c[FINISHED]}, stopped early by ASHA "
            f"{c[STOPPED_EARLY]}, collapsed {c[COLLAPSED_RATIO] + c[COLLAPSED_FLAT]} "
            f"(ratio {c[COLLAPSED_RATIO]}, flat {c[COLLAPSED_FLAT]}), diverged {c[DIVERGED]}, "
            f"errored {c[ERROR]}")
    if c[UNFINISHED]:
        line += f", unfinished {c[UNFINISHED]}"
    return line


def varying_params(df: pd.DataFrame, params: list[str]) -> list[str]:
    """The parameters that take more than one value (absent counts as a value) across trials."""
    out = [p for p in params if p in df and df[p].astype(str).nunique(dropna=False) > 1]
    return out or params


def _params_text(row: pd.Series, params: list[str]) -> str:
    parts = []
    for p in params:
        v = row.get(p)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            continue
        parts.append(f"{p}={_fmt(v, 3)}")
    return ", ".join(parts) or "–"


def collapse_tables(df: pd.DataFrame, kinds: dict[str, str]) -> list[str]:
    import pandas as pd
    d = df[df["outcome"].isin([FINISHED, STOPPED_EARLY, COLLAPSED_RATIO, COLLAPSED_FLAT, DIVERGED])]
    if d.empty:
        return ["No trial reported a result."]
    col = d["outcome"].isin([COLLAPSED_RATIO, COLLAPSED_FLAT])
    n_col = int(col.sum())
    lines = [f"{n_col} of {len(d)} trials with results collapsed."]
    if n_col == 0:
        return lines
    cat_rows, num_rows = [], []
    for p, kind in kinds.items():
        if p not in d:
            continue
        present = d[p].notna()
        if kind == "categorical":
            for v in sorted({str(x) for x in d.loc[present, p]}):
                m = present & (d[p].astype(str) == v)
                k = int((m & col).sum())
                cat_rows.append([p, v, int(m.sum()), k, k / m.sum() if m.sum() else 0.0])
        else:
            x = pd.to_numeric(d[p], errors="coerce")
            a, b = x[col & x.notna()], x[~col & x.notna()]
            num_rows.append([p, a.mean() if len(a) else None, b.mean() if len(b) else None,
                             len(a), len(b)])
    if cat_rows:
        cat_rows.sort(key=lambda r: (-r[4], r[0], r[1]))
        for r in cat_rows:
            r[4] = f"{r[4]:.0%}"
        lines += ["", *_table(["parameter", "value", "trials", "collapsed", "collapse rate"],
                              cat_rows)]
    if num_rows:
        lines += ["", *_table(["parameter", "mean (collapsed)", "mean (not collapsed)",
                               "n collapsed", "n not collapsed"], num_rows)]
    return lines


def importance_lines(exp: Experiment) -> list[str]:
    if exp.study is None:
        return [f"Study not available ({exp.study_error or 'not loaded'}): no importances."]
    try:
        import optuna

        complete = exp.study.get_trials(deepcopy=False,
                                        states=(optuna.trial.TrialState.COMPLETE,))
        if len(complete) < 2:
            return [f"Not enough completed trials for parameter importance "
                    f"({len(complete)} COMPLETE in the study)."]
        values: dict[str, set[str]] = {}
        for tr in complete:
            for k, v in tr.params.items():
                values.setdefault(k, set()).add(repr(v))
        varying = [k for k, v in values.items() if len(v) > 1]
        if not varying:
            return [f"Not enough completed trials for parameter importance (no parameter takes "
                    f"two values over the {len(complete)} COMPLETE trials)."]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            imp = optuna.importance.get_param_importances(exp.study, params=varying)
    except Exception as e:  # noqa: BLE001 - too few trials, a single-value parameter, ...
        return [f"Not enough completed trials for parameter importance ({type(e).__name__}: {e})."]
    if not imp:
        return ["Not enough completed trials for parameter importance (no parameter varies)."]
    lines = [f"Optuna `get_param_importances` (default evaluator) over {len(complete)} COMPLETE "
             "study trials" + (" — few trials, read it as a hint only." if len(complete) < 10
                               else "."), ""]
    lines += _table(["parameter", "importance"], [[k, v] for k, v in imp.items()])
    fixed = sorted(set(values) - set(varying))
    if fixed:
        lines += ["", f"Not ranked (a single value across the COMPLETE trials): {', '.join(fixed)}."]
    return lines


def node_table(df: pd.DataFrame) -> list[str]:
    import pandas as pd
    if "node_id" not in df or not df["node_id"].notna().any():
        return ["No trial reported its node."]
    rows = []
    d = df[df["node_id"].notna()]
    for (nid, host), g in d.groupby(["node_id", "hostname"], dropna=False):
        oc = Counter(g["outcome"])
        busy = pd.to_numeric(g["wall_s"], errors="coerce").sum()
        rows.append([str(nid)[:12], host, len(g),
                     ", ".join(f"{OUTCOME_LABELS[o]} {oc[o]}" for o in OUTCOMES if oc.get(o)),
                     busy, g["start_time"].dropna().min() if g["start_time"].notna().any() else None,
                     g["end_time"].dropna().max() if g["end_time"].notna().any() else None])
    return _table(["node_id", "hostname", "trials", "outcomes", "trial seconds", "first start",
                   "last end"], rows)


def spec_lines(exp: Experiment) -> list[str]:
    s = exp.spec
    r = s.run
    a = s.asha
    asha = (f"time_attr `epoch`, metric current `val_loss`, max_t {r.train.max_epochs}, grace "
            f"{a.grace_period}, reduction factor {a.reduction_factor}, brackets {a.brackets}"
            if a.enabled else "off (the collapse rule stays)")
    return [
        f"- space `{s.search.space}`, preset `{s.preset}`, num_samples {s.search.num_samples}, "
        f"sampler seed {s.search.seed}, max_concurrent {s.search.max_concurrent}",
        f"- model `{r.model.arch}` (width {r.model.width}, blocks {r.model.blocks}, modes "
        f"{r.model.modes}), max_epochs {r.train.max_epochs}, batch {r.train.batch_size}, "
        f"loss `{r.train.loss}`",
        f"- ASHA: {asha}",
        f"- collapse: ratio {r.collapse.ratio}, patience {r.collapse.patience}, grace "
        f"{r.collapse_grace}{' (default)' if r.collapse.grace is None else ''}, flat_std "
        f"{r.collapse.flat_std}",
        f"- data: N {r.data.N}, probe `{r.data.probe}`, object size {r.data.size}, "
        f"n_train {r.data.n_train}, n_test {r.data.n_test}, nphotons {r.data.nphotons:g}",
        f"- study: `{exp.info.study_url}` (study `{exp.info.name}`)",
    ]


@dataclass
class Report:
    dir: Path
    trials: pd.DataFrame
    best_trial_id: str | None
    summary: str
    notes: list[str]


def build_report(path: str | Path, out: str | Path | None = None) -> Report:
    import pandas as pd
    exp = load_experiment(path)
    report_dir = Path(out).expanduser() if out else exp.path / REPORT_DIR
    report_dir.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []

    df = trials_frame(exp)
    df.to_csv(report_dir / "trials.csv", index=False)
    res = results_frame(exp)
    _write_parquet(res, report_dir / "results.parquet")
    params = searched_params(exp)
    kinds = param_kinds(exp, params, df)

    def guarded(name: str, fn, *args) -> None:
        p = report_dir / name
        try:
            fn(*args, p)
        except Exception as e:  # noqa: BLE001 - the report must build; say what failed
            notes.append(f"{name}: {type(e).__name__}: {e}")
            traceback.print_exc()
            _placeholder(p, name, f"figure failed: {type(e).__name__}: {e}"[:200])

    guarded("learning_curves.png", learning_curves_figure, exp)
    guarded("params_vs_loss.png", params_vs_loss_figure, exp, df, kinds)
    guarded("trials_per_node.png", trials_per_node_figure, exp, df)
    _, rec_note = best_reconstruction_figure(exp, report_dir / "best_reconstruction.png")

    ranked = exp.ranked()
    best = ranked[0] if ranked else None
    lines = [f"# tune-ptycho report: {exp.info.name}", "",
             f"Experiment: `{exp.path}`  ",
             f"Written: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}", "",
             "## Spec", *spec_lines(exp)]
    if exp.spec.run.data.val_is_test:
        lines += ["", "> **Note:** `data/val_is_test` is true: trials were validated on the test "
                      "split, as upstream — val_loss and the test metrics are not independent."]
    lines += ["", "## Outcomes", counts_line(df), ""]
    if not ranked:
        lines += ["**No trial reported a result**: there is no best trial and the figures are "
                  "empty.", ""]
    n_complete = int(df["outcome"].isin([FINISHED]).sum())
    if ranked and n_complete == 0:
        lines += ["No trial ran to max_epochs (every trial was stopped, collapsed, diverged or "
                  "errored).", ""]
    if best is not None:
        lines += [f"**Best trial: `{best.trial_id}`** ({OUTCOME_LABELS[best.outcome]}) — "
                  f"objective {_fmt(_finite(best.last.get(names.OBJECTIVE)))}, best_val_loss "
                  f"{_fmt(_finite(best.last.get(names.BEST_VAL_LOSS)))} at epoch "
                  f"{_fmt(best.last.get(names.BEST_EPOCH))}; checkpoint "
                  f"`{best_checkpoint_dir(best) or 'none left'}`. Export it with "
                  f"`tune-ptycho best {exp.path} --export best.pt`.", ""]
        lines += ["## Best trials (lowest final objective, ties by best_val_loss)", ""]
        top = df[df["rank"].notna()].head(5)
        key_params = varying_params(df, params)
        rows = []
        dagger = False
        for _, r in top.iterrows():
            amp = r.get(names.BEST_CKPT_PREFIX + names.AMP_SSIM)
            twin = r.get(names.BEST_CKPT_PREFIX + names.AMP_SSIM_TWIN)
            if amp is None or pd.isna(amp):  # no best-checkpoint eval: the latest eval instead
                amp, twin = r.get(names.AMP_SSIM), r.get(names.AMP_SSIM_TWIN)
                if amp is not None and not pd.isna(amp):
                    amp = f"{_fmt(amp)} †"
                    dagger = True
            rows.append([r["rank"], f"`{r['trial_id']}`", _params_text(r, key_params),
                         r.get(names.OBJECTIVE), r.get(names.BEST_VAL_LOSS),
                         r.get(names.BEST_EPOCH), r.get("last_epoch"),
                         OUTCOME_LABELS.get(r["outcome"], r["outcome"]), amp, twin,
                         r.get(names.AMP_SSIM_CONSTANT)])
        lines += _table(["rank", "trial", "params", "objective", "best_val_loss", "best epoch",
                         "stop epoch", "outcome", "amp SSIM (best ckpt)", "twin SSIM",
                         "constant SSIM"], rows)
        if dagger:
            lines += ["", "† no best-checkpoint eval (the trial did not end on its own: ASHA "
                          "stopped it, or it errored): the SSIMs of its latest eval epoch, "
                          "current weights."]
        fixed = [p for p in params if p not in key_params]
        lines += ["", "params: those that differ between trials"
                  + (f" (the same in every trial: {', '.join(f'{p}={_fmt(df[p].iloc[0], 3)}' for p in fixed)})"
                     if fixed else "") + ". amp SSIM near the constant-output SSIM means a flat "
                  "(collapsed) reconstruction; twin SSIM above amp SSIM means the twin image was "
                  "learnt."]
    errs = df[df["outcome"] == ERROR]
    if len(errs):
        lines += ["", "## Errored trials", ""]
        lines += _table(["trial", "status", "results", "error"],
                        [[f"`{r['trial_id']}`", r.get("status"), r.get("n_results"),
                          r.get("error")] for _, r in errs.iterrows()])
    lines += ["", "## Which settings collapse most", "", *collapse_tables(df, kinds)]
    lines += ["", "## Parameter importance", "", *importance_lines(exp)]
    lines += ["", "## Trials per node", "", *node_table(df)]
    lines += ["", "## Figures", "",
              "![learning curves](learning_curves.png)", "",
              "![parameters vs loss](params_vs_loss.png)", "",
              "![best reconstruction](best_reconstruction.png)", "",
              "![trials per node](trials_per_node.png)"]
    if exp.spec_note:
        notes.append(exp.spec_note)
    if rec_note and ranked:
        notes.append(rec_note if rec_note.startswith("best_reconstruction.png")
                     else f"best_reconstruction.png: {rec_note}")
    if notes:
        lines += ["", "## Notes", "", *[f"- {n}" for n in notes]]
    lines += ["", "Files: `trials.csv` (one row per trial), `results.parquet` (one row per trial "
                  "and epoch, config as `config/...` columns)."]
    (report_dir / "report.md").write_text("\n".join(lines) + "\n")

    summary = counts_line(df)
    if best is not None:
        summary += (f"\nbest trial: {best.trial_id} ({OUTCOME_LABELS[best.outcome]}), objective "
                    f"{_fmt(_finite(best.last.get(names.OBJECTIVE)))}, best_val_loss "
                    f"{_fmt(_finite(best.last.get(names.BEST_VAL_LOSS)))}")
    else:
        summary += "\nno trial reported a result"
    return Report(dir=report_dir, trials=df, best_trial_id=best.trial_id if best else None,
                  summary=summary, notes=notes)


def analyze(path: str, out: str | None = None) -> Path:
    """Write the report folder (default ``<experiment>/report/``) and return its path.

    An ``s3://`` (or other remote) experiment is copied to a temporary local directory first;
    its report is written to ``out`` (default ``./<name>-report``), returned, and when ``out`` is
    not given also uploaded to ``<experiment>/report/``.
    """
    if is_remote(str(path)):
        return _analyze_remote(str(path), out)
    return build_report(path, out).dir


def _analyze_remote(uri: str, out: str | None) -> Path:
    import pyarrow.fs as pafs

    fs, root = pafs.FileSystem.from_uri(uri)
    if fs.get_file_info(root.rstrip("/") + "/" + SPEC_FILE).type == pafs.FileType.NotFound:
        raise NotAnExperiment(f"{uri!r} is not a tune-ptycho experiment: no {SPEC_FILE}")
    name = root.rstrip("/").rsplit("/", 1)[-1]
    tmp = Path(tempfile.mkdtemp(prefix="tp-analyze-"))
    local = tmp / name
    try:
        pafs.copy_files(root, str(local), source_filesystem=fs,
                        destination_filesystem=pafs.LocalFileSystem())
        rep = build_report(local, out or Path.cwd() / f"{name}-report")
        if not out:
            pafs.copy_files(str(rep.dir), root.rstrip("/") + "/" + REPORT_DIR,
                            source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)
        return rep.dir
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


__all__ = ["analyze", "build_report", "best_trial", "export_best", "load_experiment",
           "load_best_model", "best_checkpoint_dir", "NotAnExperiment", "NoResults", "OUTCOMES"]
