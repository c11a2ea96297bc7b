"""The cliff map's reader and report: its plan (``cliff.json``), ``report/cliff.csv``,
``report/cliff.png`` and the "The cliff" section of ``report/report.md`` (the runs are
:mod:`tune_ptycho.run.cliff`'s rounds).

P_crash at a point counts its runs the collapse rule flagged or that diverged, over its ended
runs; the interval is Wilson's at 95%. An arm's cliff is where P_crash crosses 0.5. Its interval
runs from the largest axis value whose P_crash is surely below 0.5 (the interval's top under it)
to the smallest value surely above it (the interval's bottom over it); the point estimate is the
log-linear interpolation between the two values around the first crossing.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ptycho_model import names

from ..outcomes import COLLAPSED, DIVERGED, ERROR, UNFINISHED
from ..storage.layout import CLIFF_CSV, CLIFF_META, CLIFF_PNG, REPORT_DIR, REPORT_MD
from .collapses import wilson
from .crash_hunt import SEED_PATH, config_key
from .load import TrialRecord, finite, load_experiment

CSV_COLUMNS = ("arm", "value", "runs", "collapsed", "p_crash", "low", "high",
               "median_best_val_loss", "median_collapse_epoch", "pending")


@dataclass
class Plan:
    """A cliff map's plan, as ``cliff.json`` holds it: the points, the seeds, and its rounds
    (:mod:`tune_ptycho.run.cliff` makes and runs it)."""

    preset: str
    axis: str
    values: list[float]
    arms: dict[str, dict[str, Any]]  # arm -> its full point (every varied path but axis, seed)
    seeds: int  # per point per round
    halfwidth: float
    max_seeds: int
    base_seed: int
    sets: dict[str, Any]
    rounds: list[dict[str, Any]]  # [{"name": "round_1", "points": [[arm, value, seed], ...]}]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Plan:
        return cls(**d)

    def same_map(self, other: Plan) -> str | None:
        """The first setting in which ``other`` asks for another map than this one, or None."""
        for k in ("preset", "axis", "values", "arms", "seeds", "sets"):
            if getattr(self, k) != getattr(other, k):
                return k
        return None

    def point_params(self, arm: str, value: float, seed: int) -> dict[str, Any]:
        return {**self.arms[arm], self.axis: value, SEED_PATH: seed}

    @staticmethod
    def resolved_space(points: list[dict[str, Any]]) -> dict[str, Any]:
        """Every path of ``points`` as a categorical of the values they give it."""
        seen: dict[str, list] = {}
        for pt in points:
            for k, x in pt.items():
                if x not in seen.setdefault(k, []):
                    seen[k].append(x)
        return {k: {"choices": vals} for k, vals in seen.items()}


def read_plan(root: Path) -> Plan | None:
    """The plan in ``root``'s ``cliff.json``, or None when there is none."""
    f = root / CLIFF_META
    return Plan.from_dict(json.loads(f.read_text())) if f.is_file() else None


@dataclass
class Point:
    arm: str
    value: float
    runs: list[TrialRecord] = field(default_factory=list)  # ended runs
    planned: int = 0

    @property
    def crashed(self) -> int:
        return sum(1 for t in self.runs if t.outcome in (*COLLAPSED, DIVERGED))

    def row(self) -> dict[str, Any]:
        n, k = len(self.runs), self.crashed
        lo, hi = wilson(k, n)
        best = [b for b in (finite(t.last.get(names.BEST_VAL_LOSS)) for t in self.runs)
                if b is not None]
        flags = [next((r.get(names.EPOCH) for r in t.rows if r.get(names.COLLAPSED)), None)
                 for t in self.runs if t.outcome in COLLAPSED]
        flags = [f for f in flags if f is not None]
        return {"arm": self.arm, "value": self.value, "runs": n, "collapsed": k,
                "p_crash": k / n if n else math.nan, "low": lo, "high": hi,
                "median_best_val_loss": statistics.median(best) if best else math.nan,
                "median_collapse_epoch": statistics.median(flags) if flags else math.nan,
                "pending": self.planned - n}


@dataclass
class CliffMap:
    root: Path
    plan: Plan
    points: dict[tuple[str, float], Point]
    pending_rounds: set[str]

    def counts(self) -> dict[tuple[str, float], tuple[int, int]]:
        return {k: (p.crashed, len(p.runs)) for k, p in self.points.items()}

    def pending_in(self, round_name: str) -> bool:
        return round_name in self.pending_rounds

    def rows(self) -> list[dict[str, Any]]:
        return [self.points[(a, v)].row() for a in self.plan.arms for v in self.plan.values]

    def arm_rows(self, arm: str) -> list[dict[str, Any]]:
        return [self.points[(arm, v)].row() for v in self.plan.values]


def load_cliff(root: str | Path) -> CliffMap:
    """Every round's runs, each matched to its (arm, value) by its parameters."""
    root = Path(root)
    plan = read_plan(root)
    if plan is None:
        raise FileNotFoundError(f"{str(root)!r} holds no cliff map (no {CLIFF_META})")
    points = {(a, v): Point(a, v) for a in plan.arms for v in plan.values}
    pending: set[str] = set()
    for rnd in plan.rounds:
        by_key = {}
        for a, v, s in rnd["points"]:
            by_key[config_key(plan.point_params(a, v, s))] = (a, v)
            points[(a, v)].planned += 1
        d = root / rnd["name"]
        if not d.is_dir():
            pending.add(rnd["name"])
            continue
        exp = load_experiment(d, with_study=False)
        ended = 0
        for t in exp.trials:
            where = by_key.get(config_key(t.params))
            if where is None or t.outcome in (ERROR, UNFINISHED):
                continue
            points[where].runs.append(t)
            ended += 1
        if ended < len(rnd["points"]):
            pending.add(rnd["name"])
    return CliffMap(root, plan, points, pending)


@dataclass
class Cliff:
    arm: str
    estimate: float | None  # where P_crash crosses 0.5, log-interpolated; None: no crossing
    low: float | None  # largest value surely below 0.5 (None: none in the range)
    high: float | None  # smallest value surely above 0.5 (None: none in the range)

    def text(self, axis: str) -> str:
        lo = f"{self.low:g}" if self.low is not None else "below the range"
        hi = f"{self.high:g}" if self.high is not None else "not reached in the range"
        est = f"near {self.estimate:.3g}" if self.estimate is not None else "no crossing seen"
        return f"{self.arm}: P_crash crosses 0.5 {est}; the cliff lies between {lo} and {hi}"


def find_cliff(arm: str, rows: list[dict[str, Any]]) -> Cliff:
    done = [r for r in rows if r["runs"]]
    below = [r["value"] for r in done if r["high"] < 0.5]
    above = [r["value"] for r in done if r["low"] > 0.5]
    est = None
    for a, b in zip(done, done[1:], strict=False):
        if a["p_crash"] < 0.5 <= b["p_crash"]:
            t = (0.5 - a["p_crash"]) / (b["p_crash"] - a["p_crash"])
            est = math.exp(math.log(a["value"]) + t * (math.log(b["value"]) - math.log(a["value"])))
            break
    if est is None and done and done[0]["p_crash"] >= 0.5:
        est = done[0]["value"]
    hi = min((v for v in above if not below or v > max(below)), default=None)
    lo = max((v for v in below if hi is None or v < hi), default=None)
    return Cliff(arm, est, lo, hi)


def verdict_lines(cm: CliffMap) -> list[str]:
    """Where each arm's cliff lies, and which arms move it by more than the intervals."""
    axis = cm.plan.axis
    cliffs = [find_cliff(a, cm.arm_rows(a)) for a in cm.plan.arms]
    lines = [f"- {c.text(axis)}." for c in cliffs]
    for i, a in enumerate(cliffs):
        for b in cliffs[i + 1:]:
            if a.high is not None and b.low is not None and a.high <= b.low:
                word = f"{b.arm} moves the cliff up from {a.arm}'s (the intervals do not overlap)"
            elif b.high is not None and a.low is not None and b.high <= a.low:
                word = f"{b.arm} moves the cliff down from {a.arm}'s (the intervals do not overlap)"
            else:
                word = (f"{a.arm} against {b.arm}: not decided (the cliffs' intervals overlap or "
                        "are open)")
            lines.append(f"- {word}.")
    return lines


def write_csv(cm: CliffMap, path: Path) -> Path:
    import pandas as pd

    pd.DataFrame(cm.rows(), columns=list(CSV_COLUMNS)).to_csv(path, index=False)
    return path


def cliff_figure(cm: CliffMap, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for i, arm in enumerate(cm.plan.arms):
        rows = [r for r in cm.arm_rows(arm) if r["runs"]]
        if not rows:
            continue
        color = f"C{i}"
        x = [r["value"] for r in rows]
        p = [r["p_crash"] for r in rows]
        err = [[r["p_crash"] - r["low"] for r in rows], [r["high"] - r["p_crash"] for r in rows]]
        n = sum(r["runs"] for r in rows)
        ax.errorbar(x, p, yerr=err, marker="o", capsize=3, color=color,
                    label=f"{arm} ({n} runs)")
        c = find_cliff(arm, cm.arm_rows(arm))
        if c.estimate is not None:
            lo = c.low if c.low is not None else min(x)
            hi = c.high if c.high is not None else max(x)
            y = 0.5 + 0.025 * (i - (len(cm.plan.arms) - 1) / 2)  # arms' bars side by side
            ax.errorbar([c.estimate], [y], xerr=[[c.estimate - lo], [hi - c.estimate]],
                        marker="D", ms=8, color=color, capsize=5, lw=2, alpha=0.6)
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel(cm.plan.axis)
    ax.set_ylabel("P(collapse), Wilson 95%")
    ax.set_title(f"The cliff ({cm.plan.preset} preset): diamonds mark where P crosses 0.5, "
                 "with the cliff's interval", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def section_lines(cm: CliffMap) -> list[str]:
    from .markdown import md_table

    plan = cm.plan
    rows = cm.rows()
    widths = [(r["high"] - r["low"]) / 2 for r in rows if r["runs"]]
    lines = [f"{len(plan.arms)} arm(s) x {len(plan.values)} values of `{plan.axis}` at the "
             f"`{plan.preset}` preset, {sum(r['runs'] for r in rows)} runs in "
             f"{len(plan.rounds)} round(s) of {plan.seeds} paired seeds, no early stopping (the "
             f"collapse rule stops a flagged run). Target Wilson half-width {plan.halfwidth:g}, "
             f"at most {plan.max_seeds} runs a point; half-width reached: "
             + (f"{min(widths):.2f}-{max(widths):.2f}" if widths else "–") + ".", "",
             f"![cliff]({CLIFF_PNG})", ""]
    lines += verdict_lines(cm) + [""]
    table = [[r["arm"], f"{r['value']:g}", r["runs"], r["collapsed"], r["p_crash"],
              f"[{r['low']:.2f}, {r['high']:.2f}]" if r["runs"] else "–",
              r["median_best_val_loss"], r["median_collapse_epoch"], r["pending"]]
             for r in rows]
    lines += md_table(["arm", plan.axis, "runs", "collapsed", "P_crash", "95% CI",
                       "median best val_loss", "median epoch of collapse", "pending"], table)
    pending = sum(r["pending"] for r in rows)
    if pending:
        lines += ["", f"**{pending} run(s) have not ended**: run the same `tune-ptycho cliff` "
                      "command again to continue."]
    lines += ["", "Arms: " + "; ".join(
        f"`{a}` = " + (", ".join(f"{k}={v}" for k, v in p.items()) or "the preset as it is")
        for a, p in plan.arms.items())]
    return lines


def write_report(root: str | Path, out: str | Path | None = None) -> Path:
    root = Path(root)
    cm = load_cliff(root)
    out = Path(out) if out else root / REPORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    write_csv(cm, out / CLIFF_CSV)
    cliff_figure(cm, out / CLIFF_PNG)
    text = ["# Cliff map", "", "## The cliff", "", *section_lines(cm), ""]
    (out / REPORT_MD).write_text("\n".join(text))
    return out
