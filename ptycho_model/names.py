"""Metric names and modes, and a checkpoint's file names: defined once, imported everywhere.

Analysis, stoppers, schedulers, the Optuna objective and dashboards key on these flat names
(docs/design.md, "Per-epoch metrics"). ``epoch`` is 1-based and equals Tune's
``training_iteration`` (which the service reads back in one place only:
``tune_ptycho.storage.tune_files.row_epoch``).
"""

from __future__ import annotations

EPOCH = "epoch"
TRAIN_LOSS = "train_loss"
VAL_LOSS = "val_loss"
BEST_VAL_LOSS = "best_val_loss"
BEST_EPOCH = "best_epoch"
COLLAPSE_RATIO = "collapse_ratio"
COLLAPSED = "collapsed"
COLLAPSE_KIND = "collapse_kind"
DIVERGED = "diverged"
OBJECTIVE = "objective"
LR = "lr"
GRAD_NORM = "grad_norm"
GRAD_NORM_MAX = "grad_norm_max"
OUTPUT_STD = "output_std"
# The same val subset's amplitude alone (std(|O|) / mean(|O|)) and phase alone (circular spread
# 1 - |mean(O / |O|)|, 0 for one phase): a collapse is a constant amplitude, whatever the phase
# does (docs/calibration.md, "The collapse rule, measured").
AMP_STD = "amp_std"
PHASE_STD = "phase_std"
# The amplitude's interquartile spread over the same subset, (q75 - q25) / median of |O|: robust to
# the few patches a collapsed generator still blows up (std/mean then reads 1-14 while the test
# image is constant); the amp_flat rule reads it.
AMP_IQR = "amp_iqr"
EPOCH_TIME_S = "epoch_time_s"

# Inside the model (ptycho_model.diagnostics), every epoch: the smallest block output's relative
# spread and the largest block's grad-norm / weight-norm ratio go into every row; the full
# per-block table (``LAYERS``) only into the trainer's history (history.json), not Tune's rows.
MIN_BLOCK_REL_STD = "min_block_rel_std"
MAX_BLOCK_GRAD_RATIO = "max_block_grad_ratio"
LAYERS = "layers"

# Reconstruction metrics, reported at eval epochs (test image 0, upstream's eval_reconstruction).
AMP_SSIM = "amp_ssim"
PHASE_SSIM = "phase_ssim"
AMP_MAE = "amp_mae"
PHASE_MAE = "phase_mae"
AMP_PSNR = "amp_psnr"
PHASE_PSNR = "phase_psnr"
AMP_FRC50 = "amp_frc50"
PHASE_FRC50 = "phase_frc50"
AMP_SSIM_TWIN = "amp_ssim_twin"
AMP_SSIM_CONSTANT = "amp_ssim_constant"  # the collapse fingerprint of this ground truth

EVAL_METRICS = (
    AMP_SSIM,
    PHASE_SSIM,
    AMP_MAE,
    PHASE_MAE,
    AMP_PSNR,
    PHASE_PSNR,
    AMP_FRC50,
    PHASE_FRC50,
    AMP_SSIM_TWIN,
    AMP_SSIM_CONSTANT,
)
BEST_CKPT_PREFIX = "best_ckpt_"

# Collapse kinds reported in ``collapse_kind``.
KIND_NONE = "none"
KIND_RATIO = "ratio"
KIND_FLAT = "flat"  # the complex output is constant
KIND_AMP_FLAT = "amp_flat"  # the amplitude is constant and val_loss is well above its best
COLLAPSE_KINDS = (KIND_NONE, KIND_RATIO, KIND_FLAT, KIND_AMP_FLAT)

# What every searcher and scheduler minimises.
MODE = "min"

# A finite stand-in for a non-finite loss: Optuna refuses NaN and would keep the trial RUNNING.
DIVERGED_SENTINEL = 1.0e3

# A trial checkpoint's trainer state (weights, optimizer, best weights as ``best_model``,
# collapse counters, RNG): written by the trainable, read by analysis, ``best`` and ``diagnose``.
STATE_FILE = "state.pt"

# Beside a trial checkpoint's state: the trainer's per-epoch metrics up to it, as JSON, so that
# epochs a killed driver never wrote to result.json can be recovered without loading the weights.
HISTORY_FILE = "history.json"
