"""The canvas every figure is drawn on, and the reconstruction panel.

matplotlib with the file-only Agg backend, :func:`save_figure` at the project's resolution, and
:func:`reconstruction_figure`, which both ``tune-ptycho train`` and ``tune-ptycho analyze`` draw.
The experiment's own figures are in :mod:`tune_ptycho.analysis.plots`.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ptycho_model.metrics import remove_plane  # noqa: E402


def save_figure(fig, path: str | Path) -> Path:
    """Write ``fig`` at the project's figure resolution (90 dpi) and close it."""
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def reconstruction_figure(pred: np.ndarray, gt: np.ndarray, path: str | Path, title: str = "",
                          scores: dict[str, float] | None = None) -> Path:
    """Amplitude and phase of test image 0: ground truth | prediction | their difference.

    The prediction's amplitude is mean-normalised to the ground truth's and both phases have their
    least-squares plane removed — what the metrics compare (docs/physics.md §6).
    """
    a_t, a_p = np.abs(gt), np.abs(pred)
    a_p = a_p * (a_t.mean() / a_p.mean()) if a_p.mean() > 0 else np.full_like(a_t, a_t.mean())
    p_t, p_p = remove_plane(np.angle(gt)), remove_plane(np.angle(pred))
    fig, axes = plt.subplots(2, 3, figsize=(11, 7), constrained_layout=True)
    rows = [("amplitude", a_t, a_p, "gray"), ("phase (rad)", p_t, p_p, "twilight")]
    for r, (label, t, p, cmap) in enumerate(rows):
        lo, hi = float(np.min(t)), float(np.max(t))
        for c, (img, name) in enumerate([(t, "ground truth"), (p, "prediction")]):
            im = axes[r, c].imshow(img, cmap=cmap, vmin=lo, vmax=hi)
            axes[r, c].set_title(f"{label}: {name}")
            fig.colorbar(im, ax=axes[r, c], shrink=0.8)
        d = axes[r, 2].imshow(p - t, cmap="coolwarm")
        axes[r, 2].set_title(f"{label}: difference")
        fig.colorbar(d, ax=axes[r, 2], shrink=0.8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    if scores:
        title = (title + "\n" if title else "") + "   ".join(
            f"{k} {v:.3f}" for k, v in scores.items() if v is not None and np.isfinite(v))
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)
