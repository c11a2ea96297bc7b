"""The arms upstream's FNO stability study ran, as flat dicts of config paths; plain data.

``SEED_ARMS`` holds every arm of the upstream FNO stability study (FNO-STABILITY-OVERHAUL-001,
January 2026, on upstream's branch ``fno2``, since deleted: docs/physics.md §0), complete for the
knobs the search spaces search: architecture and stable block, optimizer and its own
hyperparameters, learning rate, schedule and clipping. What the arms held fixed that no space
searches (epochs, data, width) is the preset's business and is left out. ``ARM_SOURCES`` names the
part of the study each arm comes from; what each found is in docs/physics.md §7 and in the
comments below.

No import beyond the standard library: the search spaces project these arms onto each space
(:mod:`search_spaces.arms`, which needs Optuna), and ``bench/gpu_stage_a.py`` trains two of them
on a machine with torch alone.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ARM_SOURCES", "SEED_ARMS"]

# The parts of the upstream study each arm comes from (docs/physics.md §7).
_STAGE_A_PLAN = "FNO-STABILITY-OVERHAUL-001 overall plan, Stage A shoot-out (Phase 3)"
_LAYERSCALE_PLAN = "LayerScale stable_hybrid plan and its Stage A rerun (Phase 5)"
_LR_GUARD_PLAN = "stable_hybrid LR + gradient-guard sweep"
_OPTIMIZER_PLAN = "stable_hybrid optimizer + diagnostics sweep"

# Upstream defaults the arms ran with unless their command line said otherwise
# (docs/physics.md §4-5.4): Adam, betas (0.9, 0.999), lr 1e-3, constant LR ("Default").
_ADAM_1E3 = {"optim/name": "adam", "optim/lr": 1e-3, "optim/beta1": 0.9, "optim/beta2": 0.999}
_CONSTANT = {"sched/name": "constant"}
_NO_CLIP = {"clip/algorithm": "none"}  # upstream --torch-grad-clip 0.0 disables clipping
# LayerScale StablePtychoBlock (v2), gate init 1e-3: the stable_hybrid of every arm after Stage A.
_STABLE_LS = {
    "model/arch": "stable_hybrid",
    "model/stable_block": "layerscale",
    "model/layerscale_init": 1e-3,
}
# --torch-scheduler WarmupCosine --torch-lr-warmup-epochs 5 --torch-lr-min-ratio 0.05
_WARMUP_COSINE = {"sched/name": "warmup_cosine", "sched/warmup_epochs": 5, "sched/min_ratio": 0.05}

SEED_ARMS: dict[str, dict[str, Any]] = {
    # Stage A shoot-out (docs/physics.md §7.1), all Adam 1e-3, constant LR, 50 epochs: hybrid +
    # norm clip 1.0, the best (val_loss 0.0138, amp SSIM 0.925); stable_hybrid v1 (zero-gamma),
    # no clip, a constant output that never learns (0.1783, 0.277); hybrid + AGC 0.01 (0.0243,
    # 0.811).
    "stage_a_control": {
        "model/arch": "hybrid", **_ADAM_1E3, **_CONSTANT,
        "clip/algorithm": "norm", "clip/threshold": 1.0,
    },
    "stage_a_stable": {
        "model/arch": "stable_hybrid", "model/stable_block": "zero_gamma",
        **_ADAM_1E3, **_CONSTANT, **_NO_CLIP,
    },
    "stage_a_agc": {
        "model/arch": "hybrid", **_ADAM_1E3, **_CONSTANT,
        "clip/algorithm": "agc", "clip/threshold": 0.01,
    },
    # The Stage A stable arm rerun with LayerScale, no clip (§7.2): learns (best val_loss 0.0237
    # at epoch ~4), then collapses to 0.179.
    "stage_a_stable_layerscale": {**_STABLE_LS, **_ADAM_1E3, **_CONSTANT, **_NO_CLIP},
    # LR + gradient guard sweep on stable_hybrid + LayerScale, 20 epochs (§7.2): collapse in
    # every arm.
    "stable_lowlr": {**_STABLE_LS, **_ADAM_1E3, "optim/lr": 2.5e-4, **_CONSTANT, **_NO_CLIP},
    "stable_warmup_lowlr": {
        **_STABLE_LS, **_ADAM_1E3, "optim/lr": 2.5e-4, **_WARMUP_COSINE, **_NO_CLIP,
    },
    "stable_warmup_clip": {
        **_STABLE_LS, **_ADAM_1E3, "optim/lr": 5e-4, **_WARMUP_COSINE,
        "clip/algorithm": "norm", "clip/threshold": 0.5,
    },
    # Optimizer sweep on stable_hybrid + LayerScale, lr 3e-4, WarmupCosine(5, 0.05) (§7.2): the
    # same best (0.0237) and collapse (final 0.198) with either optimizer.
    "stable_sgd": {
        **_STABLE_LS, "optim/name": "sgd", "optim/lr": 3e-4, "optim/momentum": 0.9,
        "optim/weight_decay": 0.0, **_WARMUP_COSINE, **_NO_CLIP,
    },
    "stable_adamw": {
        **_STABLE_LS, "optim/name": "adamw", "optim/lr": 3e-4, "optim/weight_decay": 0.01,
        "optim/beta1": 0.9, "optim/beta2": 0.999, **_WARMUP_COSINE, **_NO_CLIP,
    },
}

ARM_SOURCES: dict[str, str] = {
    "stage_a_control": _STAGE_A_PLAN,
    "stage_a_stable": _STAGE_A_PLAN,
    "stage_a_agc": _STAGE_A_PLAN,
    "stage_a_stable_layerscale": _LAYERSCALE_PLAN,
    "stable_lowlr": _LR_GUARD_PLAN,
    "stable_warmup_lowlr": _LR_GUARD_PLAN,
    "stable_warmup_clip": _LR_GUARD_PLAN,
    "stable_sgd": _OPTIMIZER_PLAN,
    "stable_adamw": _OPTIMIZER_PLAN,
}
