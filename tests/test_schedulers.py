"""The trial schedulers' registry (``tune_ptycho.run.schedulers.TRIAL_SCHEDULERS``): everything
that offers, checks, builds or reports a trial scheduler reads it, and every entry runs.

The sweep at the bottom runs every registered trial scheduler through a 2-trial tiny study on
real Ray: an entry added to the registry is covered with no new test.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

from tune_ptycho.cli import build_parser, main
from tune_ptycho.run.schedulers import (
    DEFAULT,
    NONE,
    TRIAL_SCHEDULERS,
    help_text,
    trial_scheduler,
)

from rows import trial_rows

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ptycho_model", "trainables", "search_spaces", "tune_ptycho")
REGISTRY = ROOT / "tune_ptycho" / "run" / "schedulers.py"
# An older spec's section named 'asha' (spec.legacy_sections) is a section's name, not a value.
LEGACY_SECTION = (ROOT / "tune_ptycho" / "spec.py", "legacy_sections")


def _spec(name: str, **sets):
    from tune_ptycho.spec import build_spec

    return build_spec(sets={"preset": "tiny", "scheduler/name": name, **sets})


def test_the_cli_the_spec_and_paths_offer_exactly_the_registry(capsys):
    from tune_ptycho.spec import SchedulerSpec, spec_choices

    run = next(a for a in build_parser()._actions if a.dest == "command").choices["run"]
    flag = next(a for a in run._actions if a.dest == "scheduler")
    assert tuple(flag.choices) == tuple(TRIAL_SCHEDULERS) and flag.help == help_text()
    assert spec_choices()["scheduler/name"] == tuple(TRIAL_SCHEDULERS)
    assert SchedulerSpec().name == DEFAULT and DEFAULT in TRIAL_SCHEDULERS
    assert main(["paths"]) == 0
    (line,) = [x for x in capsys.readouterr().out.splitlines()
               if x.split(" ")[0] == "scheduler/name"]
    assert line.endswith("(" + " | ".join(TRIAL_SCHEDULERS) + ")")


def test_an_unknown_scheduler_is_refused_naming_the_value_and_the_names():
    from ptycho_model.errors import ConfigError

    with pytest.raises(ConfigError) as e:
        trial_scheduler("hyperbnd")
    msg = str(e.value)
    assert "scheduler/name='hyperbnd'" in msg and "did you mean 'hyperband'" in msg
    assert ", ".join(TRIAL_SCHEDULERS) in msg


@pytest.mark.parametrize("name", list(TRIAL_SCHEDULERS))
def test_each_entry_builds_its_ray_scheduler_and_its_report_line(name):
    from ray.tune.schedulers import TrialScheduler

    from tune_ptycho.run.tuner import make_scheduler, max_concurrent_trials, pending_trials

    entry = TRIAL_SCHEDULERS[name]
    spec = _spec(name)
    assert isinstance(make_scheduler(spec), TrialScheduler)
    assert entry.report_line(spec) and entry.doc
    # a scheduler that needs whole brackets runs without a concurrency limit, letting trials
    # wait to start instead
    assert (max_concurrent_trials(spec) is None) == entry.whole_brackets
    key = "TUNE_MAX_PENDING_TRIALS_PG"
    given = key in os.environ  # a user's own setting is left alone
    with pending_trials(spec):
        assert (key in os.environ) == (entry.whole_brackets or given)


def _literals(path: Path) -> list[tuple[str, str]]:
    """(string constant, enclosing top-level function or "") for every str constant."""
    found: list[tuple[str, str]] = []
    for top in ast.parse(path.read_text()).body:
        where = top.name if isinstance(top, (ast.FunctionDef, ast.ClassDef)) else ""
        for node in ast.walk(top):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                found.append((node.value, where))
    return found


def test_every_trial_scheduler_name_is_spelled_in_the_registry_only():
    """No module but the registry spells a trial scheduler's name (the CLI, the spec, the
    Tuner and the report read it). ``none`` is left out: it is also a clip algorithm, a tracker
    word and a collapse kind; its uses as a scheduler name import ``NONE``."""
    seen = []
    for pkg in PACKAGES:
        for f in sorted((ROOT / pkg).rglob("*.py")):
            if f == REGISTRY:
                continue
            for value, where in _literals(f):
                if value in TRIAL_SCHEDULERS and value != NONE \
                        and (f, where) != LEGACY_SECTION:
                    seen.append(f"{f.relative_to(ROOT)}: {value!r} in {where or 'module'}")
    assert not seen, seen
    assert {v for v, _ in _literals(REGISTRY)} >= set(TRIAL_SCHEDULERS)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(TRIAL_SCHEDULERS))
def test_every_registered_trial_scheduler_runs_a_two_trial_tiny_study(name, ray_session,
                                                                     tmp_path):
    from tune_ptycho.analysis.load import load_experiment
    from tune_ptycho.analysis.markdown import spec_lines
    from tune_ptycho.storage.pickle_scan import check_trusted

    code = main(["run", "--preset", "tiny", "--space", "stage_a", "--scheduler", name,
                 "--num-samples", "2", "--max-epochs", "2", "--grace-period", "1",
                 "--no-dashboard", "--no-progress", "--set", "train/eval_every=0",
                 "--storage", str(tmp_path), "--name", name])
    assert code == 0
    exp = tmp_path / name
    rows = trial_rows(exp)
    assert len(rows) == 2 and all(rows.values()), rows
    loaded = load_experiment(exp, with_study=False)
    assert loaded.spec.scheduler.name == name
    assert f"- scheduler: {TRIAL_SCHEDULERS[name].report_line(loaded.spec)}" \
        in spec_lines(loaded)
    check_trusted(str(exp))  # resume would unpickle its scheduler: its class is allowed
