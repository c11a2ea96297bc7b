"""The collapse rule on real cpu-preset training, no fault hook (docs/calibration.md, "The
collapse rule, measured").

One thread, as the labelled set was recorded: past the cliff the trajectory depends on float
rounding, so the thread count is part of the run.
"""

from __future__ import annotations

import json
from pathlib import Path

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
    cfg = preset_config("cpu", {"train/eval_every": 1, "collapse/stop": False, **updates})
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


RUNS = Path(__file__).resolve().parents[1] / "docs" / "bench" / "collapse_runs.jsonl"


def recorded(run: str) -> dict:
    """One run of the labelled set as it was recorded (every epoch's signals)."""
    for line in RUNS.read_text().splitlines():
        d = json.loads(line)
        if d["run"] == run:
            return d
    raise AssertionError(f"{run} is not in {RUNS.name}")


def test_the_recorded_constant_amplitude_collapse_is_flagged_amp_flat_and_was_missed_before():
    """Run cliff@0.02/s0 of the labelled set (the cpu preset's cliff arm, seed 0, trained 14
    epochs on one thread, not stopped): it learned, then its amplitude went constant at the
    warmup peak while the complex output kept varying above the flat rule's threshold and
    val_loss settled under the ratio rule's 2x. The rule replayed over its recorded epochs flags
    it amp_flat after its best epoch; the rule before the amp_flat kind flags nothing. Past the
    cliff float rounding picks the trajectory, so the recorded run, not a rerun on this host, is
    the fixture (a rerun on another CPU went flat instead; the cliff arm trained here, through
    Tune, is tests/test_real_collapse.py)."""
    run = recorded("cliff@0.02/s0")
    rows, cfg = run["rows"], CollapseConfig()
    best = min(r[names.VAL_LOSS] for r in rows)
    last = rows[-1]
    assert best < 0.8 * rows[0][names.VAL_LOSS]  # it learned first
    assert abs(last[names.AMP_SSIM] - last[names.AMP_SSIM_CONSTANT]) < 0.01  # constant amplitude
    assert last[names.AMP_IQR] < cfg.amp_flat_spread
    assert last[names.OUTPUT_STD] > cfg.flat_std and last[names.VAL_LOSS] < 2.0 * best
    assert run["best_ckpt_amp_ssim"] > last[names.AMP_SSIM_CONSTANT] + 0.1
    now = replay(rows, cfg, run["grace"])
    assert now.collapsed and now.kind == names.KIND_AMP_FLAT
    assert now.collapse_epoch > now.best_epoch
    before = replay(rows, CollapseConfig(amp_flat_spread=0.0), run["grace"])
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
