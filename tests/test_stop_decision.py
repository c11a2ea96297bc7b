"""One stop decision: ``ptycho_model.collapse.should_stop``, with ``collapse/stop`` its one knob.

Every path that ends a run on a flag asks it — ``Trainer.finished`` (``train``, ``fit`` and the
Tune trainable), Tune's ``CollapseStopper`` and HyperBand's ``stopped_by_rule`` — so on the same
flags they all answer the same. ``train/stop_on_collapse`` is an old spelling of the knob.
"""

from __future__ import annotations

import itertools
import warnings
from types import SimpleNamespace

import pytest
import torch

from ptycho_model import collapse, names
from ptycho_model.config import CollapseConfig, ConfigError, RunConfig
from ptycho_model.data import simulate
from ptycho_model.presets import preset_config
from ptycho_model.train import Trainer

FLAGS = [{names.COLLAPSED: c, names.DIVERGED: d} for c, d in itertools.product((0, 1), (0, 1))]


@pytest.fixture(scope="module")
def trainer() -> Trainer:
    torch.set_num_threads(1)
    cfg = preset_config("tiny")
    return Trainer(cfg, simulate(cfg.data))


def _spec(stop: bool):
    from tune_ptycho.spec import build_spec

    return build_spec(sets={"preset": "tiny", "collapse/stop": stop})


def _answers(flags: dict, stop: bool, trainer: Trainer) -> dict[str, bool]:
    """Each path's answer on ``flags`` under ``collapse/stop=stop``."""
    from tune_ptycho.run.schedulers import HYPERBAND, TRIAL_SCHEDULERS
    from tune_ptycho.run.stoppers import CollapseStopper, collapse_stopper

    spec = _spec(stop)
    trainer.cfg = spec.run
    trainer.epoch = 1  # of 3: the epochs alone do not end it
    trainer.state = collapse.CollapseState(collapsed=bool(flags[names.COLLAPSED]))
    trainer.diverged = bool(flags[names.DIVERGED])
    hyperband = TRIAL_SCHEDULERS[HYPERBAND].build(spec)
    row = {names.EPOCH: 2, **flags}
    # the replay: a trial the rule ended left its bracket the epoch before its last row
    end = hyperband._scheduler_end(SimpleNamespace(trial_id="t"), {1: {names.EPOCH: 1}, 2: row})
    return {
        "should_stop": collapse.should_stop(flags, CollapseConfig(stop=stop)),
        "Trainer.finished": trainer.finished,
        "CollapseStopper": CollapseStopper(on_collapse=stop)("t", row),
        "the run's stopper": collapse_stopper(spec)("t", row),
        "HyperBand stopped_by_rule": hyperband._stopped_by_rule("t", row),
        "HyperBand replay": end == 1,
    }


@pytest.mark.parametrize("stop", [True, False])
@pytest.mark.parametrize("flags", FLAGS, ids=lambda f: f"collapsed{f[names.COLLAPSED]}"
                                                      f"-diverged{f[names.DIVERGED]}")
def test_every_path_gives_the_same_answer(flags, stop, trainer):
    expected = bool(flags[names.DIVERGED]) or (stop and bool(flags[names.COLLAPSED]))
    answers = _answers(flags, stop, trainer)
    assert set(answers.values()) == {expected}, answers


def test_every_path_asks_should_stop(trainer, monkeypatch):
    asked: list[bool] = []
    real = collapse.should_stop

    def spy(flags, cfg):
        asked.append(cfg.stop)
        return real(flags, cfg)

    monkeypatch.setattr(collapse, "should_stop", spy)
    answers = _answers(FLAGS[1], False, trainer)
    # one call per path (should_stop's own answer included), each with the study's knob
    assert len(asked) == len(answers) and set(asked) == {False}


def test_the_trainable_ends_where_the_trainer_does():
    """It checkpoints a trial's last epoch by asking ``Trainer.finished``, no rule of its own."""
    import inspect

    import trainables.ptycho as trainable

    source = inspect.getsource(trainable)
    assert "trainer.finished" in source
    assert "COLLAPSED" not in source and "collapse.stop" not in source


# --------------------------------------------------------------------------------------------
# the legacy spelling, train/stop_on_collapse
# --------------------------------------------------------------------------------------------


def test_legacy_true_is_collapse_stop_true_with_a_deprecation_line():
    with pytest.warns(FutureWarning, match="train/stop_on_collapse is deprecated: use "
                                           "collapse/stop") as seen:
        cfg = RunConfig.from_dict({"train": {"stop_on_collapse": True},
                                   "collapse": {"stop": False}})
    assert cfg.collapse.stop is True
    assert len(seen) == 1 and "\n" not in str(seen[0].message)
    with pytest.warns(FutureWarning):
        assert RunConfig().with_updates({"collapse/stop": False,
                                         "train/stop_on_collapse": True}).collapse.stop


def test_legacy_false_leaves_collapse_stop_as_it_is():
    """Every older spec.json and config.json holds false, its old default: silently dropped, so
    an older study keeps its collapse/stop, stopped or not."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for stop in (True, False):
            old = {"train": {"stop_on_collapse": False}, "collapse": {"stop": stop}}
            cfg = RunConfig.from_dict(old)
            assert cfg.collapse.stop is stop
            assert "stop_on_collapse" not in cfg.to_dict()["train"]
            from tune_ptycho.spec import lenient_spec

            assert lenient_spec(old).run.collapse.stop is stop


def test_legacy_value_that_is_not_a_bool_is_refused():
    with pytest.raises(ConfigError, match=r"train/stop_on_collapse='yes' must be true or false"):
        RunConfig.from_dict({"train": {"stop_on_collapse": "yes"}})


def test_run_reads_the_legacy_path():
    from tune_ptycho.spec import build_spec

    with pytest.warns(FutureWarning, match="collapse/stop"):
        spec = build_spec(sets={"preset": "tiny", "train/stop_on_collapse": True},
                          flags={"collapse/stop": False})
    assert spec.run.collapse.stop is True


@pytest.mark.parametrize("argv, stop", [
    ([], False),  # train reports a flag and trains on, as it always did
    (["--stop-on-collapse"], True),
    (["--set", "collapse/stop=true"], True),
    (["--set", "train/stop_on_collapse=true"], True),
    (["--set", "train/stop_on_collapse=false"], False),
])
def test_train_stops_on_a_flag_only_when_asked(argv, stop):
    from tune_ptycho.cli import build_parser, train_config

    args = build_parser().parse_args(["train", "--preset", "tiny", *argv])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        assert train_config(args).collapse.stop is stop


def test_paths_lists_the_legacy_spelling_as_legacy(capsys):
    from tune_ptycho.cli import main

    assert main(["paths"]) == 0
    out = capsys.readouterr().out.splitlines()
    legacy = out.index(next(x for x in out if x.startswith("# legacy")))
    assert any(x.startswith("train/stop_on_collapse") for x in out[legacy:])
    assert not any(x.startswith("train/stop_on_collapse") for x in out[:legacy])
