"""docs/extending.md, followed as written.

"A search space": the page's code block is written to a temporary module, imported, and the space
it registers is listed, shown and validated by the CLI and the spec, then run: the searcher
``tune-ptycho run`` builds (seeded TPE on an Optuna study, the seed arms first) suggests trials
from it, each a valid run config. "A generator": a subclass registered in a temporary module is
accepted as ``model/arch`` and built by ``build_generator`` with its own option. Both registries
are restored afterwards.
"""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

import pytest

from ptycho_model.config import flatten
from ptycho_model.generators import GENERATORS
from search_spaces.spaces import DESCRIPTIONS, SPACES
from tune_ptycho.cli import main

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "extending.md"


def _section(title: str) -> str:
    text = PAGE.read_text()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def _code_blocks(section: str) -> list[str]:
    """The section's ```python blocks, dedented as they would be written to a file."""
    blocks = []
    for m in re.finditer(r"^( *)```python\n(.*?)^\1```", section, re.S | re.M):
        indent = len(m.group(1))
        blocks.append("".join(line[indent:] for line in m.group(2).splitlines(True)))
    return blocks


@pytest.fixture
def temp_module(tmp_path, monkeypatch):
    """Write and import a module from ``tmp_path``; afterwards the registries it added to and
    the module itself are gone again."""
    saved = [(reg, dict(reg)) for reg in (SPACES, DESCRIPTIONS, GENERATORS)]
    monkeypatch.syspath_prepend(str(tmp_path))
    names: list[str] = []

    def write_and_import(name: str, source: str):
        (tmp_path / f"{name}.py").write_text(source)
        names.append(name)
        return importlib.import_module(name)

    yield write_and_import
    for reg, before in saved:
        reg.clear()
        reg.update(before)
    for name in names:
        sys.modules.pop(name, None)


def test_adding_a_search_space_as_the_page_says(temp_module, tmp_path, capsys):
    import optuna

    from ptycho_model import names
    from ptycho_model.presets import PRESETS
    from tune_ptycho.run.tuner import make_searcher
    from tune_ptycho.spec import build_spec
    from tune_ptycho.storage.study import open_storage

    # 1. Declare it (the page's code, verbatim, in a module of its own)
    (code,) = _code_blocks(_section("A search space"))
    before = set(SPACES)
    temp_module("extending_space", code)
    (name,) = set(SPACES) - before
    space = SPACES[name]
    assert DESCRIPTIONS[name] == space.doc and list(SPACES)[-1] == name

    # 3. Look at it: listed, shown as searched at the tiny preset
    assert main(["spaces"]) == 0
    assert any(line.split()[:1] == [name] for line in capsys.readouterr().out.splitlines())
    assert main(["spaces", "--show", name, "--preset", "tiny"]) == 0
    shown = capsys.readouterr().out
    assert all(f"  {path}" in shown for path in space.paths), shown

    # 2. The preset fits it: tiny's learning-rate range replaces the declared one
    spec = build_spec(sets={"preset": "tiny", "search/space": name, "search/num_samples": 10,
                            "search/n_startup_trials": 4})
    (lr,) = [r for r in spec.space.ranges if r.path == "optim/lr"]
    assert (lr.low, lr.high) == (PRESETS["tiny"].search["optim/lr"]["low"],
                                 PRESETS["tiny"].search["optim/lr"]["high"])
    arms = list(spec.offered_arms.values())
    assert arms and all(set(a) <= set(space.paths) for a in arms)

    # 4. Run it: the study's own searcher suggests every trial, seed arms first
    study_url = f"journal://{tmp_path / 'study.log'}"
    searcher = make_searcher(spec, study_url, "extending")
    suggested = []
    for i in range(spec.search.num_samples):
        config = searcher.suggest(f"t{i}")
        params = flatten(config)  # Tune's nested config -> config paths
        suggested.append(params)
        run = spec.run.with_updates(params)  # the run config validates it
        assert run.optim.lr == params["optim/lr"] and lr.low <= params["optim/lr"] <= lr.high
        assert ("sched/warmup_epochs" in params) == (params["sched/name"] == "warmup_cosine")
        searcher.on_trial_complete(f"t{i}", {names.OBJECTIVE: abs(params["optim/lr"] - 3e-3),
                                             names.EPOCH: 1})
    assert suggested[:len(arms)] == arms
    study = optuna.load_study(study_name="extending", storage=open_storage(study_url))
    assert len(study.trials) == spec.search.num_samples
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    assert {t.params["sched/name"] for t in study.trials} == {"constant", "warmup_cosine"}


GENERATOR_MODULE = '''
from typing import Any

import torch

from ptycho_model.generators import HybridUNOGenerator, register_generator


@register_generator("extending_scaled")
class ScaledHeadGenerator(HybridUNOGenerator):
    """hybrid with its output scaled by model/layerscale_init (an option of its own)."""

    def __init__(self, *, head_scale: float = 1.0, **shape: Any) -> None:
        super().__init__(**shape)
        self.head_scale = head_scale

    @classmethod
    def config_options(cls, cfg) -> dict[str, Any]:
        return {"head_scale": cfg.layerscale_init}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head_scale * super().forward(x)  # (B, N, N, C, 2)
'''


def test_adding_a_generator_as_the_page_says(temp_module, capsys):
    import torch

    from ptycho_model.config import ConfigError, RunConfig, choices
    from ptycho_model.generators import build_generator, register_generator

    module = temp_module("extending_generator", GENERATOR_MODULE)
    assert GENERATORS["extending_scaled"] is module.ScaledHeadGenerator
    assert choices("model/arch")[-1] == "extending_scaled"
    cfg = RunConfig.from_dict({"model": {"arch": "extending_scaled", "width": 4, "blocks": 2,
                                         "modes": 2, "layerscale_init": 0.5}})
    torch.manual_seed(0)
    model = build_generator(cfg.model, N=8)
    assert type(model) is module.ScaledHeadGenerator and model.head_scale == 0.5
    assert model.channels == [4, 8]  # the shape keywords every arch gets
    out = model(torch.rand(2, 1, 8, 8))
    assert out.shape == (2, 8, 8, 1, 2) and torch.isfinite(out).all()
    assert main(["paths"]) == 0
    (line,) = [x for x in capsys.readouterr().out.splitlines() if x.startswith("model/arch ")]
    assert line.endswith("| extending_scaled)")
    with pytest.raises(ValueError, match="'extending_scaled' is already registered"):
        register_generator("extending_scaled")(module.ScaledHeadGenerator)
    with pytest.raises(ConfigError, match="extending_scale"):
        RunConfig.from_dict({"model": {"arch": "extending_scale"}})


def test_every_test_the_page_names_exists():
    """The page says which sweeps cover each registry: those tests are there, by those names."""
    text = PAGE.read_text()
    sources = {f.name: f.read_text() for f in (ROOT / "tests").glob("test_*.py")}
    for f, name in re.findall(r"tests/(test_\w+\.py)::(test_\w+)", text):
        assert re.search(rf"^def {name}\(", sources[f], re.M), f"{f}::{name}"
    named = set(re.findall(r"`(test_\w+)(?:\[[^\]]*\])?`", text))
    assert len(named) >= 15
    for name in named:
        assert any(re.search(rf"^def {name}\(", src, re.M) for src in sources.values()), name
    for f in set(re.findall(r"tests/(test_\w+\.py)", text)):
        assert f in sources, f
