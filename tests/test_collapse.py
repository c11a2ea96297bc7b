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
