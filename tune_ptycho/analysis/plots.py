"""The report's matplotlib figures: learning curves, parameters vs loss, the best reconstruction,
trials per node — the outcome colours and markers they share, and the "no data" placeholder
drawn when a figure has nothing to show.

matplotlib is imported where a figure is drawn (through :mod:`.canvas`, which picks the Agg
backend and saves at the project's resolution). Leaves out the collapse figure (beside the
collapse analysis, ``collapse_plot``), ``train``'s loss figure (:mod:`tune_ptycho.standalone`),
the tables the figures read (``tables``) and the report that links them (``report``), whose one
list of figures is :data:`tune_ptycho.storage.layout.REPORT_FIGURES`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ptycho_model import names

from ..outcomes import (
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
    num,
)
from ..storage.tune_files import row_epoch
from .best import held_out_split, load_best_model
from .load import Experiment, finite

if TYPE_CHECKING:  # pandas is imported where used: every CLI command imports this package
    import pandas as pd

COLORS = {
    FINISHED: "tab:green", STOPPED_EARLY: "tab:gray", COLLAPSED_RATIO: "tab:orange",
    COLLAPSED_FLAT: "tab:purple", COLLAPSED_AMP_FLAT: "tab:brown", DIVERGED: "tab:red",
    ERROR: "black", UNFINISHED: "tab:cyan",
}
MARKERS = {
    FINISHED: "o", STOPPED_EARLY: "s", COLLAPSED_RATIO: "X", COLLAPSED_FLAT: "P",
    COLLAPSED_AMP_FLAT: "d", DIVERGED: "*", ERROR: "D", UNFINISHED: ">",
}


def placeholder(path: Path, title: str, message: str) -> Path:
    """A figure that says "no data" and why: every figure file exists whatever the experiment."""
    from .canvas import plt, save_figure

    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.axis("off")
    ax.text(0.5, 0.6, "no data", ha="center", va="center", fontsize=20, color="0.4")
    ax.text(0.5, 0.3, message, ha="center", va="center", fontsize=9, wrap=True)
    ax.set_title(title)
    return save_figure(fig, path)


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

    from .canvas import plt, save_figure

    curves = []
    for t in exp.trials:
        pts = [(num(row_epoch(r)), num(r.get(names.VAL_LOSS))) for r in t.rows]
        stop = max((e for e, _ in pts if math.isfinite(e)), default=None)
        pts = [(e, v) for e, v in pts if math.isfinite(e) and math.isfinite(v)
               and 0 < v < names.DIVERGED_SENTINEL]
        if pts or (stop is not None and t.outcome == DIVERGED):
            curves.append((t, pts, stop))
    if not curves:
        return placeholder(path, "val_loss per epoch", "no trial reported a val_loss")
    best = exp.ranked()[0].trial_id if exp.ranked() else None
    fig, ax = plt.subplots(figsize=(8, 5), constrained_layout=True)
    top_edge = blended_transform_factory(ax.transData, ax.transAxes)
    for t, pts, stop in curves:
        is_best = t.trial_id == best
        style = dict(color=COLORS[t.outcome], marker=MARKERS[t.outcome], ms=8, linestyle="none",
                     markeredgecolor="k", markeredgewidth=0.5, zorder=4)
        if pts:
            e, v = zip(*pts, strict=True)
            ax.plot(e, v, color=COLORS[t.outcome], alpha=0.95 if is_best else 0.55,
                    lw=2.4 if is_best else 1.1, zorder=3 if is_best else 2)
        if t.outcome == DIVERGED:
            ax.plot([stop], [1.0], transform=top_edge, clip_on=False, **style)
        elif pts:
            ax.plot(e[-1], v[-1], **style)
            marks = _collapse_marks(t, dict(pts))
            for (me, mv), how in marks:
                ax.plot([me], [mv], linestyle="none", zorder=5, **how)
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
                                                          for t, _, _ in curves) else "")
                 + "; ^ spike, | collapse flagged)", fontsize=10)
    ax.grid(True, which="both", alpha=0.25)
    _outcome_legend(ax, [t.outcome for t, _, _ in curves], loc="best", title="outcome")
    return save_figure(fig, path)


def _loss_column(df: pd.DataFrame) -> str:
    import pandas as pd
    for c in (names.BEST_VAL_LOSS, names.OBJECTIVE):
        if c in df and pd.to_numeric(df[c], errors="coerce").notna().any():
            return c
    return names.BEST_VAL_LOSS


def params_vs_loss_figure(exp: Experiment, df: pd.DataFrame, kinds: dict[str, str],
                          path: Path) -> Path:
    import pandas as pd

    from .canvas import plt, save_figure

    params = [p for p in kinds if p in df]
    ycol = _loss_column(df)
    y_all = pd.to_numeric(df.get(ycol, pd.Series(dtype=float)), errors="coerce")
    if not params or not y_all.notna().any():
        why = "no searched parameters" if not params else f"no trial reported {ycol}"
        return placeholder(path, f"{ycol} vs parameters", why)
    ncols = min(3, len(params))
    nrows = math.ceil(len(params) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.4 * ncols, 3.5 * nrows + 0.6),
                             squeeze=False, constrained_layout=True)
    rng = np.random.default_rng(0)
    y_pos = bool((y_all[y_all.notna()] > 0).all())
    for ax, p in zip(axes.flat, params, strict=False):
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
    return save_figure(fig, path)


def best_reconstruction_figure(exp: Experiment, path: Path) -> tuple[Path, str | None]:
    """The best trial's best weights on test image 0. Returns (path, note or None)."""
    ranked = exp.ranked()
    if not ranked:
        placeholder(path, "best reconstruction", "no trial reported a result")
        return path, "no trial reported a result"
    try:
        from ptycho_model.evaluate import evaluate_test_image

        from .canvas import reconstruction_figure

        model, cfg, t, ckpt, epoch = load_best_model(exp.path)
        test, note = held_out_split(exp, cfg)
        metrics, pred, gt = evaluate_test_image(model, test)
        title = (f"best trial {t.trial_id}, best weights"
                 + (f" (epoch {epoch})" if epoch is not None else "")
                 + ": test image 0")
        reported = finite(t.last.get(names.BEST_CKPT_PREFIX + names.AMP_SSIM))
        if reported is not None:
            title += f" (amp_ssim reported in training: {reported:.3f})"
        scores = {k: metrics.get(k) for k in (names.AMP_SSIM, names.AMP_SSIM_TWIN,
                                              names.AMP_SSIM_CONSTANT, names.PHASE_SSIM,
                                              names.AMP_PSNR)}
        reconstruction_figure(pred, gt, path, title=title, scores=scores)
        return path, note
    except Exception as e:  # noqa: BLE001 - the report still builds; it says what went wrong
        msg = f"{type(e).__name__}: {e}"
        placeholder(path, "best reconstruction", msg[:200])
        return path, msg


def _node_label(node_id: Any, hostname: Any) -> str:
    nid = str(node_id)[:8] if node_id else "?"
    return f"{hostname or '?'} ({nid})"


def trials_per_node_figure(exp: Experiment, df: pd.DataFrame, path: Path) -> Path:
    import pandas as pd

    from .canvas import plt, save_figure

    d = df[df["node_id"].notna()].copy() if "node_id" in df else pd.DataFrame()
    if d.empty:
        return placeholder(path, "trials per node", "no trial reported its node")
    d["node"] = [_node_label(n, h) for n, h in zip(d["node_id"], d["hostname"], strict=True)]
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
        if math.isfinite(num(r["s"])) and math.isfinite(num(r["e"])):
            b.barh(i, max(r["e"] - r["s"], 1e-3), left=r["s"], color=COLORS[r["outcome"]],
                   height=0.7)
    b.set_yticks(range(len(d)))
    b.set_yticklabels([f"{n.split(' ')[0]}: {tid}"
                       for n, tid in zip(d["node"], d["trial_id"], strict=True)]
                      if len(d) <= 60 else [""] * len(d), fontsize=7)
    b.invert_yaxis()
    b.set_xlabel("seconds since the first trial started")
    b.set_title("trial timeline (colour = outcome)")
    b.grid(True, axis="x", alpha=0.25)
    return save_figure(fig, path)


def _collapse_marks(t, val_at: dict[float, float]) -> list[tuple[tuple[float, float], dict]]:
    """Where a trial spiked (^) and where the rule flagged it (|), on its val_loss curve."""
    from .collapses import collapse_epoch, spike_epoch

    out = []
    for epoch, how in ((spike_epoch(t), dict(marker="^", ms=9, color="tab:red", mec="k", mew=0.5)),
                       (collapse_epoch(t), dict(marker="|", ms=16, mew=2.2, color="k"))):
        if epoch is not None and epoch in val_at:
            out.append(((epoch, val_at[epoch]), how))
    return out
