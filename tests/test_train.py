"""The training loop: metric names, learning, reproducibility, resume, divergence, collapse
flags."""

from __future__ import annotations

import json
import math

import pytest
import torch

from ptycho_model import names
from ptycho_model.config import choices
from ptycho_model.data import simulate
from ptycho_model.presets import preset_config
from ptycho_model.train import Trainer, fit

PER_EPOCH = {names.EPOCH, names.TRAIN_LOSS, names.VAL_LOSS, names.BEST_VAL_LOSS, names.BEST_EPOCH,
             names.COLLAPSE_RATIO, names.COLLAPSED, names.COLLAPSE_KIND, names.DIVERGED,
             names.OBJECTIVE, names.LR, names.GRAD_NORM, names.GRAD_NORM_MAX, names.OUTPUT_STD}


@pytest.fixture(scope="module")
def tiny():
    torch.set_num_threads(1)
    cfg = preset_config("tiny")
    return cfg, simulate(cfg.data)


def test_on_epoch_gets_every_metric_name_each_epoch(tiny):
    cfg, data = tiny
    seen: list[dict] = []
    result = fit(cfg, data, on_epoch=seen.append)
    assert [m[names.EPOCH] for m in seen] == [1, 2, 3]
    for m in seen:
        assert PER_EPOCH <= set(m)
        assert all(math.isfinite(v) for v in m.values() if isinstance(v, float))
    last = seen[-1]
    for k in names.EVAL_METRICS:  # reconstruction metrics at the end
        assert k in last and names.BEST_CKPT_PREFIX + k in last
    assert last[names.BEST_VAL_LOSS] == min(m[names.VAL_LOSS] for m in seen)
    assert result.final is last and not result.diverged


def test_same_seed_same_losses(tiny):
    cfg, data = tiny
    a = [m[names.VAL_LOSS] for m in fit(cfg, data).history]
    b = [m[names.VAL_LOSS] for m in fit(cfg, data).history]
    assert a == b
    c = [m[names.VAL_LOSS] for m in fit(cfg.with_updates({"train/seed": 7}), data).history]
    assert c != a


def test_resume_equals_uninterrupted(tiny, tmp_path):
    cfg, data = tiny
    cfg = cfg.with_updates({"train/max_epochs": 4, "sched/name": "warmup_cosine",
                            "sched/warmup_epochs": 1, "clip/algorithm": "agc",
                            "clip/threshold": 0.05})
    straight = fit(cfg, data).history
    first = Trainer(cfg, data)
    for _ in range(2):
        first.run_epoch()
    first.save(tmp_path / names.STATE_FILE)
    resumed = fit(cfg, data, resume=tmp_path / names.STATE_FILE).history
    assert [m[names.EPOCH] for m in resumed] == [1, 2, 3, 4]  # history travels in the state
    for key in (names.TRAIN_LOSS, names.VAL_LOSS, names.LR, names.GRAD_NORM, names.BEST_VAL_LOSS):
        assert [m[key] for m in resumed] == [m[key] for m in straight], key


def test_state_loads_with_weights_only(tiny, tmp_path):
    cfg, data = tiny
    t = Trainer(cfg, data)
    t.run_epoch()
    t.save(tmp_path / "s.pt")
    sd = torch.load(tmp_path / "s.pt", weights_only=True)
    assert sd["epoch"] == 1 and sd["collapse"]["best_epoch"] == 1


def test_nan_loss_stops_cleanly_as_diverged(tiny):
    cfg, data = tiny
    cfg = cfg.with_updates({"faults/allowed": True, "faults/nan_at_epoch": 2,
                            "train/max_epochs": 5})
    seen: list[dict] = []
    result = fit(cfg, data, on_epoch=seen.append)
    assert result.diverged and len(seen) == 2
    last = seen[-1]
    assert last[names.DIVERGED] == 1 and last[names.OBJECTIVE] == names.DIVERGED_SENTINEL
    json.dumps(last, allow_nan=False)  # nothing non-finite reaches a file
    assert names.BEST_CKPT_PREFIX + names.AMP_SSIM in last  # the epoch-1 weights were scored


def test_scripted_collapse_raises_the_ratio_flag(tiny):
    cfg, data = tiny
    cfg = cfg.with_updates({"faults/allowed": True, "faults/collapse_at_epoch": 3,
                            "train/max_epochs": 6, "collapse/grace": 1})
    hist = fit(cfg, data).history
    kinds = [m[names.COLLAPSE_KIND] for m in hist]
    assert kinds[:3] == ["none"] * 3 and kinds[3] == "ratio"  # patience 2: epochs 3 and 4
    assert hist[3][names.COLLAPSED] == 1 and hist[3][names.COLLAPSE_RATIO] > 2
    assert names.BEST_CKPT_PREFIX + names.AMP_SSIM in hist[3]  # scored when the flag rises


def test_collapse_stop_ends_the_run_and_false_trains_on(tiny):
    cfg, data = tiny
    cfg = cfg.with_updates({"faults/allowed": True, "faults/collapse_at_epoch": 2,
                            "train/max_epochs": 5, "collapse/grace": 0})
    assert cfg.collapse.stop  # the default: a flag ends the run
    stopped = fit(cfg, data).history
    assert len(stopped) == 3 and stopped[-1][names.COLLAPSED] == 1
    onward = fit(cfg.with_updates({"collapse/stop": False}), data).history
    assert len(onward) == 5 and all(m[names.COLLAPSED] for m in onward[2:])
    assert [m[names.VAL_LOSS] for m in onward[:3]] == [m[names.VAL_LOSS] for m in stopped]


@pytest.mark.parametrize("opt", choices("optim/name"))
def test_every_optimizer_trains_without_nan(tiny, opt):
    cfg, data = tiny
    cfg = cfg.with_updates({"optim/name": opt, "train/max_epochs": 1, "train/eval_every": 0})
    assert math.isfinite(fit(cfg, data).final[names.VAL_LOSS])


def test_a_learnable_size_clearly_learns():
    """The 118x118 object at width 8 (docs/calibration.md): val_loss falls well below epoch 1's."""
    cfg = preset_config("cpu", {"model/width": 8, "model/modes": 4, "train/max_epochs": 6,
                                "train/eval_every": 0})
    hist = fit(cfg, simulate(cfg.data)).history
    assert hist[-1][names.BEST_VAL_LOSS] < 0.7 * hist[0][names.VAL_LOSS]
