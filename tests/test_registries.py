"""Every name a user can type has one home, its registry, and everything else reads it from there.

A choice-valued config path (``model/arch``, ``optim/name``, ...) accepts exactly its registry's
names; the search spaces offer only registry names; presets, spaces and their descriptions come
from one dict each; ``tune-ptycho paths`` prints each path's names from the registry.
"""

from __future__ import annotations

import importlib

import pytest

from ptycho_model.config import REGISTRIES, ConfigError, RunConfig, choices, registry
from ptycho_model.presets import PRESETS
from search_spaces import DESCRIPTIONS, SPACES, distributions
from tune_ptycho.cli import build_parser, main

CHOICE_PATHS = sorted(REGISTRIES)


def _section_and_key(path: str) -> tuple[str, str]:
    section, key = path.split("/")
    return section, key


@pytest.mark.parametrize("path", CHOICE_PATHS)
def test_each_choice_path_accepts_exactly_its_registry(path):
    module, name = REGISTRIES[path]
    reg = getattr(importlib.import_module(module), name)
    assert registry(path) is reg and choices(path) == tuple(reg) and len(reg) >= 2
    section, key = _section_and_key(path)
    for value in reg:  # every registered name validates
        assert getattr(getattr(RunConfig.from_dict({section: {key: value}}), section), key) == value
    with pytest.raises(ConfigError) as e:  # and nothing else does; the message lists the names
        RunConfig.from_dict({section: {key: "no_such_" + key}})
    assert f"unknown {path}=" in str(e.value) and str(list(reg)) in str(e.value)


def test_every_categorical_a_space_offers_is_a_registry_name():
    seen = 0
    for space in SPACES:
        for path, dists in distributions(space).items():
            if path not in REGISTRIES:
                continue
            for d in dists:
                offered = set(getattr(d, "choices", ()))
                assert offered and offered <= set(choices(path)), (space, path, offered)
                seen += 1
    assert seen >= 4  # model/arch, model/stable_block, clip/algorithm, sched/name, optim/name


def test_presets_spaces_and_descriptions_share_their_names():
    assert set(DESCRIPTIONS) == set(SPACES) and all(DESCRIPTIONS.values())
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices
    preset_flag = next(a for a in sub["train"]._actions if a.dest == "preset")
    assert list(preset_flag.choices) == sorted(PRESETS)
    for preset in PRESETS.values():  # each preset's own choices are registry names
        cfg = preset.config()
        assert cfg.model.arch in choices("model/arch") and cfg.optim.name in choices("optim/name")


def test_paths_command_prints_each_registry(capsys):
    assert main(["paths"]) == 0
    out = capsys.readouterr().out.splitlines()
    for path in CHOICE_PATHS:
        (line,) = [x for x in out if x.split()[0] == path]
        assert line.endswith("(" + " | ".join(choices(path)) + ")"), line


# --------------------------------------------------------------------------------------------
# Trackers (storage/log_to): tune_ptycho.run.trackers.TRACKERS
# --------------------------------------------------------------------------------------------

def _trackers() -> list[str]:
    from tune_ptycho.run.trackers import TRACKERS

    return list(TRACKERS)


@pytest.mark.parametrize("name", _trackers())
def test_every_tracker_attaches_one_allowed_callback_and_one_hint(name, tmp_path, monkeypatch):
    """Each registered tracker: the spec accepts it, its package is there (the test extra
    installs the trackers), it adds exactly one Tune callback of its own, which ``resume`` may
    unpickle from tuner.pkl, and it gets one line saying where to look. Nothing is started: the
    MLflow URI is a server never contacted, W&B is offline."""
    from tune_ptycho.run.trackers import (
        NO_AUTO_LOGGERS,
        check_trackers,
        logger_callbacks,
        tracker_hints,
    )
    from tune_ptycho.spec import build_spec, spec_choices
    from tune_ptycho.storage.pickle_scan import ALLOWED

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv(NO_AUTO_LOGGERS, "1")  # logger_callbacks sets it; restored afterwards
    assert name in spec_choices()["storage/log_to"]
    assert build_spec(sets={"storage/log_to": [name]}).storage.log_to == [name]
    check_trackers([name])
    experiment = str(tmp_path / "experiment")
    server = "http://127.0.0.1:9"  # never contacted: Tune's callbacks connect in setup()
    base = logger_callbacks([], experiment, "exp", server)
    added = logger_callbacks([name], experiment, "exp", server)[len(base):]
    assert len(added) == 1, added
    cls = type(added[0])
    assert (cls.__module__, cls.__qualname__) in ALLOWED, cls
    assert len(tracker_hints([name], experiment, server)) == 1
