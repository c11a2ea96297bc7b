"""The collapse rule on scripted curves (docs/calibration.md, "How training fails at CPU scale")."""

from ptycho_model import collapse, names
from ptycho_model.config import CollapseConfig

CFG = CollapseConfig(ratio=2.0, patience=2, grace=3, flat_std=1e-3)


def run(curve, stds=None):
    s = collapse.CollapseState()
    flags = []
    for e, v in enumerate(curve, start=1):
        collapse.update(s, CFG, CFG.grace, e, v, (stds or [0.5] * len(curve))[e - 1])
        flags.append((s.collapsed, s.kind))
    return s, flags


def test_learns_then_collapses_is_flagged_after_patience_epochs():
    # upstream's shape: 0.2 -> 0.024 by epoch 4, then 0.18
    curve = [0.2, 0.08, 0.03, 0.024, 0.18, 0.18, 0.18]
    s, flags = run(curve)
    assert s.collapsed and s.kind == names.KIND_RATIO
    assert s.collapse_epoch == 6  # above the ratio at epochs 5 and 6 -> patience 2
    assert flags[4] == (False, names.KIND_NONE)
    assert s.best_val_loss == 0.024 and s.best_epoch == 4


def test_healthy_wobble_is_not_collapse():
    s, _ = run([0.2, 0.1, 0.08, 0.07, 0.09, 0.1, 0.07, 0.11, 0.06])  # ratio <= 1.6
    assert not s.collapsed


def test_one_spike_shorter_than_patience_is_forgiven():
    s, _ = run([0.2, 0.05, 0.05, 0.05, 0.2, 0.05, 0.05])
    assert not s.collapsed and s.ratio_streak == 0


def test_ratio_inside_grace_does_not_count():
    s, _ = run([0.2, 0.02, 0.2, 0.2, 0.03])  # epochs 2-3 above the ratio, inside grace=3
    assert not s.collapsed


def test_flat_output_is_flagged_even_when_the_ratio_stays_one():
    s, _ = run([0.22, 0.22, 0.22], stds=[0.0, 0.0, 0.0])
    assert s.collapsed and s.kind == names.KIND_FLAT and s.collapse_epoch == 2


def test_state_round_trips_through_a_dict():
    s, _ = run([0.2, 0.1, 0.3])
    assert collapse.CollapseState.from_dict(s.to_dict()) == s


def run_amp(curve, amp_stds, cfg=CFG):
    s = collapse.CollapseState()
    for e, (v, a) in enumerate(zip(curve, amp_stds, strict=True), start=1):
        collapse.update(s, cfg, cfg.grace, e, v, 0.5, a)  # the complex output keeps varying
    return s


def test_a_flat_amplitude_with_the_loss_well_above_its_best_is_amp_flat():
    # learned to 0.12, then the amplitude went constant at 1.6-1.7x the best: under the ratio
    # rule's 2x, and the phase still varies (output_std 0.5)
    s = run_amp([0.2, 0.15, 0.12, 0.19, 0.2, 0.2, 0.19], [0.3, 0.4, 0.5, 0.0, 0.0, 0.0, 0.0])
    assert s.collapsed and s.kind == names.KIND_AMP_FLAT and s.collapse_epoch == 5


def test_a_flat_amplitude_near_its_best_loss_is_a_phase_fit_not_a_collapse():
    s = run_amp([0.2, 0.1, 0.08, 0.07, 0.07, 0.069], [0.0] * 6)
    assert not s.collapsed and s.amp_flat_streak == 0


def test_amp_flat_spread_zero_turns_the_kind_off():
    off = CollapseConfig(ratio=2.0, patience=2, grace=3, flat_std=1e-3, amp_flat_spread=0.0)
    s = run_amp([0.2, 0.15, 0.12, 0.17, 0.2, 0.2, 0.19], [0.3, 0.4, 0.5, 0.0, 0.0, 0.0, 0.0], off)
    assert not s.collapsed


def test_a_checkpoint_written_before_amp_flat_existed_still_loads():
    old = {k: v for k, v in collapse.CollapseState().to_dict().items() if k != "amp_flat_streak"}
    assert collapse.CollapseState.from_dict(old).amp_flat_streak == 0
