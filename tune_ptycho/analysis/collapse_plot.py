"""``collapse.png``, the report's "what collapses" figure, beside the analysis it draws
(:mod:`.collapses`): P(collapse) per searched parameter, the trials' outcome map and the spike.

matplotlib and pandas are imported where the figure is drawn.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from ptycho_model import names

from ..outcomes import OUTCOME_LABELS, num
from .collapses import COLLAPSED, WITH_RESULT, spike_epoch
from .load import Experiment
from .plots import COLORS, MARKERS, placeholder

if TYPE_CHECKING:
    import pandas as pd


def collapse_figure(exp: Experiment, df: pd.DataFrame, kinds: dict[str, str], bins: list,
                    importance: dict[str, float], path: Path) -> Path:
    """What collapses, at a glance: P(collapse) per searched parameter (bars, k/n on each), a
    two-parameter map of the trials' outcomes, and grad_norm_max per epoch of the collapsed
    trials beside the best healthy one (the spike shows there)."""
    import pandas as pd

    from .canvas import plt, save_figure

    d = df[df["outcome"].isin(WITH_RESULT)]
    if d.empty:
        return placeholder(path, "what collapses", "no trial reported a result")
    by_param: dict[str, list] = {}
    for b in bins:
        by_param.setdefault(b.param, []).append(b)
    varied = [p for p, bs in by_param.items() if len([b for b in bs if b.n]) > 1]
    order = sorted(varied, key=lambda p: (-importance.get(p, 0.0),
                                          -max(b.p for b in by_param[p] if b.n)))[:4]
    fig = plt.figure(figsize=(13, 8), constrained_layout=True)
    grid = fig.add_gridspec(2, max(2, len(order)))
    for i, p in enumerate(order):
        ax = fig.add_subplot(grid[0, i])
        bs = [b for b in by_param[p] if b.n]
        ax.bar(range(len(bs)), [b.p for b in bs], color="tab:orange", edgecolor="k", lw=0.5)
        for j, b in enumerate(bs):
            ax.annotate(f"{b.collapsed}/{b.n}", (j, b.p), ha="center", va="bottom", fontsize=8,
                        xytext=(0, 2), textcoords="offset points")
        ax.set_xticks(range(len(bs)), [b.label for b in bs], rotation=30, ha="right",
                      fontsize=7)
        ax.set_ylim(0, 1.15)
        imp = f"\n(importance {importance[p]:.2f})" if p in importance else ""  # 2 lines: fits
        ax.set_title(f"P(collapse) by {p}{imp}", fontsize=9)
    if not order:
        ax = fig.add_subplot(grid[0, :])
        ax.text(0.5, 0.5, "no searched parameter varies over trials with results",
                ha="center", va="center")
        ax.set_axis_off()
    # the map: the two most important numeric parameters (peak lr x warmup where searched)
    nums = [p for p in sorted(kinds, key=lambda p: -importance.get(p, 0.0))
            if kinds[p] != "categorical" and p in d]
    x_p = "optim/lr" if "optim/lr" in nums else (nums[0] if nums else None)
    rest = [p for p in nums if p != x_p]
    y_p = "sched/warmup_epochs" if "sched/warmup_epochs" in rest else (rest[0] if rest else None)
    ax = fig.add_subplot(grid[1, 0])
    if x_p is not None:
        x = pd.to_numeric(d[x_p], errors="coerce")
        y = pd.to_numeric(d[y_p], errors="coerce").fillna(0) if y_p else pd.Series(0, d.index)
        for o in dict.fromkeys(d["outcome"]):
            m = d["outcome"] == o
            ax.scatter(x[m], y[m], c=COLORS[o], marker=MARKERS[o], s=70, edgecolors="k",
                       linewidths=0.5, label=o.replace("_", " "), zorder=3)  # short: a small panel
        if kinds.get(x_p) == "log":
            ax.set_xscale("log")
        ax.set_xlabel(x_p)
        ax.set_ylabel((y_p or "-") + (" (0: not searched for that trial)" if y_p else ""))
        ax.set_title("outcome of each trial", fontsize=9)
        ax.grid(True, alpha=0.25)
        ax.legend(fontsize=7, loc="best")
    else:
        ax.set_axis_off()
    ax = fig.add_subplot(grid[1, 1:])
    collapsed = [t for t in exp.trials if t.outcome in COLLAPSED]
    ranked = [t for t in exp.ranked() if t.outcome not in COLLAPSED]
    shown = collapsed[:6] + ranked[:1]
    for t in shown:
        pts = [(num(r.get(names.EPOCH)), num(r.get(names.GRAD_NORM_MAX))) for r in t.rows]
        pts = [(e, v) for e, v in pts if math.isfinite(e) and math.isfinite(v) and v > 0]
        if not pts:
            continue
        e, v = zip(*pts, strict=True)
        healthy = t.outcome not in COLLAPSED
        ax.plot(e, v, color="tab:green" if healthy else COLORS[t.outcome], lw=2 if healthy else 1,
                label=f"{t.trial_id} ({'best healthy' if healthy else OUTCOME_LABELS[t.outcome]})")
        se = spike_epoch(t)
        if se is not None and se in e:
            ax.plot([se], [v[e.index(se)]], marker="^", ms=9, color="tab:red", mec="k", mew=0.5,
                    linestyle="none")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("grad_norm_max (pre-clip, per epoch)")
    ax.set_title("the spike: largest gradient norm per epoch (^ spike)", fontsize=9)
    ax.grid(True, which="both", alpha=0.25)
    if shown:
        ax.legend(fontsize=7, loc="best")
    n_col = int(d["outcome"].isin(COLLAPSED).sum())
    fig.suptitle(f"{exp.info.name}: what collapses ({n_col} of {len(d)} trials collapsed)")
    return save_figure(fig, path)
