"""An experiment as tables: ``trials.csv`` (one row per trial) and ``results.parquet`` (one row
per trial and epoch), plus the kind of each searched parameter (categorical, log or linear).

pandas is imported where used. Leaves out reading the experiment (``load``), what the tables are
drawn as (``plots``) and summarised as (``markdown``).
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ptycho_model import names
from ptycho_model.config import flatten

from ..storage.tune_files import row_epoch
from .load import Experiment, TrialRecord, finite

if TYPE_CHECKING:  # pandas is imported where used: every CLI command imports this package
    import pandas as pd

STAT_COLUMNS = (names.AMP_SSIM, names.BEST_CKPT_PREFIX + names.AMP_SSIM, names.AMP_SSIM_TWIN,
                names.BEST_CKPT_PREFIX + names.AMP_SSIM_TWIN, names.AMP_SSIM_CONSTANT)


def _iso(ts: float | None) -> str | None:
    if ts is None or not math.isfinite(ts):
        return None
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _times(t: TrialRecord) -> tuple[float | None, float | None]:
    starts = [v for r in t.rows if (v := finite(r.get("trial_start_ts"))) is not None]
    ends = [v for r in t.rows if (v := finite(r.get("report_ts", r.get("timestamp")))) is not None]
    start = min(starts) if starts else finite(t.start_state)
    end = max(ends) if ends else None
    return start, end


def _latest(rows: list[dict[str, Any]], key: str) -> float | None:
    for r in reversed(rows):
        v = finite(r.get(key))
        if v is not None:
            return v
    return None


def searched_params(exp: Experiment) -> list[str]:
    seen: dict[str, None] = {}
    for t in exp.trials:
        for k in t.params:
            seen.setdefault(k, None)
    return list(seen)


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
            "last_epoch": finite(row_epoch(last)),
            names.BEST_VAL_LOSS: finite(last.get(names.BEST_VAL_LOSS)),
            names.BEST_EPOCH: finite(last.get(names.BEST_EPOCH)),
            names.VAL_LOSS: finite(last.get(names.VAL_LOSS)),
            names.OBJECTIVE: finite(last.get(names.OBJECTIVE)),
        })
        # eval metrics: the latest epoch that reported them (eval epochs are every k epochs;
        # best_ckpt_* only at a trial's own end, not when ASHA stopped it)
        for c in STAT_COLUMNS:
            rec[c] = _latest(t.rows, c)
        if rec[names.AMP_SSIM_CONSTANT] is None:
            rec[names.AMP_SSIM_CONSTANT] = _latest(t.rows,
                                                   names.BEST_CKPT_PREFIX + names.AMP_SSIM_CONSTANT)
        rec["eval_epoch"] = next((r.get(names.EPOCH) for r in reversed(t.rows)
                                  if finite(r.get(names.AMP_SSIM)) is not None), None)
        rec.update({
            "node_id": last.get("node_id"), "hostname": last.get("hostname"),
            "start_time": _iso(start), "end_time": _iso(end), "start_ts": start, "end_ts": end,
            "wall_s": (end - start) if start is not None and end is not None else None,
            "time_total_s": finite(last.get("time_total_s")),
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


def write_parquet(df: pd.DataFrame, path: Path) -> None:
    """``df.to_parquet``; a column mixing types pyarrow cannot unify is written as strings."""
    try:
        df.to_parquet(path, index=False)
        return
    except Exception:  # noqa: BLE001 - a column mixing types pyarrow cannot unify
        pass
    df = df.copy()
    for c in df.columns:
        if df[c].dtype == object:
            df[c] = df[c].map(lambda v: None
                              if v is None or (isinstance(v, float) and math.isnan(v))
                              else str(v))
    df.to_parquet(path, index=False)


def param_kinds(exp: Experiment, params: list[str], df: pd.DataFrame) -> dict[str, str]:
    """``categorical`` | ``log`` | ``linear`` per parameter: the study's distributions first,
    then the named space's, then the values (numeric spanning more than 2 decades -> log)."""
    import optuna.distributions as od
    import pandas as pd

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

        for k, ds in distributions(exp.spec.space).items():
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
        vals = [v for v in col.tolist()
                if v is not None and not (isinstance(v, float) and math.isnan(v))]
        numeric = vals and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                               for v in vals)
        if not numeric and not ds:
            kinds[p] = "categorical"
        elif numeric and min(vals) > 0 and max(vals) / min(vals) > 100:
            kinds[p] = "log"
        else:
            kinds[p] = "linear" if (numeric or ds) else "categorical"
    return kinds
