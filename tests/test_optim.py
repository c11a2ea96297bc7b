"""Optimizers by name, LR trajectories of every scheduler, and gradient clipping."""

import math

import pytest
import torch
from torch import nn

from ptycho_model.config import ClipConfig, OptimConfig, SchedConfig
from ptycho_model.optim import (
    CLIPPERS,
    LR_SCHEDULES,
    OPTIMIZERS,
    agc_per_tensor,
    agc_unitwise,
    build_optimizer,
    build_scheduler,
    clip_gradients,
    current_lr,
    global_grad_norm,
    step_scheduler,
)


def lr_curve(sched_cfg: SchedConfig, epochs: int, lr: float = 1e-3, val=None) -> list[float]:
    model = nn.Linear(2, 2)
    opt = build_optimizer(model, OptimConfig(lr=lr))
    sched = build_scheduler(opt, sched_cfg, epochs)
    lrs = []
    for e in range(epochs):
        lrs.append(current_lr(opt))
        opt.step()
        step_scheduler(sched, (val or [1.0] * epochs)[e])
    return lrs


def test_constant_stays_put():
    assert lr_curve(SchedConfig(name="constant"), 5) == [1e-3] * 5


def test_warmup_cosine_warms_linearly_then_decays_to_min_ratio():
    lrs = lr_curve(SchedConfig(name="warmup_cosine", warmup_epochs=4, min_ratio=0.05), 24)
    assert lrs[0] == pytest.approx(1e-4)  # start factor 0.1
    assert lrs[2] == pytest.approx(1e-4 + 2 * (1e-3 - 1e-4) / 4)
    assert lrs[4] == pytest.approx(1e-3)  # peak right after warmup
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:], strict=False))  # monotone cosine descent
    cos_end = 5e-5 + (1e-3 - 5e-5) * (1 + math.cos(math.pi * 19 / 20)) / 2
    assert lrs[-1] == pytest.approx(cos_end)
    assert min(lrs[4:]) >= 5e-5 - 1e-12


def test_warmup_cosine_without_warmup_is_plain_cosine():
    lrs = lr_curve(SchedConfig(name="warmup_cosine", warmup_epochs=0, min_ratio=0.1), 10)
    assert lrs[0] == pytest.approx(1e-3)
    assert lrs[5] == pytest.approx(1e-4 + (1e-3 - 1e-4) * (1 + math.cos(math.pi * 5 / 10)) / 2)


def test_exponential_decays_by_gamma_each_epoch():
    lrs = lr_curve(SchedConfig(name="exponential", gamma=0.5), 4)
    assert lrs == pytest.approx([1e-3, 5e-4, 2.5e-4, 1.25e-4])


def test_plateau_halves_after_patience_epochs_without_improvement():
    lrs = lr_curve(SchedConfig(name="plateau"), 6, val=[1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    assert lrs[:4] == pytest.approx([1e-3] * 4)
    assert lrs[4] == pytest.approx(5e-4)


@pytest.mark.parametrize("name", list(LR_SCHEDULES))
def test_every_registered_scheduler_runs_a_schedule(name):
    lrs = lr_curve(SchedConfig(name=name, warmup_epochs=2), 6, val=[1.0] * 6)
    assert len(lrs) == 6 and all(math.isfinite(x) and 0 < x <= 1e-3 for x in lrs), lrs


@pytest.mark.parametrize("name, cls", [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW),
                                       ("sgd", torch.optim.SGD)])
def test_optimizer_selection(name, cls):
    opt = build_optimizer(nn.Linear(2, 2), OptimConfig(name=name, lr=0.01, weight_decay=0.1,
                                                       momentum=0.8, beta1=0.8, beta2=0.99))
    assert type(opt) is cls
    g = opt.param_groups[0]
    assert g["lr"] == 0.01 and g["weight_decay"] == 0.1
    if name == "sgd":
        assert g["momentum"] == 0.8 and g["nesterov"] is True
    else:
        assert g["betas"] == (0.8, 0.99)


def test_sgd_without_momentum_is_not_nesterov():
    opt = build_optimizer(nn.Linear(2, 2), OptimConfig(name="sgd", momentum=0.0))
    assert opt.param_groups[0]["nesterov"] is False


def test_unknown_optimizer_lists_choices():
    bad = OptimConfig()
    object.__setattr__(bad, "name", "adamax")  # past validation, as a caller bypassing from_dict
    with pytest.raises(ValueError, match="unknown optim/name='adamax'.*; choose from"):
        build_optimizer(nn.Linear(2, 2), bad)


def _param(w, g):
    p = nn.Parameter(torch.tensor(w, dtype=torch.float32))
    p.grad = torch.tensor(g, dtype=torch.float32)
    return p


def test_agc_clips_a_large_gradient_to_lambda_times_weight_norm():
    p = _param([3.0, 4.0], [30.0, 40.0])  # ||W|| = 5, ||G|| = 50
    agc_per_tensor([p], threshold=0.01)
    assert torch.linalg.vector_norm(p.grad).item() == pytest.approx(0.05)
    assert torch.allclose(p.grad / p.grad.norm(), torch.tensor([0.6, 0.8]))  # direction kept


def test_agc_leaves_a_small_gradient_alone():
    p = _param([3.0, 4.0], [0.01, 0.02])  # ||G|| ~ 0.022 < 0.01 * 5? no: 0.05 > 0.022
    before = p.grad.clone()
    agc_per_tensor([p], threshold=0.01)
    assert torch.equal(p.grad, before)


def test_agc_eps_guard_uses_a_floor_for_zero_weights():
    p = _param([0.0, 0.0], [3.0, 4.0])  # ||W|| = 0 -> floor 1e-3
    agc_per_tensor([p], threshold=0.1)
    assert torch.linalg.vector_norm(p.grad).item() == pytest.approx(0.1 * 1e-3)


def test_agc_unitwise_clips_each_row_separately():
    p = _param([[1.0, 0.0], [0.0, 1.0]], [[10.0, 0.0], [0.0, 0.001]])
    agc_unitwise([p], threshold=0.1)
    assert p.grad[0, 0].item() == pytest.approx(0.1)  # row 0 clipped to 0.1 * 1
    assert p.grad[1, 1].item() == pytest.approx(0.001)  # row 1 untouched


def test_clip_gradients_reports_the_preclip_norm_and_clips_by_norm():
    p = _param([1.0, 1.0], [3.0, 4.0])
    norm = clip_gradients([p], ClipConfig(algorithm="norm", threshold=1.0))
    assert norm == pytest.approx(5.0)
    assert global_grad_norm([p]) == pytest.approx(1.0, rel=1e-4)


def test_clip_value_handles_complex_gradients():
    p = nn.Parameter(torch.zeros(2, dtype=torch.complex64))
    p.grad = torch.tensor([3 + 4j, 0.1 - 0.2j], dtype=torch.complex64)
    clip_gradients([p], ClipConfig(algorithm="value", threshold=0.5))
    assert torch.allclose(p.grad, torch.tensor([0.5 + 0.5j, 0.1 - 0.2j], dtype=torch.complex64))


@pytest.mark.parametrize("name", list(CLIPPERS))
def test_every_registered_clipper_bounds_or_keeps_the_gradient(name):
    torch.manual_seed(0)
    layer = nn.Linear(8, 8)
    params = list(layer.parameters())
    for p in params:
        p.grad = 100 * torch.randn_like(p)
    before = global_grad_norm(params)
    reported = clip_gradients(params, ClipConfig(algorithm=name, threshold=0.5))
    after = global_grad_norm(params)
    assert reported == pytest.approx(before) and math.isfinite(after)
    assert after == pytest.approx(before) if name == "none" else after < before


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_every_registered_optimizer_takes_a_step(name):
    layer = nn.Linear(2, 2)
    w = layer.weight.detach().clone()
    opt = build_optimizer(layer, OptimConfig(name=name, lr=0.1))
    layer(torch.ones(1, 2)).sum().backward()
    opt.step()
    assert not torch.equal(layer.weight, w)
