"""A crash hunt's results: P_crash per configuration, with its interval, and the robust ranking.

Reads ``EXPERIMENT/crash_hunt/`` (:mod:`tune_ptycho.run.crash_hunt`) into one row per configuration:
its parameters, ``runs``, ``collapsed`` (collapsed or diverged) and one column per kind,
``p_crash`` with its 95% Wilson interval (``scipy.stats.binomtest``), the mean and the worst
``best_val_loss``, the mean amp SSIM of the runs' best weights, and the robust objective.

**The robust objective** of a configuration is its worst seed's final objective: the highest
``objective`` (the last epoch's val_loss; the divergence sentinel for a diverged run) over its
runs. A run the collapse rule stopped ends above ``collapse/ratio`` x its best, or with a flat
output, so one collapse in S seeds costs the configuration its rank, while a configuration that
is good on every seed keeps it. Ties go to the lower mean best_val_loss. The robust winner is the
configuration with the lowest robust objective; its *best seed run* (lowest best_val_loss) holds
the weights ``best --export`` writes.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ptycho_model import names

from ..outcomes import (
    COLLAPSED_AMP_FLAT,
    COLLAPSED_FLAT,
    COLLAPSED_RATIO,
    DIVERGED,
    ERROR,
    UNFINISHED,
)
from ..storage.layout import CRASH_HUNT_CSV, CRASH_HUNT_DIR, CRASH_HUNT_META
from .collapses import wilson
from .load import Experiment, TrialRecord, finite, load_experiment

SEED_PATH = "train/seed"  # the one path a crash hunt's runs (and a cliff map's) vary

KIND_COLUMNS = {COLLAPSED_RATIO: "collapsed_ratio", COLLAPSED_FLAT: "collapsed_flat",
                COLLAPSED_AMP_FLAT: "collapsed_amp_flat",
                DIVERGED: "diverged"}


def config_key(params: dict[str, Any], leave_out: tuple[str, ...] = ()) -> str:
    """A run's parameters as one string to match on (a crash hunt's configuration leaves out
    the seed; a cliff map's point run keeps it): numbers as floats, since a value enqueued as 1
    may come back from Optuna as 1.0."""
    def norm(v: Any) -> Any:
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v

    return json.dumps({k: norm(v) for k, v in params.items() if k not in leave_out},
                      sort_keys=True, default=str)


@dataclass
class ConfigResult:
    params: dict[str, Any]
    source_trial: str
    runs: list[TrialRecord]
    pending: int  # runs of the plan not (yet) ended: unfinished or errored

    def row(self) -> dict[str, Any]:
        n = len(self.runs)
        kinds = {col: sum(1 for t in self.runs if t.outcome == o)
                 for o, col in KIND_COLUMNS.items()}
        crashed = sum(kinds.values())
        lo, hi = wilson(crashed, n)
        best = [finite(t.last.get(names.BEST_VAL_LOSS)) for t in self.runs]
        best = [b for b in best if b is not None]
        ssim = [finite(t.last.get(names.BEST_CKPT_PREFIX + names.AMP_SSIM)) for t in self.runs]
        ssim = [s for s in ssim if s is not None]
        finals = [finite(t.last.get(names.OBJECTIVE)) for t in self.runs]
        finals = [math.inf if f is None else f for f in finals]
        return {**self.params, "source_trial": self.source_trial, "runs": n,
                "pending": self.pending, "collapsed": crashed, **kinds,
                "p_crash": crashed / n if n else math.nan, "p_crash_low": lo, "p_crash_high": hi,
                "mean_best_val_loss": sum(best) / len(best) if best else math.nan,
                "worst_best_val_loss": max(best) if best else math.nan,
                "mean_best_amp_ssim": sum(ssim) / len(ssim) if ssim else math.nan,
                "robust_objective": max(finals) if finals else math.inf,
                "best_run": self.best_run.trial_id if self.best_run else None}

    @property
    def best_run(self) -> TrialRecord | None:
        done = [t for t in self.runs if finite(t.last.get(names.BEST_VAL_LOSS)) is not None]
        return min(done, key=lambda t: finite(t.last.get(names.BEST_VAL_LOSS))) if done else None


@dataclass
class CrashHunt:
    path: Path
    meta: dict[str, Any]
    exp: Experiment
    configs: list[ConfigResult]  # robust winner first

    def rows(self) -> list[dict[str, Any]]:
        return [dict(c.row(), rank=i + 1) for i, c in enumerate(self.configs)]

    @property
    def winner(self) -> ConfigResult | None:
        return self.configs[0] if self.configs and self.configs[0].runs else None


def _robust_key(c: ConfigResult) -> tuple[float, float, str]:
    r = c.row()
    mean = r["mean_best_val_loss"]
    return (r["robust_objective"] if c.runs else math.inf,
            mean if math.isfinite(mean) else math.inf, c.source_trial)


def load_crash_hunt(experiment: str | Path) -> CrashHunt | None:
    """The crash hunt of the experiment at ``experiment`` (a local directory), or None."""
    root = Path(experiment) / CRASH_HUNT_DIR
    if not (root / CRASH_HUNT_META).is_file():
        return None
    meta = json.loads((root / CRASH_HUNT_META).read_text())
    exp = load_experiment(root, with_study=False)
    by_key: dict[str, ConfigResult] = {}
    for c in meta["configs"]:
        by_key[config_key(c["params"], (SEED_PATH,))] = ConfigResult(
            dict(c["params"]), c["source_trial"], [], 0)
    planned = len(meta["seeds"])
    for t in exp.trials:
        c = by_key.get(config_key(t.params, (SEED_PATH,)))
        if c is not None and t.outcome not in (ERROR, UNFINISHED):
            c.runs.append(t)
    for c in by_key.values():
        c.pending = planned - len(c.runs)
    return CrashHunt(path=root, meta=meta, exp=exp,
                     configs=sorted(by_key.values(), key=_robust_key))


def write_csv(hunt: CrashHunt, path: Path) -> Path:
    import pandas as pd

    pd.DataFrame(hunt.rows()).to_csv(path, index=False)
    return path


def section_lines(hunt: CrashHunt, single_best: str | None) -> list[str]:
    """The report's "Crash hunt" section."""
    import pandas as pd

    from .markdown import md_table, params_text, varying_params

    rows = hunt.rows()
    df = pd.DataFrame(rows)
    keys = varying_params(df, [p for p in rows[0] if "/" in p]) if rows else []
    seeds = hunt.meta["seeds"]
    lines = [f"{len(hunt.configs)} configuration(s), the lowest best_val_loss of the study, each "
             f"rerun over {len(seeds)} new seeds (`train/seed` = {', '.join(map(str, seeds))}), "
             "no early stopping. P_crash counts collapsed and diverged runs; the interval is "
             "Wilson's at 95%. Ranked by the robust objective: the worst seed's final objective "
             "(docs/design.md, \"Ranking\").", ""]
    table = []
    for r in rows:
        table.append([r["rank"], f"`{r['source_trial']}`", params_text(pd.Series(r), keys),
                      r["runs"], r["collapsed"], r["p_crash"],
                      f"[{r['p_crash_low']:.2f}, {r['p_crash_high']:.2f}]"
                      if r["runs"] else "–", r["mean_best_val_loss"], r["worst_best_val_loss"],
                      r["robust_objective"], r["mean_best_amp_ssim"]])
    lines += md_table(["rank", "from trial", "params", "runs", "crashed", "P_crash", "95% CI",
                       "mean best_val_loss", "worst best_val_loss", "robust objective",
                       "mean amp SSIM"], table)
    pending = sum(c.pending for c in hunt.configs)
    if pending:
        lines += ["", f"**{pending} run(s) of the plan have not ended**: continue with "
                      f"`tune-ptycho resume {hunt.path}`."]
    w = hunt.winner
    if w is not None:
        same = " — the same configuration as the single best trial" if (
            single_best == w.source_trial) else ""
        lines += ["", f"**Robust winner: the configuration of `{w.source_trial}`**{same}; its "
                      f"best seed run is `{w.best_run.trial_id if w.best_run else '–'}`. "
                      "`tune-ptycho best --export` writes its weights (`--single` for the single "
                      f"best trial). Per-run details: `{CRASH_HUNT_CSV}`, and `tune-ptycho analyze "
                      f"{hunt.path}`."]
    return lines
