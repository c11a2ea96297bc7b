"""Named define-by-run search spaces over the run config's ``/``-joined paths.

Each space is a module-level function of an :class:`optuna.Trial` (Ray pickles it by reference)
that only calls ``trial.suggest_*``, branching on categorical values, and returns ``None``:
presets and the experiment spec own every value that is not searched. The parameter names are
config paths (``optim/lr`` arrives in a Tune trial as ``config["optim"]["lr"]``).

The spaces follow the upstream FNO stability study's plans (``seeds.py`` lists its arms):

``stage_a``
    ``model/arch`` x ``clip/algorithm`` (the Stage A shoot-out), with ``model/stable_block`` for
    ``stable_hybrid``: Stage A ran the zero-gamma block (v1) and then reran its stable arm with
    LayerScale (v2), so both blocks are Stage A arms and both are searched.
``lr_guard``
    ``optim/lr``, the schedule (constant | warmup_cosine) and norm clipping. The upstream sweep
    held ``stable_hybrid`` + LayerScale fixed: the architecture comes from the preset or
    ``--set model/arch=stable_hybrid``.
``optimizer``
    adam | adamw | sgd with their own hyperparameters. The upstream sweep held WarmupCosine
    (warmup 5, min ratio 0.05) fixed: the schedule comes from the preset or ``--set``.
``full``
    all of the above, plus ``model/layerscale_init`` for ``stable_hybrid`` with the LayerScale
    block.

Ranges (float ranges are log-uniform unless marked *uniform*):

=====================  ========================  =====================================
path                   range                     suggested when
=====================  ========================  =====================================
optim/lr               [1e-5, 3e-3]              always (lr_guard, optimizer, full)
optim/momentum         [0.5, 0.99] *uniform*     optim/name == sgd
optim/weight_decay     [1e-6, 1e-1]              optim/name in {adamw, sgd}
optim/beta1            [0.8, 0.95] *uniform*     optim/name in {adam, adamw}
optim/beta2            [0.9, 0.9999] *uniform*   optim/name in {adam, adamw}
sched/warmup_epochs    int [0, 5]                sched/name == warmup_cosine
sched/min_ratio        [0.01, 0.5]               sched/name == warmup_cosine
clip/threshold         [0.1, 10] (max norm)      clip/algorithm == norm
clip/threshold         [1e-3, 0.3] (AGC lambda)  clip/algorithm == agc
model/stable_block     zero_gamma | layerscale   model/arch == stable_hybrid
model/layerscale_init  [1e-5, 1e-1]              stable_hybrid + layerscale (full only)
=====================  ========================  =====================================

``clip/threshold`` means a different quantity per algorithm, so its range is conditional on the
algorithm; both ranges share the one config path and are log-scaled, which Optuna accepts for one
name (grouped multivariate TPE sees both scales under that name; a joint sample that falls outside
the current branch's range is redrawn by univariate TPE inside it). The config validator rejects
``sched/warmup_epochs >= train/max_epochs`` for warmup_cosine, so a space that searches the warmup
needs ``train/max_epochs > MAX_WARMUP_EPOCHS`` (the ``tiny`` preset's 3 epochs are too few).
"""

from __future__ import annotations

from collections.abc import Callable

import optuna

from ptycho_model.config import choices
from ptycho_model.errors import lookup

__all__ = [
    "DESCRIPTIONS",
    "MAX_WARMUP_EPOCHS",
    "SPACES",
    "full",
    "get_space",
    "lr_guard",
    "optimizer",
    "stage_a",
]

MAX_WARMUP_EPOCHS = 5  # upper bound of sched/warmup_epochs; upstream arms used 5

_LR = (1e-5, 3e-3)
_MOMENTUM = (0.5, 0.99)
_WEIGHT_DECAY = (1e-6, 1e-1)
_BETA1 = (0.8, 0.95)
_BETA2 = (0.9, 0.9999)
_MIN_RATIO = (0.01, 0.5)
_NORM_THRESHOLD = (0.1, 10.0)
_AGC_THRESHOLD = (1e-3, 0.3)
_LAYERSCALE_INIT = (1e-5, 1e-1)

_STAGE_A_CLIPS = ("none", "norm", "agc")
_LR_GUARD_CLIPS = ("none", "norm")
_SCHEDULES = ("constant", "warmup_cosine")


# --------------------------------------------------------------------------------------------
# Building blocks, shared by the spaces (module-level, so the spaces stay picklable)
# --------------------------------------------------------------------------------------------


MAX_SEED = 2**31 - 1


def _suggest_architecture(trial: optuna.Trial, *, with_layerscale_init: bool) -> None:
    arch = trial.suggest_categorical("model/arch", choices("model/arch"))
    if arch == "stable_hybrid":
        block = trial.suggest_categorical("model/stable_block", choices("model/stable_block"))
        if with_layerscale_init and block == "layerscale":
            trial.suggest_float("model/layerscale_init", *_LAYERSCALE_INIT, log=True)


def _suggest_clip(trial: optuna.Trial, algorithms: tuple[str, ...]) -> None:
    algorithm = trial.suggest_categorical("clip/algorithm", algorithms)
    # One path, two meanings: a max gradient norm for norm, the AGC ratio lambda for agc.
    if algorithm == "norm":
        trial.suggest_float("clip/threshold", *_NORM_THRESHOLD, log=True)
    elif algorithm == "agc":
        trial.suggest_float("clip/threshold", *_AGC_THRESHOLD, log=True)


def _suggest_lr(trial: optuna.Trial) -> None:
    trial.suggest_float("optim/lr", *_LR, log=True)


def _suggest_schedule(trial: optuna.Trial) -> None:
    name = trial.suggest_categorical("sched/name", _SCHEDULES)
    if name == "warmup_cosine":
        trial.suggest_int("sched/warmup_epochs", 0, MAX_WARMUP_EPOCHS)
        trial.suggest_float("sched/min_ratio", *_MIN_RATIO, log=True)


def _suggest_optimizer(trial: optuna.Trial) -> None:
    name = trial.suggest_categorical("optim/name", choices("optim/name"))
    _suggest_lr(trial)
    if name == "sgd":
        trial.suggest_float("optim/momentum", *_MOMENTUM)
    if name in ("adamw", "sgd"):
        trial.suggest_float("optim/weight_decay", *_WEIGHT_DECAY, log=True)
    if name in ("adam", "adamw"):
        trial.suggest_float("optim/beta1", *_BETA1)
        trial.suggest_float("optim/beta2", *_BETA2)


# --------------------------------------------------------------------------------------------
# The spaces
# --------------------------------------------------------------------------------------------


def stage_a(trial: optuna.Trial) -> None:
    """model/arch (stable_hybrid: zero_gamma | layerscale block) x clip/algorithm none | norm |
    agc, threshold per algorithm (upstream Stage A)."""
    _suggest_architecture(trial, with_layerscale_init=False)
    _suggest_clip(trial, _STAGE_A_CLIPS)


def lr_guard(trial: optuna.Trial) -> None:
    """optim/lr, constant | warmup_cosine (warmup epochs, min ratio), none | norm clip;
    architecture from the preset (upstream LR + gradient-guard sweep)."""
    _suggest_lr(trial)
    _suggest_schedule(trial)
    _suggest_clip(trial, _LR_GUARD_CLIPS)


def optimizer(trial: optuna.Trial) -> None:
    """adam | adamw | sgd with optim/lr, momentum (sgd), weight decay (adamw, sgd), betas
    (adam, adamw); schedule from the preset (upstream optimizer sweep)."""
    _suggest_optimizer(trial)


def full(trial: optuna.Trial) -> None:
    """all of stage_a, lr_guard and optimizer, plus model/layerscale_init for stable_hybrid
    with the layerscale block."""
    _suggest_architecture(trial, with_layerscale_init=True)
    _suggest_optimizer(trial)
    _suggest_schedule(trial)
    _suggest_clip(trial, _STAGE_A_CLIPS)


def seeds(trial: optuna.Trial) -> None:
    """train/seed only: the preset's arm (plus --set overrides) repeated over seeds, to measure
    how often it collapses (upstream's multi-seed crash-probability protocol)."""
    trial.suggest_int("train/seed", 0, MAX_SEED)


SPACES: dict[str, Callable[[optuna.Trial], None]] = {
    "stage_a": stage_a,
    "lr_guard": lr_guard,
    "optimizer": optimizer,
    "seeds": seeds,
    "full": full,
}

# A space's description is its docstring: ``tune-ptycho spaces`` prints it.
DESCRIPTIONS: dict[str, str] = {name: " ".join((fn.__doc__ or "").split())
                                for name, fn in SPACES.items()}


def get_space(name: str) -> Callable[[optuna.Trial], None]:
    """The space function registered as ``name``."""
    return lookup(SPACES, name, "search/space")
