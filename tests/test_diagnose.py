"""Per-block diagnostics: in every epoch's history, and `tune-ptycho diagnose` on saved models.

The flat block of a *real* collapse is asserted in test_real_collapse.py; here the layout, the
inputs the command accepts and the ones it refuses (exit 2, naming the file).
"""

from __future__ import annotations

import json
import shutil

import torch

from ptycho_model import names
from ptycho_model.diagnostics import first_flat, output_stats
from tune_ptycho.cli import main

FORWARD = ["lifter", "encoder.0", "downsample.0", "encoder.1"]  # tiny: 3 blocks


def test_output_stats_of_a_constant_and_of_a_varying_output():
    flat = output_stats(torch.full((4, 3, 8, 8), 0.7), 1e-3)
    assert flat["rel_std"] == 0.0 and flat["dead_fraction"] == 1.0
    y = torch.randn(4, 3, 8, 8)
    y[:, 0] = 2.0  # one dead channel of three
    s = output_stats(y, 1e-3)
    assert 0.3 < s["rel_std"] < 1.0 and abs(s["dead_fraction"] - 1 / 3) < 1e-6


def test_first_flat_is_the_earliest_epoch_then_forward_order():
    hist = [{"epoch": 1, "layers": [{"name": "a", "rel_std": 0.5}, {"name": "b", "rel_std": .4}]},
            {"epoch": 2, "layers": [{"name": "a", "rel_std": 0.5}, {"name": "b", "rel_std": 0}]},
            {"epoch": 3, "layers": [{"name": "a", "rel_std": 0.0}, {"name": "b", "rel_std": 0}]}]
    assert first_flat(hist, 1e-3) == ("b", 2)
    assert first_flat(hist[:1], 1e-3) is None


def _trial_dir(exp):
    return sorted(exp.glob("trial_*"))[0]


def test_every_checkpoint_history_holds_the_block_table_and_rows_its_summary(tiny_experiment):
    trial = _trial_dir(tiny_experiment)
    hist = json.loads(sorted(trial.glob("checkpoint_*/history.json"))[-1].read_text())
    layers = hist[-1][names.LAYERS]
    assert [la["name"] for la in layers][:4] == FORWARD and layers[-1]["name"] == "head"
    for la in layers:
        assert la["weight_norm"] > 0 and la["grad_norm_max"] >= la["grad_norm"] > 0
        assert 0 <= la["dead_fraction"] <= 1
    row = json.loads((trial / "result.json").read_text().splitlines()[-1])
    assert names.LAYERS not in row  # the table stays out of Tune's rows
    assert row[names.MIN_BLOCK_REL_STD] == min(la["rel_std"] for la in layers)
    assert row[names.MAX_BLOCK_GRAD_RATIO] > 0


def test_diagnose_a_trial_an_export_and_an_experiment(tiny_experiment, tmp_path, capsys):
    trial = _trial_dir(tiny_experiment)
    assert main(["diagnose", str(trial), "--out", str(tmp_path / "t")]) == 0
    doc = json.loads((tmp_path / "t" / "diagnose.json").read_text())
    assert [la["name"] for la in doc["layers"]][:4] == FORWARD
    assert "first_flat" in doc and len(doc["epochs"]) == doc["epoch"] >= 1
    assert (tmp_path / "t" / "diagnose.png").stat().st_size > 10_000

    model = tmp_path / "m" / "model.pt"
    assert main(["best", str(tiny_experiment), "--export", str(model)]) == 0
    assert main(["diagnose", str(model)]) == 0
    doc = json.loads((model.parent / "diagnose.json").read_text())
    assert doc["layers"][-1]["name"] == "head" and "epochs" not in doc  # a bare state dict

    assert main(["diagnose", str(tiny_experiment), "--out", str(tmp_path / "e")]) == 0
    assert list((tmp_path / "e").glob("trial_*/diagnose.json"))  # at least its best trial


def test_diagnose_refuses_a_missing_a_foreign_and_a_mismatched_file(tiny_experiment, tmp_path,
                                                                    capsys):
    assert main(["diagnose", str(tmp_path / "nope.pt")]) == 2
    assert "nope.pt" in capsys.readouterr().err
    junk = tmp_path / "j" / "state.pt"
    junk.parent.mkdir()
    junk.write_text("not a checkpoint")
    assert main(["diagnose", str(junk)]) == 2
    assert "state.pt" in capsys.readouterr().err

    model = tmp_path / "x" / "model.pt"
    assert main(["best", str(tiny_experiment), "--export", str(model)]) == 0
    cfg_file = model.parent / "model.pt.json"
    cfg = json.loads(cfg_file.read_text())
    cfg["model"]["width"] *= 2  # another config: the weights no longer fit
    cfg_file.write_text(json.dumps(cfg))
    capsys.readouterr()
    assert main(["diagnose", str(model)]) == 2
    err = capsys.readouterr().err
    assert "model.pt" in err and "do not fit" in err and "Traceback" not in err
    shutil.rmtree(model.parent)
