"""Optimizers, LR schedules and gradient clipping, chosen by name from the config.

Registries ``OPTIMIZERS`` (``optim/name``), ``LR_SCHEDULES`` (``sched/name``) and ``CLIPPERS``
(``clip/algorithm``) are plain dicts. An LR schedule is stepped once per epoch by the training
loop, after validation (upstream never stepped it under manual optimisation — docs/physics.md
§5.4, Quirk D — which this module deliberately does not copy).

An LR schedule changes the learning rate inside one run. It is not a *trial* scheduler (ASHA,
HyperBand: the spec's ``scheduler/``, ``tune_ptycho.run.schedulers.TRIAL_SCHEDULERS``), which
stops whole trials of a study early.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.optim import lr_scheduler

from .errors import lookup

if TYPE_CHECKING:  # config reads this module's registries: import it for types only
    from .config import ClipConfig, OptimConfig, SchedConfig

# ReduceLROnPlateau settings used upstream (PtychoPINN_Lightning): factor 0.5, patience 2, min 5e-5.
PLATEAU_FACTOR = 0.5
PLATEAU_PATIENCE = 2
PLATEAU_MIN_LR = 5e-5
WARMUP_START_FACTOR = 0.1  # LinearLR 0.1 -> 1.0 over the warmup epochs (upstream WarmupCosine)
AGC_EPS = 1e-3  # AGC floor on the weight norm: max(||W||, eps)


def _adam(params: Iterable[nn.Parameter], c: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=c.lr, betas=(c.beta1, c.beta2), weight_decay=c.weight_decay)


def _adamw(params: Iterable[nn.Parameter], c: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=c.lr, betas=(c.beta1, c.beta2), weight_decay=c.weight_decay)


def _sgd(params: Iterable[nn.Parameter], c: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=c.lr, momentum=c.momentum, nesterov=c.momentum > 0,
                           weight_decay=c.weight_decay)


OPTIMIZERS: dict[str, Callable[[Iterable[nn.Parameter], OptimConfig], torch.optim.Optimizer]] = {
    "adam": _adam,
    "adamw": _adamw,
    "sgd": _sgd,
}


def build_optimizer(model: nn.Module, c: OptimConfig) -> torch.optim.Optimizer:
    build = lookup(OPTIMIZERS, c.name, "optim/name")
    return build(model.parameters(), c)


def _constant(opt: torch.optim.Optimizer, c: SchedConfig, epochs: int) -> lr_scheduler.LRScheduler:
    return lr_scheduler.ConstantLR(opt, factor=1.0, total_iters=0)


def _warmup_cosine(opt: torch.optim.Optimizer, c: SchedConfig, epochs: int):
    lr = opt.param_groups[0]["lr"]
    cosine = lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs - c.warmup_epochs),
                                            eta_min=lr * c.min_ratio)
    if c.warmup_epochs == 0:
        return cosine
    warm = lr_scheduler.LinearLR(opt, start_factor=WARMUP_START_FACTOR, end_factor=1.0,
                                 total_iters=c.warmup_epochs)
    return lr_scheduler.SequentialLR(opt, [warm, cosine], milestones=[c.warmup_epochs])


def _exponential(opt: torch.optim.Optimizer, c: SchedConfig, epochs: int):
    return lr_scheduler.ExponentialLR(opt, gamma=c.gamma)


def _plateau(opt: torch.optim.Optimizer, c: SchedConfig, epochs: int):
    return lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=PLATEAU_FACTOR,
                                          patience=PLATEAU_PATIENCE, threshold=0.0,
                                          min_lr=PLATEAU_MIN_LR)


#: ``sched/name`` -> ``build(optimizer, SchedConfig, max_epochs)``: the LR schedules.
LR_SCHEDULES: dict[str, Callable[..., object]] = {
    "constant": _constant,
    "warmup_cosine": _warmup_cosine,
    "exponential": _exponential,
    "plateau": _plateau,
}


def build_scheduler(opt: torch.optim.Optimizer, c: SchedConfig, epochs: int):
    return lookup(LR_SCHEDULES, c.name, "sched/name")(opt, c, epochs)


def step_scheduler(sched: lr_scheduler.LRScheduler | lr_scheduler.ReduceLROnPlateau,
                   val_loss: float) -> None:
    """Step once per epoch, after validation; ReduceLROnPlateau reads the val loss."""
    if isinstance(sched, lr_scheduler.ReduceLROnPlateau):
        sched.step(val_loss)
    else:
        sched.step()


def current_lr(opt: torch.optim.Optimizer) -> float:
    return float(opt.param_groups[0]["lr"])


# --------------------------------------------------------------------------------------------
# Gradient clipping. Each clipper returns nothing; the pre-clip global norm is measured first.
# --------------------------------------------------------------------------------------------


def _grads(params: Iterable[nn.Parameter]) -> list[torch.Tensor]:
    return [p.grad for p in params if p.grad is not None]


def real_view(t: torch.Tensor) -> torch.Tensor:
    """A complex tensor as its (..., 2) real view, others as they are: the same L2 norm, but
    torch's CPU norm of complex64 is ~30x slower (a third of a stage_a step's time when it ran on
    the spectral weights' gradients, bench/kernels.py) and accumulates less accurately (at
    9.4M float32 elements: 0.5% low against a float64 reference, the real view 0.09%)."""
    return torch.view_as_real(t) if t.is_complex() else t


def global_grad_norm(params: Iterable[nn.Parameter]) -> float:
    """sqrt(sum over tensors of ||g||^2): what upstream logged as grad_norm_preclip."""
    grads = _grads(params)
    if not grads:
        return 0.0
    norms = torch.stack([torch.linalg.vector_norm(real_view(g.detach())) for g in grads])
    return float(torch.linalg.vector_norm(norms))


def _clip_none(params: list[nn.Parameter], threshold: float) -> None:
    return None


def _clip_norm(params: list[nn.Parameter], threshold: float) -> None:
    torch.nn.utils.clip_grad_norm_(params, max_norm=threshold, norm_type=2.0)


def _clip_value(params: list[nn.Parameter], threshold: float) -> None:
    for g in _grads(params):
        if g.is_complex():  # clip_grad_value_ has no complex path: clip re and im separately
            torch.view_as_real(g).clamp_(-threshold, threshold)
        else:
            g.clamp_(-threshold, threshold)


@torch.no_grad()
def agc_per_tensor(params: list[nn.Parameter], threshold: float, eps: float = AGC_EPS) -> None:
    """Upstream's "AGC": per parameter *tensor*, G <- G * lam * max(||W||, eps) / ||G|| when
    ||G|| > lam * max(||W||, eps). This is the rule Stage A ran (docs/physics.md §5.3)."""
    for p in params:
        if p.grad is None:
            continue
        w_norm = torch.linalg.vector_norm(p.detach()).clamp_min(eps)
        g_norm = torch.linalg.vector_norm(p.grad)
        limit = threshold * w_norm
        if g_norm > limit:
            p.grad.mul_(limit / g_norm)


@torch.no_grad()
def agc_unitwise(params: list[nn.Parameter], threshold: float, eps: float = AGC_EPS) -> None:
    """Unit-wise adaptive gradient clipping (Brock et al. 2021, "High-Performance Large-Scale
    Image Recognition Without Normalization", arXiv 2102.06171): norms per output unit (dim 0)."""
    for p in params:
        if p.grad is None:
            continue
        if p.ndim <= 1:
            w_norm = torch.linalg.vector_norm(p.detach()).clamp_min(eps)
            g_norm = torch.linalg.vector_norm(p.grad)
        else:
            dims = tuple(range(1, p.ndim))
            w_norm = torch.linalg.vector_norm(p.detach(), dim=dims, keepdim=True).clamp_min(eps)
            g_norm = torch.linalg.vector_norm(p.grad, dim=dims, keepdim=True)
        limit = threshold * w_norm
        scale = torch.where(g_norm > limit, limit / g_norm.clamp_min(1e-12),
                            torch.ones_like(g_norm))
        p.grad.mul_(scale)


CLIPPERS: dict[str, Callable[[list[nn.Parameter], float], None]] = {
    "none": _clip_none,
    "norm": _clip_norm,
    "value": _clip_value,
    "agc": agc_per_tensor,
    "agc_unitwise": agc_unitwise,
}


def clip_gradients(params: list[nn.Parameter], c: ClipConfig) -> float:
    """Clip in place by ``c.algorithm``; return the pre-clip global gradient norm."""
    clip = lookup(CLIPPERS, c.algorithm, "clip/algorithm")
    norm = global_grad_norm(params)
    clip(params, c.threshold)
    return norm
