"""Inside a trial: its per-block history (``history.json``), where it went flat, and the figures.

The per-epoch block tables are written by the trainer (:mod:`ptycho_model.diagnostics`) into every
checkpoint's ``history.json``. This module reads them back, names the first block whose output
went flat and its epoch, draws the block x epoch map of output spread, and writes the report's
"Inside the collapsed trials" section with ``layers.png``. matplotlib is imported where used.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ptycho_model import names
from ptycho_model.config import CollapseConfig
from ptycho_model.diagnostics import first_flat

from ..outcomes import COLLAPSED as COLLAPSED_KINDS, DIVERGED
from ..storage.layout import CHECKPOINT_PREFIX, LAYERS_PNG
from .load import Experiment, TrialRecord
from .markdown import fmt, md_table

COLLAPSED = (*COLLAPSED_KINDS, DIVERGED)
GATE_KEYS = ("layerscale_mean", "layerscale_max", "norm_weight_mean")


def trial_history(t: TrialRecord) -> list[dict[str, Any]]:
    """The newest checkpoint's ``history.json`` of a trial: its epochs with their block tables
    (empty when no checkpoint is left, or it predates the diagnostics)."""
    if t.dir is None:
        return []
    found = sorted(t.dir.glob(f"{CHECKPOINT_PREFIX}*/{names.HISTORY_FILE}"))
    if not found:
        return []
    try:
        rows = json.loads(found[-1].read_text())
    except (OSError, ValueError):
        return []
    return [r for r in rows if isinstance(r, dict) and r.get(names.LAYERS)]


def flat_std_of(t: TrialRecord, exp: Experiment) -> float:
    cfg = t.cfg or exp.spec.run
    return cfg.collapse.flat_std if cfg is not None else CollapseConfig().flat_std


def gate_stats(row: dict[str, Any] | None) -> dict[str, float]:
    """Mean over blocks of each LayerScale / InstanceNorm statistic of one epoch (NaN: none)."""
    out = {}
    for key in GATE_KEYS:
        vals = [lay[key] for lay in (row or {}).get(names.LAYERS) or ()
                if lay.get(key) is not None]
        out[key] = sum(vals) / len(vals) if vals else math.nan
    return out


def inside_rows(exp: Experiment) -> list[dict[str, Any]]:
    """One record per collapsed (or diverged) trial: collapse epoch, first flat block and epoch,
    the gate statistics at its best epoch and at its end."""
    out = []
    for t in exp.trials:
        if t.outcome not in COLLAPSED:
            continue
        hist = trial_history(t)
        flat = first_flat(hist, flat_std_of(t, exp))
        collapse_epoch = next((r.get(names.EPOCH) for r in t.rows if r.get(names.COLLAPSED)),
                              None)
        best_epoch = t.last.get(names.BEST_EPOCH)
        at_best = next((r for r in hist if r.get(names.EPOCH) == best_epoch), None)
        out.append({"trial": t.trial_id, "outcome": t.outcome, "collapse_epoch": collapse_epoch,
                    "flat_block": flat[0] if flat else None,
                    "flat_epoch": flat[1] if flat else None, "best_epoch": best_epoch,
                    "at_best": gate_stats(at_best),
                    "at_end": gate_stats(hist[-1] if hist else None),
                    "history": hist})
    return out


def inside_lines(records: list[dict[str, Any]]) -> list[str]:
    """The report's "Inside the collapsed trials" section body."""
    if not records:
        return ["No trial collapsed or diverged."]
    rows = []
    for r in records:
        b, e = r["at_best"], r["at_end"]
        rows.append([f"`{r['trial']}`", r["collapse_epoch"], r["flat_block"] or "none",
                     r["flat_epoch"], r["best_epoch"],
                     f"{fmt(b['layerscale_mean'], 3)} / {fmt(e['layerscale_mean'], 3)}",
                     f"{fmt(b['norm_weight_mean'], 3)} / {fmt(e['norm_weight_mean'], 3)}"])
    lines = md_table(["trial", "collapse epoch", "first flat block", "its epoch", "best epoch",
                      "LayerScale |γ| best / end", "norm weight best / end"], rows)
    lines += ["", "A block is flat when its output's spread over the fixed val subset, relative "
                  "to its magnitude, falls below `collapse/flat_std`: it then answers every "
                  "patch alike. '-': the block has no such gate (hybrid blocks have neither). "
                  f"Per-block maps: `{LAYERS_PNG}`; one trial in full: `tune-ptycho diagnose "
                  "TRIAL_DIR`.", "", f"![inside the collapsed trials]({LAYERS_PNG})"]
    if all(r["flat_block"] is None for r in records):
        lines.insert(0, "")
        lines.insert(0, "No block of a collapsed trial went flat: the collapses were of the "
                        "loss, not of a dead layer.")
    return lines


def block_map(ax, history: list[dict[str, Any]], title: str, flat_std: float,
              mark: int | None = None):
    """Block (rows, forward order) x epoch (columns) map of log10 relative output spread."""
    import numpy as np

    blocks = [lay["name"] for lay in history[0][names.LAYERS]]
    grid = np.full((len(blocks), len(history)), np.nan)
    for j, row in enumerate(history):
        for lay in row[names.LAYERS]:
            if lay["name"] in blocks and lay.get("rel_std") is not None:
                grid[blocks.index(lay["name"]), j] = math.log10(max(lay["rel_std"], 1e-8))
    epochs = [row[names.EPOCH] for row in history]
    im = ax.imshow(grid, aspect="auto", cmap="magma", vmin=-8, vmax=0.5, interpolation="nearest",
                   extent=(epochs[0] - 0.5, epochs[-1] + 0.5, len(blocks) - 0.5, -0.5))
    ax.set_yticks(range(len(blocks)), blocks, fontsize=7)
    ax.set_xlabel("epoch")
    ax.set_title(title, fontsize=9)
    flat = first_flat(history, flat_std)
    if flat is not None:
        ax.plot([flat[1]], [blocks.index(flat[0])], marker="o", mfc="none", mec="cyan", ms=10,
                mew=2, label=f"first flat: {flat[0]} @ {flat[1]}")
        ax.legend(loc="lower left", fontsize=7)
    if mark:
        ax.axvline(mark, color="white", ls="--", lw=1)
    return im


def layers_figure(records: list[dict[str, Any]], healthy: tuple[str, list[dict[str, Any]]] | None,
                  flat_std: float, path: Path) -> Path:
    """``layers.png``: one block map per collapsed trial (up to 6) and the best trial's beside."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(f"{r['trial']} ({r['outcome']})", r["history"], r["collapse_epoch"])
              for r in records if r["history"]][:6]
    if healthy and healthy[1]:
        panels.append((f"{healthy[0]} (best trial)", healthy[1], None))
    if not panels:
        from .plots import placeholder
        placeholder(path, "inside the collapsed trials", "no per-block history on disk")
        return path
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.8 * cols, 3.4 * rows), squeeze=False)
    fig.subplots_adjust(wspace=0.55, hspace=0.45)
    im = None
    for ax, (title, hist, mark) in zip(axes.flat, panels, strict=False):
        im = block_map(ax, hist, title, flat_std, mark)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.colorbar(im, ax=axes, shrink=0.8, label="log10 relative output spread")
    fig.suptitle("Inside the trials: each block's output spread per epoch "
                 "(dark = flat; dashed: collapse flagged)", fontsize=10)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
