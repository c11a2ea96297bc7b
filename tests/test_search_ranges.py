"""Search ranges as data: named spaces, preset ranges and a spec file's ``search.params``.

Real Optuna samples the resolved spaces; bad ranges are refused through the CLI with exit 2
before Ray starts; the space an experiment searched is the one its spec.json recorded.
"""

from __future__ import annotations

import json
import pickle

import optuna
import pytest

from ptycho_model.config import ConfigError
from search_spaces import DeclaredSpace, branches, distributions, make_sampler
from tune_ptycho.cli import main
from tune_ptycho.spec import build_spec

PARAMS = {
    "optim/lr": {"low": 1.0e-4, "high": 5.0e-2, "log": True},
    "sched/name": {"choices": ["warmup_cosine"]},
    "model/width": {"choices": [8, 12, 16]},
    "clip/threshold": [{"low": 0.1, "high": 10, "log": True, "when": {"clip/algorithm": "norm"}},
                       {"low": 1.0e-3, "high": 0.3, "log": True,
                        "when": {"clip/algorithm": "agc"}}],
}


def _sample(space: DeclaredSpace, n: int, seed: int = 0) -> list[dict]:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=make_sampler(seed, n_startup_trials=n))
    out = []
    for _ in range(n):
        t = study.ask()
        space(t)
        study.tell(t, 0.0)
        out.append(t.params)
    return out


def test_spec_params_override_narrow_and_add():
    spec = build_spec({"preset": "cpu", "search": {"space": "lr_guard", "params": PARAMS}})
    space = spec.space
    d = distributions(space)
    assert d["optim/lr"][0].low == 1e-4 and d["optim/lr"][0].high == 5e-2 and d["optim/lr"][0].log
    assert d["sched/name"][0].choices == ("warmup_cosine",)
    assert d["model/width"][0].choices == (8, 12, 16)  # an added path
    # the warmup's range still follows the preset (its condition kept), the narrowed choice
    # makes the constant branch unreachable
    assert {b.params["sched/name"] for b in branches(space)} == {"warmup_cosine"}
    warm = d["sched/warmup_epochs"][0]
    assert (warm.low, warm.high) == (2, 8) and warm.high < spec.run.train.max_epochs
    for p in _sample(space, 12):
        assert p["sched/name"] == "warmup_cosine" and p["model/width"] in (8, 12, 16)
        assert 1e-4 <= p["optim/lr"] <= 5e-2 and 2 <= p["sched/warmup_epochs"] <= 8
        thr = p.get("clip/threshold")
        if p["clip/algorithm"] == "norm":
            assert 0.1 <= thr <= 10
        else:
            assert p["clip/algorithm"] == "none" and thr is None
    assert pickle.loads(pickle.dumps(space)) == space  # Ray snapshots the searcher with it


def test_low_equal_to_high_pins_one_value_per_branch_of_one_path():
    """A number range with low == high is that one value: one path (clip/threshold) can pin a
    different value in each conditional branch, which Optuna refuses for categorical choices."""
    pinned = {"clip/threshold": [
        {"low": 1.0, "high": 1.0, "log": True, "when": {"clip/algorithm": "norm"}},
        {"low": 0.01, "high": 0.01, "log": True, "when": {"clip/algorithm": "agc"}}]}
    spec = build_spec({"preset": "cpu", "search": {"space": "stage_a", "params": pinned}})
    seen = {}
    for p in _sample(spec.space, 16):
        if p["clip/algorithm"] != "none":
            seen.setdefault(p["clip/algorithm"], set()).add(p["clip/threshold"])
    assert seen == {"norm": {1.0}, "agc": {0.01}}, seen


def test_presets_move_the_ranges_and_every_preset_runs_its_default_space():
    for preset in ("tiny", "cpu", "stage_a", "stage_a_upstream"):
        spec = build_spec({"preset": preset})  # the full space, the preset's own epochs
        lr = distributions(spec.space)["optim/lr"][0]
        warm = distributions(spec.space)["sched/warmup_epochs"][0]
        assert warm.high < spec.run.train.max_epochs, preset
        assert (lr.high >= 1.3e-2) == (preset in ("tiny", "cpu")), (preset, lr)


@pytest.mark.parametrize("params,named", [
    ({"optim/lrr": {"low": 1e-4, "high": 1e-2}}, "unknown config path 'optim/lrr' (did you "
                                                 "mean 'optim/lr'"),
    ({"optim/lr": {"low": 1e-2, "high": 1e-3}}, "low=0.01 must be < high=0.001"),
    ({"optim/lr": {"low": 0.0, "high": 1e-2}}, "log=true needs low > 0"),
    ({"optim/lr": {"low": 0.0, "high": 1e-2, "log": False}}, "optim/lr=0.0 must be > 0"),
    ({"clip/algorithm": {"choices": ["none", "clipall"]}}, "choices ['clipall'] are not"),
    ({"sched/warmup_epochs": {"low": 2, "high": 40}}, "must be < train/max_epochs=14"),
    ({"sched/min_ratio": {"low": 0.1, "high": 0.5, "when": {"optim/name": "adam"}}},
     "when names 'optim/name', which is not searched"),
    ({"clip/threshold": {"low": 1, "high": 2}}, "has 2 conditional ranges"),
])
def test_a_bad_range_exits_2_naming_path_value_and_what_is_allowed(params, named, tmp_path,
                                                                   capsys):
    f = tmp_path / "spec.json"
    f.write_text(json.dumps({"preset": "cpu", "search": {"space": "lr_guard", "params": params}}))
    assert main(["run", "--spec", str(f), "--storage", str(tmp_path / "never")]) == 2
    err = capsys.readouterr().err
    assert "search.params." in err and named in err, err
    assert not (tmp_path / "never").exists()  # refused before anything was written


def test_seed_arms_are_clamped_or_dropped_and_one_line_says_which():
    spec = build_spec({"preset": "cpu", "search": {
        "space": "lr_guard", "seed_arms": 9,
        "params": {"clip/algorithm": {"choices": ["none"]},
                   "optim/lr": {"low": 4e-4, "high": 5e-2, "log": True}}}})
    line = spec.arm_projection.summary(len(spec.offered_arms))
    assert "dropped: " in line and "stage_a_control (clip/algorithm=norm" in line
    assert "clamped into the ranges: " in line and "optim/lr 0.00025 -> 0.0004" in line
    for point in spec.offered_arms.values():
        assert point["clip/algorithm"] == "none" and point["optim/lr"] >= 4e-4


def test_spec_json_records_the_space_and_resume_searches_the_recorded_one():
    spec = build_spec({"preset": "cpu", "search": {"space": "lr_guard", "params": PARAMS}})
    recorded = json.loads(json.dumps(spec.to_dict()))
    assert recorded["search"]["resolved"]["model/width"] == {"choices": [8, 12, 16]}
    # the recorded space wins over what the named space and params would give now
    recorded["search"]["resolved"]["optim/lr"] = {"low": 2e-3, "high": 3e-3, "log": True}
    again = build_spec(recorded, recorded=True)
    assert distributions(again.space)["optim/lr"][0].low == 2e-3
    fresh = build_spec(recorded)  # as a new study's --spec: resolved anew
    assert distributions(fresh.space)["optim/lr"][0].low == 1e-4
    with pytest.raises(ConfigError, match="search.params.optim/lr"):
        bad = dict(recorded, search={**recorded["search"], "params": {"optim/lr": {"low": -1}}})
        build_spec(bad)


@pytest.mark.slow
def test_run_preset_tiny_runs_with_its_default_space(ray_session, tmp_path):
    assert main(["run", "--preset", "tiny", "--num-samples", "2", "--storage", str(tmp_path),
                 "--name", "tiny-default", "--no-dashboard", "--no-progress"]) == 0
    spec = json.loads((tmp_path / "tiny-default" / "spec.json").read_text())
    assert spec["search"]["space"] == "full" and spec["train"]["max_epochs"] == 3
