"""search_spaces: structure of every space, seed points, registry, pickling and the sampler.

Real Optuna throughout (FixedTrial, in-memory studies with ask/tell); nothing is mocked.
"""

from __future__ import annotations

import math
import pickle
import subprocess
import sys
import warnings
from typing import Any

import optuna
import pytest

import search_spaces
from ptycho_model.config import RunConfig, known_paths
from search_spaces import (
    ARM_SOURCES,
    DESCRIPTIONS,
    MAX_WARMUP_EPOCHS,
    SEED_ARMS,
    SPACES,
    branches,
    distributions,
    get_space,
    make_sampler,
    project,
    projected_arms,
    seed_points,
    suggested_params,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPACE_NAMES = sorted(SPACES)
KNOWN = set(known_paths())
BASE = RunConfig().with_updates({"train/max_epochs": 20})  # warmup (<= 5) must stay < max_epochs


def _contains(dist: optuna.distributions.BaseDistribution, value: Any) -> bool:
    return dist._contains(dist.to_internal_repr(value))


def _objective(params: dict[str, Any]) -> float:
    """A deterministic dummy objective that depends on several parameters."""
    value = abs(math.log10(params.get("optim/lr", 1e-3)) + 3.3)
    value += 0.1 * len(params) + 0.05 * len(str(params.get("clip/algorithm", "")))
    return value + (0.2 if params.get("model/arch") == "stable_hybrid" else 0.0)


def _run_study(name: str, sampler: optuna.samplers.BaseSampler, n: int,
               points: list[dict[str, Any]] | None = None) -> list[optuna.trial.FrozenTrial]:
    study = optuna.create_study(sampler=sampler, direction="minimize")
    for point in points or []:
        study.enqueue_trial(point)
    space = get_space(name)
    for _ in range(n):
        trial = study.ask()
        assert space(trial) is None
        study.tell(trial, _objective(trial.params))
    return study.trials


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------


def test_registry_has_every_space_each_described() -> None:
    assert set(SPACES) == {"stage_a", "lr_guard", "optimizer", "seeds", "full"}
    assert set(DESCRIPTIONS) == set(SPACES)
    assert all(isinstance(d, str) and d and "\n" not in d for d in DESCRIPTIONS.values())


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_space_is_plain_data_that_pickles_by_value(name: str) -> None:
    """Ray snapshots the searcher, space included, with stdlib pickle: a declared space is a
    frozen dataclass of ranges, so it round-trips to an equal space that asks the same."""
    space = SPACES[name]
    assert get_space(name) is space and space.name == name
    again = pickle.loads(pickle.dumps(space))
    assert again == space and branches(again) == branches(space)


def test_unknown_space_names_the_value_and_the_choices() -> None:
    names = r"\['stage_a', 'lr_guard', 'optimizer', 'seeds', 'full'\]"
    with pytest.raises(ValueError, match=r"unknown search/space='nope'; choose from " + names):
        get_space("nope")
    with pytest.raises(ValueError, match="unknown search/space='stagea' \\(did you mean 'stage_a'"):
        seed_points("stagea")


def test_package_imports_neither_ray_nor_torch() -> None:
    code = "import sys, search_spaces; print(sorted({'ray', 'torch'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------------------------
# Structure, by enumerating every branch
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_every_branch_asks_known_paths_and_builds_a_config(name: str) -> None:
    found = branches(name)
    assert found
    for branch in found:
        assert set(branch.distributions) <= KNOWN
        for bound in ("low", "high"):
            values = {
                k: getattr(d, bound) if hasattr(d, bound) else branch.params[k]
                for k, d in branch.distributions.items()
            }
            assert suggested_params(name, values) == values  # same branch under FixedTrial
            BASE.with_updates(values)


def test_branch_counts_and_conditional_names() -> None:
    # stage_a: hybrid x 3 clips + stable_hybrid x 2 blocks x 3 clips.
    assert len(branches("stage_a")) == 9
    assert len(branches("lr_guard")) == 4  # 2 schedules x 2 clips
    assert len(branches("optimizer")) == 3
    assert len(branches("full")) == (1 + 2) * 3 * 2 * 3  # arch+block x optim x sched x clip
    for branch in branches("full"):
        p, names = branch.params, set(branch.distributions)
        assert ("model/stable_block" in names) == (p["model/arch"] == "stable_hybrid")
        assert ("model/layerscale_init" in names) == (p.get("model/stable_block") == "layerscale")
        assert ("optim/momentum" in names) == (p["optim/name"] == "sgd")
        assert ("optim/weight_decay" in names) == (p["optim/name"] in ("adamw", "sgd"))
        assert ("optim/beta1" in names) == ("optim/beta2" in names) == (
            p["optim/name"] in ("adam", "adamw"))
        assert ("sched/warmup_epochs" in names) == ("sched/min_ratio" in names) == (
            p["sched/name"] == "warmup_cosine")
        assert ("clip/threshold" in names) == (p["clip/algorithm"] != "none")


def test_layerscale_init_only_in_full() -> None:
    for name in ("stage_a", "lr_guard", "optimizer"):
        assert "model/layerscale_init" not in distributions(name)
    assert "model/layerscale_init" in distributions("full")


def test_distributions_lists_each_conditional_range() -> None:
    thresholds = distributions("stage_a")["clip/threshold"]
    assert {(d.low, d.high, d.log) for d in thresholds} == {(0.1, 10.0, True), (1e-3, 0.3, True)}
    (warmup,) = distributions("lr_guard")["sched/warmup_epochs"]
    assert (warmup.low, warmup.high) == (0, MAX_WARMUP_EPOCHS)
    assert distributions("lr_guard")["clip/algorithm"][0].choices == ("none", "norm")
    assert distributions("full")["clip/algorithm"][0].choices == ("none", "norm", "agc")


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_space_returns_none_under_fixed_trial(name: str) -> None:
    for point in seed_points(name):
        assert get_space(name)(optuna.trial.FixedTrial(point)) is None


# --------------------------------------------------------------------------------------------
# Structure, by sampling
# --------------------------------------------------------------------------------------------


def _check_conditionals(params: dict[str, Any], allowed: set[str]) -> None:
    assert set(params) <= allowed
    if "optim/name" in params:
        opt = params["optim/name"]
        assert ("optim/momentum" in params) == (opt == "sgd")
        assert ("optim/weight_decay" in params) == (opt in ("adamw", "sgd"))
        assert ("optim/beta1" in params) == ("optim/beta2" in params) == (opt in ("adam", "adamw"))
    else:
        assert not {"optim/momentum", "optim/weight_decay", "optim/beta1"} & set(params)
    sched = params.get("sched/name")
    assert ("sched/warmup_epochs" in params) == (sched == "warmup_cosine")
    assert ("sched/min_ratio" in params) == (sched == "warmup_cosine")
    algorithm = params.get("clip/algorithm", "none")
    assert ("clip/threshold" in params) == (algorithm != "none")
    if algorithm == "norm":
        assert 0.1 <= params["clip/threshold"] <= 10.0
    if algorithm == "agc":
        assert 1e-3 <= params["clip/threshold"] <= 0.3
    arch = params.get("model/arch")
    assert ("model/stable_block" in params) == (arch == "stable_hybrid")
    assert ("model/layerscale_init" in params) <= (params.get("model/stable_block") == "layerscale")
    if "sched/warmup_epochs" in params:
        assert isinstance(params["sched/warmup_epochs"], int)
        assert 0 <= params["sched/warmup_epochs"] <= MAX_WARMUP_EPOCHS


@pytest.mark.parametrize("sampler_kind", ["tpe", "random"])
@pytest.mark.parametrize("name", SPACE_NAMES)
def test_sampled_trials_respect_conditional_structure(name: str, sampler_kind: str) -> None:
    sampler = (make_sampler(seed=3, n_startup_trials=5) if sampler_kind == "tpe"
               else optuna.samplers.RandomSampler(seed=3))
    allowed = set(distributions(name))
    assert allowed <= KNOWN
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. a relative sample outside a conditional range
        trials = _run_study(name, sampler, 30)
    for trial in trials:
        _check_conditionals(trial.params, allowed)
        for key, dist in trial.distributions.items():
            assert _contains(dist, trial.params[key])
        BASE.with_updates(trial.params)
    if name == "full" and sampler_kind == "random":  # both sides of each condition were seen
        seen = [t.params for t in trials]
        assert {p["optim/name"] for p in seen} == {"adam", "adamw", "sgd"}
        assert {p["sched/name"] for p in seen} == {"constant", "warmup_cosine"}
        assert {p["clip/algorithm"] for p in seen} == {"none", "norm", "agc"}
        assert any("model/layerscale_init" in p for p in seen)
        assert any(p["model/arch"] == "hybrid" for p in seen)


# --------------------------------------------------------------------------------------------
# Seed arms and seed points
# --------------------------------------------------------------------------------------------


def test_seed_arms_are_valid_configs_with_sources() -> None:
    assert set(ARM_SOURCES) == set(SEED_ARMS)
    assert all(src.strip() for src in ARM_SOURCES.values())
    for arm, values in SEED_ARMS.items():
        assert set(values) <= KNOWN, arm
        BASE.with_updates(values)


def test_seed_arm_values_from_the_study_plans() -> None:
    control = SEED_ARMS["stage_a_control"]
    assert control["model/arch"] == "hybrid" and control["optim/lr"] == 1e-3
    assert (control["clip/algorithm"], control["clip/threshold"]) == ("norm", 1.0)
    assert SEED_ARMS["stage_a_agc"]["clip/threshold"] == 0.01
    assert SEED_ARMS["stage_a_stable"]["model/stable_block"] == "zero_gamma"
    assert SEED_ARMS["stage_a_stable_layerscale"]["model/layerscale_init"] == 1e-3
    clip = SEED_ARMS["stable_warmup_clip"]
    assert (clip["optim/lr"], clip["sched/warmup_epochs"], clip["sched/min_ratio"],
            clip["clip/threshold"]) == (5e-4, 5, 0.05, 0.5)
    assert SEED_ARMS["stable_sgd"]["optim/momentum"] == 0.9
    assert SEED_ARMS["stable_adamw"]["optim/weight_decay"] == 0.01


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_seed_points_run_in_range_and_build_configs(name: str) -> None:
    points = seed_points(name)
    assert bool(points) == (name != "seeds")  # no arm sets train/seed
    assert all(a != b for i, a in enumerate(points) for b in points[i + 1:])  # de-duplicated
    for point in points:
        trial = optuna.trial.FixedTrial(point)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # FixedTrial warns about out-of-range values
            get_space(name)(trial)
        assert trial.params == point  # exactly the names the space asks on this branch
        assert set(point) <= KNOWN
        for key, value in point.items():
            assert _contains(trial.distributions[key], value), (key, value)
        BASE.with_updates(point)


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_enqueued_seed_points_come_back_first(name: str) -> None:
    points = seed_points(name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trials = _run_study(name, make_sampler(seed=0), len(points) + 2, points)
    assert [t.params for t in trials[: len(points)]] == points


def test_seed_points_per_space() -> None:
    stage_a = projected_arms("stage_a")
    assert list(stage_a)[:4] == [
        "stage_a_control", "stage_a_stable", "stage_a_agc", "stage_a_stable_layerscale"]
    assert stage_a["stage_a_agc"] == {
        "model/arch": "hybrid", "clip/algorithm": "agc", "clip/threshold": 0.01}

    lr_guard = seed_points("lr_guard")
    assert {"optim/lr": 2.5e-4, "sched/name": "constant", "clip/algorithm": "none"} in lr_guard
    assert {"optim/lr": 2.5e-4, "sched/name": "warmup_cosine", "sched/warmup_epochs": 5,
            "sched/min_ratio": 0.05, "clip/algorithm": "none"} in lr_guard
    assert {"optim/lr": 5e-4, "sched/name": "warmup_cosine", "sched/warmup_epochs": 5,
            "sched/min_ratio": 0.05, "clip/algorithm": "norm", "clip/threshold": 0.5} in lr_guard
    assert "stage_a_agc" not in projected_arms("lr_guard")  # agc is not an lr_guard choice

    optimizer = projected_arms("optimizer")
    # SGD's weight decay 0 lies below the log range: it moves to the low bound (rule 3).
    assert optimizer["stable_sgd"] == {"optim/name": "sgd", "optim/lr": 3e-4,
                                       "optim/momentum": 0.9, "optim/weight_decay": 1e-6}
    assert optimizer["stable_adamw"] == {"optim/name": "adamw", "optim/lr": 3e-4,
                                         "optim/weight_decay": 0.01, "optim/beta1": 0.9,
                                         "optim/beta2": 0.999}
    assert len(seed_points("full")) == len(SEED_ARMS)  # every arm is distinct in the full space


def test_project_fills_defaults_drops_extras_and_skips_foreign_choices() -> None:
    # Missing names take RunConfig() defaults; keys the branch does not ask are dropped.
    point = project("optimizer", {"optim/name": "sgd", "sched/name": "warmup_cosine"})
    defaults = RunConfig().optim
    assert point == {"optim/name": "sgd", "optim/lr": defaults.lr,
                     "optim/momentum": defaults.momentum, "optim/weight_decay": 1e-6}
    assert project("lr_guard", {"clip/algorithm": "value"}) is None
    assert project("stage_a", {"model/arch": "hybrid", "clip/threshold": 50.0,
                               "clip/algorithm": "norm"})["clip/threshold"] == 10.0


def test_suggested_params_requires_every_asked_name() -> None:
    with pytest.raises(ValueError, match="optim/lr"):
        suggested_params("lr_guard", {"sched/name": "constant", "clip/algorithm": "none"})
    assert suggested_params("lr_guard", {**SEED_ARMS["stage_a_control"], "model/width": 8}) == {
        "optim/lr": 1e-3, "sched/name": "constant", "clip/algorithm": "norm",
        "clip/threshold": 1.0}


# --------------------------------------------------------------------------------------------
# Seed arms a study offers (tune_ptycho.spec): at most half its trials unless asked for more
# --------------------------------------------------------------------------------------------

CPU_ARMS = ["cpu_warmup_cliff", "cpu_warmup_cliff_agc", "stage_a_control", "stage_a_stable"]


def _spec(**sets: Any):
    from tune_ptycho.spec import build_spec

    return build_spec(sets={f"search/{k}": v for k, v in sets.items()})


@pytest.mark.parametrize("trials, arms", [(8, 4), (4, 2), (5, 2), (2, 1), (1, 0), (30, 11)])
def test_a_study_offers_at_most_half_its_trials_as_seed_arms_by_default(trials, arms) -> None:
    spec = _spec(num_samples=trials)
    assert spec.search.seed_arms is None
    assert len(spec.offered_arms) == arms  # full at the cpu preset has 11 arms
    assert list(spec.offered_arms)[:4] == CPU_ARMS[:arms]


def test_the_main_job_offers_its_four_arms() -> None:
    from tune_ptycho.spec import build_spec

    spec = build_spec()  # `tune-ptycho run`: cpu preset, 8 trials
    assert spec.search.num_samples == 8 and list(spec.offered_arms) == CPU_ARMS


@pytest.mark.parametrize("asked, trials, arms", [(4, 4, 4), (9, 4, 4), (4, 1, 1), (0, 8, 0),
                                                 (3, 8, 3), (20, 30, 11)])
def test_an_explicit_seed_arms_gives_that_many_capped_at_the_trials(asked, trials, arms) -> None:
    spec = _spec(num_samples=trials, seed_arms=asked)
    assert len(spec.offered_arms) == arms
    assert list(spec.offered_arms)[:4] == CPU_ARMS[:min(arms, 4)]


def test_no_seed_arm_with_seed_points_off() -> None:
    assert _spec(num_samples=8, seed_points=False, seed_arms=4).offered_arms == {}


def test_the_seed_arms_line_says_the_rule_and_how_to_ask_for_more() -> None:
    assert _spec(num_samples=8).arms_line() == (
        "seed arms: 4 of 11 offered to 8 trials (at most half the trials by default; "
        "--set search/seed_arms=8 for more): " + ", ".join(CPU_ARMS)
        + "; 4 trials sampled by Optuna")
    assert _spec(num_samples=4).arms_line() == (
        "seed arms: 2 of 11 offered to 4 trials (at most half the trials by default; "
        "--set search/seed_arms=4 for more): cpu_warmup_cliff, cpu_warmup_cliff_agc; "
        "2 trials sampled by Optuna")
    assert _spec(num_samples=1).arms_line() == (
        "seed arms: 0 of 11 offered to 1 trial (at most half the trials by default; "
        "--set search/seed_arms=1 for more): none; 1 trial sampled by Optuna")
    assert _spec(num_samples=4, seed_arms=4).arms_line() == (
        "seed arms: 4 of 11 offered to 4 trials (search/seed_arms=4): " + ", ".join(CPU_ARMS)
        + "; no trial sampled by Optuna")
    assert _spec(num_samples=4, seed_arms=9).arms_line().startswith(
        "seed arms: 4 of 11 offered to 4 trials (search/seed_arms=9, capped at 4 trials): ")
    assert _spec(num_samples=4, seed_points=False).arms_line() == (
        "seed arms: 0 of 11 offered to 4 trials (search/seed_points=false): none; "
        "4 trials sampled by Optuna")
    assert _spec(num_samples=8, space="seeds").arms_line() == (
        "seed arms: 0 of 0 offered to 8 trials (at most half the trials by default; "
        "no seed arm fits the space): none; 8 trials sampled by Optuna")
    # a space with fewer arms than the rule allows says so, and offers no more
    from tune_ptycho.spec import build_spec

    stage_a = build_spec(sets={"preset": "tiny", "search/space": "stage_a",
                               "search/num_samples": 12})
    line = stage_a.arms_line()
    assert line.startswith("seed arms: 5 of 5 offered to 12 trials (at most half the trials by "
                           "default; only 5 fit the space): stage_a_control, ")
    assert "for more" not in line and line.endswith("; 7 trials sampled by Optuna")


def test_spaces_show_prints_the_seed_arms_line(capsys) -> None:
    from tune_ptycho.cli import main

    assert main(["spaces", "--show", "full"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == _spec(space="full").arms_line()
    assert out[-1].startswith("seed arms: 4 of 11 offered to 8 trials (at most half the trials")


# --------------------------------------------------------------------------------------------
# Sampler
# --------------------------------------------------------------------------------------------


def test_make_sampler_is_seeded_and_quiet() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sampler = make_sampler(seed=11, n_startup_trials=2)
    assert isinstance(sampler, optuna.samplers.TPESampler)

    def first_five(seed: int) -> list[dict[str, Any]]:
        return [t.params for t in _run_study("full", make_sampler(seed, n_startup_trials=2), 5)]

    assert first_five(11) == first_five(11)
    assert first_five(11) != first_five(12)


def test_make_sampler_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="n_startup_trials=-1"):
        make_sampler(0, n_startup_trials=-1)
    with pytest.raises(TypeError, match="seed=None"):
        make_sampler(None)  # type: ignore[arg-type]


def test_public_names() -> None:
    for name in search_spaces.__all__:
        assert hasattr(search_spaces, name), name
