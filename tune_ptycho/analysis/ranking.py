"""Which trial is best, and how the best trial is described wherever it is shown.

The best trial has the lowest final objective, ties broken by best_val_loss (:func:`rank_key`).
:func:`best_lines` is the one text of it: ``tune-ptycho run`` prints it at the end of a study,
``tune-ptycho best`` prints it for a finished experiment, and the report's summary quotes its
scores line. No pandas, matplotlib, torch or ray here: every command imports it.
"""

from __future__ import annotations

import math
from typing import Any

from ptycho_model import names
from ptycho_model.config import flatten

__all__ = ["best_lines", "describe_params", "rank_key", "scores_line"]


def _finite_or_inf(x: Any) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return math.inf
    return v if math.isfinite(v) else math.inf


def rank_key(metrics: dict[str, Any]) -> tuple[float, float]:
    """The sort key of a trial's final metrics: (objective, best_val_loss), missing ones last."""
    return _finite_or_inf(metrics.get(names.OBJECTIVE)), _finite_or_inf(
        metrics.get(names.BEST_VAL_LOSS))


def describe_params(config: dict[str, Any]) -> str:
    """``{"optim": {"lr": 3e-4}}`` -> ``"optim/lr=0.0003"``, one entry per config path."""
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in flatten(config).items())


def _g(x: Any) -> str:
    v = _finite_or_inf(x)
    return f"{v:.4g}" if math.isfinite(v) else str(x)


def scores_line(m: dict[str, Any]) -> str:
    """``objective 0.051, best_val_loss 0.051 at epoch 25, stopped at epoch 25 (not collapsed)``."""
    state = (f"collapsed {m.get(names.COLLAPSE_KIND)}" if m.get(names.COLLAPSED)
             else "diverged" if m.get(names.DIVERGED) else "not collapsed")
    return (f"objective {_g(m.get(names.OBJECTIVE))}, "
            f"best_val_loss {_g(m.get(names.BEST_VAL_LOSS))}"
            f" at epoch {m.get(names.BEST_EPOCH)}, stopped at epoch {m.get(names.EPOCH)} ({state})")


def best_lines(trial_id: str, config: dict[str, Any], metrics: dict[str, Any],
               checkpoint: str | None, trial_dir: str | None = None) -> list[str]:
    """The best trial as printed: its id, config, scores, amp SSIM and where its weights are.

    ``checkpoint`` is the trial's newest checkpoint as the user can reach it (a remote one with
    its scheme); its ``state.pt`` holds the trial's best weights as ``best_model``.
    """
    m = metrics
    lines = [f"best trial: {trial_id}"]
    if trial_dir:
        lines.append(f"  trial dir: {trial_dir}")
    lines += [f"  config: {describe_params(config) or '-'}", f"  {scores_line(m)}"]
    ssim = m.get(names.BEST_CKPT_PREFIX + names.AMP_SSIM, m.get(names.AMP_SSIM))
    const = (m.get(names.AMP_SSIM_CONSTANT)
             or m.get(names.BEST_CKPT_PREFIX + names.AMP_SSIM_CONSTANT))
    if ssim is not None:
        extra = f" (constant-output fingerprint {const:.3f})" if const is not None else ""
        lines.append(f"  amp SSIM of its best weights {ssim:.3f}{extra}")
    lines.append("  best weights: " + (f"best_model in {checkpoint}/{names.STATE_FILE}"
                                       if checkpoint else "none left on disk"))
    return lines
