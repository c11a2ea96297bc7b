"""The collapse rule on real cpu-preset training, no fault hook (docs/calibration.md, "The
collapse rule, measured").

One thread, as the labelled set was recorded: past the cliff the trajectory depends on float
rounding, so the thread count is part of the run.
"""

from __future__ import annotations

import pytest
import torch

from ptycho_model import collapse, names
from ptycho_model.config import CollapseConfig
from ptycho_model.presets import get_preset, preset_config
from ptycho_model.train import Trainer
from tune_ptycho.storage.dataset_cache import get_datasets


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def train(updates: dict, tmp_path) -> Trainer:
    """As the labelled set was recorded: the test image scored every epoch (past the cliff even
    that changes the trajectory), never stopped on a flag."""
    cfg = preset_config("cpu", {"train/eval_every": 1, **updates})
    data, _, _ = get_datasets(cfg.data, tmp_path / "cache", log=lambda _: None)
    t = Trainer(cfg, data)
    for _ in t.epochs():
        pass
    return t


def replay(history: list[dict], cfg: CollapseConfig, grace: int) -> collapse.CollapseState:
    s = collapse.CollapseState()
    for h in history:
        collapse.update(s, cfg, grace, h[names.EPOCH], h[names.VAL_LOSS], h[names.OUTPUT_STD],
                        h[names.AMP_IQR])
    return s


@pytest.mark.slow
def test_a_constant_amplitude_below_twice_the_best_is_flagged_amp_flat(one_thread, tmp_path):
    """The cpu preset's cliff arm, seed 0 (run cliff@0.02/s0 of the labelled set): it learns,
    then its amplitude goes constant at the warmup peak and stays so to the end, while the complex
    output keeps varying above the flat rule's threshold and val_loss settles at 1.7x its best.
    The rule before the amp_flat kind let it train to the end unflagged; now it is flagged on the
    second flat-amplitude epoch."""
    arm = get_preset("cpu").arms["cpu_warmup_cliff"]
    t = train(dict(arm), tmp_path)  # 14 epochs, not stopped: how it ends
    last = t.history[-1]
    assert t.state.collapsed and t.state.kind == names.KIND_AMP_FLAT
    assert t.state.collapse_epoch > t.state.best_epoch
    assert t.state.best_val_loss < 0.8 * t.history[0][names.VAL_LOSS]  # it learned first
    assert last[names.BEST_CKPT_PREFIX + names.AMP_SSIM] > last[names.AMP_SSIM_CONSTANT] + 0.1
    # what the weights output at the end: the constant amplitude's SSIM, to the hundredth ...
    assert abs(last[names.AMP_SSIM] - last[names.AMP_SSIM_CONSTANT]) < 0.01
    assert last[names.AMP_IQR] < t.cfg.collapse.amp_flat_spread
    # ... while the complex output still varies, and the loss sits under the ratio rule's 2x
    assert last[names.OUTPUT_STD] > t.cfg.collapse.flat_std and last[names.PHASE_STD] > 0
    assert last[names.VAL_LOSS] < 2.0 * t.state.best_val_loss
    before = replay(t.history, CollapseConfig(amp_flat_spread=0.0), t.cfg.collapse_grace)
    assert not before.collapsed  # the rule before the amp_flat kind saw nothing, to the end


@pytest.mark.slow
def test_a_healthy_run_and_a_fit_with_a_flat_reading_amplitude_are_not_flagged(one_thread,
                                                                               tmp_path):
    """lr 1e-3 (upstream's) learns. The cliff arm at 2.5e-2, seed 2 (run cliff@0.025/s2 of the
    labelled set, labelled healthy: amp SSIM 0.61 at the end) fits with an amplitude that reads
    flat by the rule's own statistic (amp_iqr 0.0015 at epoch 6) while val_loss is at its best:
    the loss-state guard is what keeps it running, as the replay without the guard shows."""
    healthy = train({"train/max_epochs": 5}, tmp_path)
    arm = get_preset("cpu").arms["cpu_warmup_cliff"]
    fit = train({**arm, "optim/lr": 2.5e-2, "train/seed": 2, "train/max_epochs": 7}, tmp_path)
    for t in (healthy, fit):
        assert not t.state.collapsed and t.history[-1][names.COLLAPSE_KIND] == names.KIND_NONE
        assert t.state.best_val_loss < 0.8 * t.history[0][names.VAL_LOSS]
    flat = [h for h in fit.history if h[names.AMP_IQR] < fit.cfg.collapse.amp_flat_spread]
    assert len(flat) >= fit.cfg.collapse.patience  # the amplitude reads flat ...
    assert all(h[names.VAL_LOSS] <= 1.05 * h[names.BEST_VAL_LOSS] for h in flat)  # ... at its best
    unguarded = CollapseConfig(amp_flat_spread=fit.cfg.collapse.amp_flat_spread,
                               amp_flat_ratio=1.0)
    assert replay(fit.history, unguarded, fit.cfg.collapse_grace).kind == names.KIND_AMP_FLAT
