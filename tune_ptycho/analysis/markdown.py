"""The report's Markdown pieces: value formatting, tables, and the sections that summarise the
experiment (spec, outcome counts, what collapses, parameter importance, nodes).

Each returns lines; pandas and optuna are imported where used. Leaves out the assembly of
``report.md`` and the files beside it (``report``).
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ptycho_model import names

from ..outcomes import (
    COLLAPSED,
    COLLAPSED_AMP_FLAT,
    COLLAPSED_FLAT,
    COLLAPSED_RATIO,
    DIVERGED,
    ERROR,
    FINISHED,
    OUTCOME_LABELS,
    OUTCOMES,
    STOPPED_EARLY,
    UNFINISHED,
)
from ..run.schedulers import TRIAL_SCHEDULERS
from ..storage.layout import COLLAPSE_PNG
from .collapses import SPIKE_FACTOR
from .load import Experiment

if TYPE_CHECKING:  # pandas is imported where used: every CLI command imports this package
    import pandas as pd


def fmt(v: Any, digits: int = 4) -> str:
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


def md_table(header: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(fmt(c) for c in r) + " |" for r in rows]
    return out


def counts(df: pd.DataFrame) -> dict[str, int]:
    c = Counter(df["outcome"]) if "outcome" in df else Counter()
    return {o: int(c.get(o, 0)) for o in OUTCOMES}


def counts_line(df: pd.DataFrame) -> str:
    c = counts(df)
    line = (f"Trials: {len(df)} — finished {c[FINISHED]}, stopped early by ASHA "
            f"{c[STOPPED_EARLY]}, collapsed {sum(c[o] for o in COLLAPSED)} "
            f"(ratio {c[COLLAPSED_RATIO]}, flat {c[COLLAPSED_FLAT]}, flat amplitude "
            f"{c[COLLAPSED_AMP_FLAT]}), diverged {c[DIVERGED]}, "
            f"errored {c[ERROR]}")
    if c[UNFINISHED]:
        line += f", unfinished {c[UNFINISHED]}"
    return line


def varying_params(df: pd.DataFrame, params: list[str]) -> list[str]:
    """The parameters that take more than one value (absent counts as a value) across trials."""
    out = [p for p in params if p in df and df[p].astype(str).nunique(dropna=False) > 1]
    return out or params


def params_text(row: pd.Series, params: list[str]) -> str:
    parts = []
    for p in params:
        v = row.get(p)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            continue
        parts.append(f"{p}={fmt(v, 3)}")
    return ", ".join(parts) or "–"


@dataclass(frozen=True)
class Importance:
    """Optuna's parameter importance over the study's COMPLETE trials, or why there is none."""

    values: dict[str, float]
    n_complete: int
    fixed: list[str]  # parameters with a single value across the COMPLETE trials
    why_none: str | None = None


def param_importance(exp: Experiment, target=None) -> Importance:
    """``get_param_importances`` (default evaluator) for the objective, or for ``target`` (a
    function of a FrozenTrial: the collapse flag), over the parameters that vary."""
    if exp.study is None:
        return Importance({}, 0, [], f"study not available ({exp.study_error or 'not loaded'})")
    import optuna

    try:
        complete = exp.study.get_trials(deepcopy=False,
                                        states=(optuna.trial.TrialState.COMPLETE,))
        if len(complete) < 2:
            return Importance({}, len(complete), [],
                              f"{len(complete)} COMPLETE trials in the study")
        values: dict[str, set[str]] = {}
        for tr in complete:
            for k, v in tr.params.items():
                values.setdefault(k, set()).add(repr(v))
        varying = [k for k, v in values.items() if len(v) > 1]
        fixed = sorted(set(values) - set(varying))
        if not varying:
            return Importance({}, len(complete), fixed, "no parameter takes two values")
        if target is not None and len({target(t) for t in complete}) < 2:
            return Importance({}, len(complete), fixed, "the target is the same for every trial")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            imp = optuna.importance.get_param_importances(exp.study, params=varying,
                                                          target=target)
    except Exception as e:  # noqa: BLE001 - too few trials, a single-value parameter, ...
        return Importance({}, 0, [], f"{type(e).__name__}: {e}")
    if not imp:
        return Importance({}, len(complete), fixed, "no parameter varies")
    return Importance(dict(imp), len(complete), fixed)


def importance_lines(exp: Experiment) -> list[str]:
    imp = param_importance(exp)
    if exp.study is None and (exp.study_error or "").startswith("the study was not opened"):
        return [f"Parameter importance: {exp.study_error}."]
    if imp.why_none:
        return [f"Not enough completed trials for parameter importance ({imp.why_none})."]
    lines = [f"Optuna `get_param_importances` (default evaluator) over {imp.n_complete} COMPLETE "
             "study trials" + (" — few trials, read it as a hint only." if imp.n_complete < 10
                               else "."), ""]
    lines += md_table(["parameter", "importance"], [[k, v] for k, v in imp.values.items()])
    if imp.fixed:
        lines += ["", "Not ranked (a single value across the COMPLETE trials): "
                      f"{', '.join(imp.fixed)}."]
    return lines


def what_collapses_lines(exp: Experiment, df: pd.DataFrame, kinds: dict[str, str], bins: list,
                         for_collapse: Importance) -> list[str]:
    """The "What collapses" section: the verdict, the collapsed trials, P(collapse) per
    parameter with its counts, and the importance for collapse beside that for the objective."""
    from .collapses import COLLAPSED, collapse_epoch, spike_epoch, verdict_lines

    lines = [*verdict_lines(df, kinds, bins), ""]
    collapsed = [t for t in exp.trials if t.outcome in COLLAPSED]
    if collapsed:
        rows = []
        for t in collapsed:
            last = t.last
            rows.append([f"`{t.trial_id}`", OUTCOME_LABELS[t.outcome],
                         last.get(names.BEST_VAL_LOSS), last.get(names.BEST_EPOCH),
                         spike_epoch(t) or "-", collapse_epoch(t) or "-",
                         last.get(names.EPOCH), last.get(names.VAL_LOSS)])
        lines += md_table(["trial", "kind", "best val_loss", "best epoch", "spike epoch",
                           "flagged at", "stopped at", "val_loss at stop"], rows)
        lines += ["", f"A spike is an epoch whose val_loss or train_loss exceeds "
                      f"{SPIKE_FACTOR:g}x the best val_loss before it.", ""]
    nonempty: dict[str, int] = {}
    for b in bins:
        nonempty[b.param] = nonempty.get(b.param, 0) + (b.n > 0)
    shown = [b for b in bins if b.n and nonempty[b.param] > 1]  # parameters that vary
    if shown:
        lines += ["P(collapse) per searched parameter, over the trials that have it (a "
                  "conditional parameter exists only where its condition held):", ""]
        lines += md_table(["parameter", "value / bin", "trials", "collapsed", "P(collapse)"],
                          [[b.param, b.label, b.n, b.collapsed, f"{b.p:.0%}"] for b in shown])
        lines.append("")
    objective = param_importance(exp)
    if for_collapse.why_none and objective.why_none:
        lines.append(f"Importance: none ({for_collapse.why_none}).")
    else:
        ps = list(dict.fromkeys([*for_collapse.values, *objective.values]))
        lines += ["Optuna's importance with the collapse flag as the target, beside the "
                  f"importance for the objective ({for_collapse.n_complete or objective.n_complete}"
                  " COMPLETE trials; a conditional parameter is skipped):", ""]
        lines += md_table(["parameter", "for collapse", "for the objective"],
                          [[p, for_collapse.values.get(p, "-"), objective.values.get(p, "-")]
                           for p in ps])
        if for_collapse.why_none:
            lines += ["", f"No importance for collapse: {for_collapse.why_none}."]
    lines += ["", f"![what collapses]({COLLAPSE_PNG})"]
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
                     busy,
                     g["start_time"].dropna().min() if g["start_time"].notna().any() else None,
                     g["end_time"].dropna().max() if g["end_time"].notna().any() else None])
    return md_table(["node_id", "hostname", "trials", "outcomes", "trial seconds", "first start",
                     "last end"], rows)


def spec_lines(exp: Experiment) -> list[str]:
    s = exp.spec
    r = s.run
    entry = TRIAL_SCHEDULERS.get(s.scheduler.name)  # an older spec: read leniently
    sched = (entry.report_line(s) if entry is not None
             else f"{s.scheduler.name!r} (not a trial scheduler this version knows)")
    return [
        f"- space `{s.search.space}`, preset `{s.preset}`, num_samples {s.search.num_samples}, "
        f"sampler seed {s.search.seed}, max_concurrent {s.search.max_concurrent}",
        f"- model `{r.model.arch}` (width {r.model.width}, blocks {r.model.blocks}, modes "
        f"{r.model.modes}), max_epochs {r.train.max_epochs}, batch {r.train.batch_size}, "
        f"loss `{r.train.loss}`",
        f"- scheduler: {sched}",
        f"- collapse: ratio {r.collapse.ratio}, patience {r.collapse.patience}, grace "
        f"{r.collapse_grace}{' (default)' if r.collapse.grace is None else ''}, flat_std "
        f"{r.collapse.flat_std}",
        f"- data: N {r.data.N}, probe `{r.data.probe}`, object size {r.data.size}, "
        f"n_train {r.data.n_train}, n_test {r.data.n_test}, nphotons {r.data.nphotons:g}",
        f"- study: `{exp.info.study_url}` (study `{exp.info.name}`)",
    ]
