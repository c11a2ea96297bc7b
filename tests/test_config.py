"""The nested config: paths, coercion, and errors that name the field."""

import pytest

from ptycho_model.config import (
    ConfigError,
    RunConfig,
    flatten,
    known_paths,
    parse_scalar,
    unflatten,
)
from ptycho_model.presets import PRESETS, get_preset, preset_config


def test_paths_round_trip_through_flat_dicts():
    cfg = RunConfig()
    flat = flatten(cfg.to_dict())
    assert set(flat) == set(known_paths())
    assert RunConfig.from_dict(unflatten(flat)) == cfg


def test_with_updates_takes_flat_paths():
    cfg = RunConfig().with_updates({"optim/lr": 3e-4, "model/arch": "stable_hybrid"})
    assert cfg.optim.lr == 3e-4 and cfg.model.arch == "stable_hybrid"


@pytest.mark.parametrize(
    "updates, needle",
    [
        ({"optim/lrr": 1e-3}, "optim/lrr"),
        ({"optim/lr": -1e-3}, "optim/lr=-0.001"),
        ({"optim/name": "adamax"}, "adamax"),
        ({"model/arch": "unet"}, "model/arch"),
        ({"train/max_epochs": 2.5}, "train/max_epochs"),
        ({"clip/algorithm": "agc2"}, "clip/algorithm"),
        ({"sched/name": "warmup_cosine", "sched/warmup_epochs": 10, "train/max_epochs": 10},
         "sched/warmup_epochs"),
        ({"data/N": 36, "model/blocks": 4}, "data/N=36"),
        ({"faults/nan_at_epoch": 2}, "faults/allowed"),
        ({"collapse/ratio": 0.5}, "collapse/ratio"),
    ],
)
def test_bad_values_name_the_field(updates, needle):
    with pytest.raises(ConfigError) as e:
        RunConfig().with_updates(updates)
    assert needle in str(e.value)


def test_unknown_key_suggests_the_closest():
    with pytest.raises(ConfigError, match="did you mean 'lr'"):
        RunConfig().with_updates({"optim/lr_": 1.0})


def test_parse_scalar_reads_yaml_and_exponents():
    assert parse_scalar("3e-4") == pytest.approx(3e-4)
    assert parse_scalar("true") is True
    assert parse_scalar("null") is None
    assert parse_scalar("adamw") == "adamw"
    assert parse_scalar("16") == 16


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_builds_a_valid_config(name):
    cfg = get_preset(name).config()
    assert cfg.data.N % 2 ** (cfg.model.blocks - 1) == 0


def test_stage_a_upstream_switches_on_the_quirks():
    up, ours = preset_config("stage_a_upstream"), preset_config("stage_a")
    assert (up.physics.amplitude_gain, up.physics.probe_scale) == (16.0, 4.0)
    assert up.model.spectral_corners == 1 and ours.model.spectral_corners == 2
    assert up.data.val_is_test and not up.data.set_phi and ours.data.set_phi
    assert ours.physics.amplitude_gain == 1.0 and ours.physics.probe_scale is None


def test_unknown_preset_lists_the_choices():
    with pytest.raises(ValueError, match="choose from"):
        get_preset("huge")


def test_default_collapse_grace_follows_max_epochs():
    assert RunConfig().with_updates({"train/max_epochs": 8}).collapse_grace == 2
    assert RunConfig().with_updates({"train/max_epochs": 50}).collapse_grace == 5
