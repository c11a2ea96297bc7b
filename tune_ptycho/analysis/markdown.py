"""The report's Markdown pieces: value formatting, tables, and the sections that summarise the
experiment (spec, outcome counts, which settings collapse, parameter importance, nodes).

Each returns lines; pandas and optuna are imported where used. Leaves out the assembly of
``report.md`` and the files beside it (``report``).
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from typing import TYPE_CHECKING, Any

import numpy as np

from .load import (
    COLLAPSED_FLAT, COLLAPSED_RATIO, DIVERGED, ERROR, FINISHED, OUTCOME_LABELS, OUTCOMES,
    STOPPED_EARLY, UNFINISHED, Experiment,
)

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


def params_text(row: pd.Series, params: list[str]) -> str:
    parts = []
    for p in params:
        v = row.get(p)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            continue
        parts.append(f"{p}={fmt(v, 3)}")
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
        lines += ["", *md_table(["parameter", "value", "trials", "collapsed", "collapse rate"],
                                cat_rows)]
    if num_rows:
        lines += ["", *md_table(["parameter", "mean (collapsed)", "mean (not collapsed)",
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
    lines += md_table(["parameter", "importance"], [[k, v] for k, v in imp.items()])
    fixed = sorted(set(values) - set(varying))
    if fixed:
        lines += ["", "Not ranked (a single value across the COMPLETE trials): "
                      f"{', '.join(fixed)}."]
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
