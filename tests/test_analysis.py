"""Offline analysis of a finished experiment: report files, ranking, export, bad input, damage."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
from PIL import Image

from ptycho_model import names
from ptycho_model.config import RunConfig
from ptycho_model.evaluate import to_input
from ptycho_model.generators import build_generator
from tune_ptycho.analysis import analyze, best_trial, export_best, load_experiment
from tune_ptycho.analysis.best import best_epoch, best_weights
from tune_ptycho.cli import main
from tune_ptycho.storage.dataset_cache import get_datasets
from tune_ptycho.storage.layout import (
    LAYERS_PNG,
    REPORT_FIGURES,
    REPORT_MD,
    RESULTS_PARQUET,
    TRIALS_CSV,
)
from tune_ptycho.storage.tune_files import result_rows

from rows import trial_rows

REPORT_FILES = (TRIALS_CSV, RESULTS_PARQUET, REPORT_MD, *REPORT_FIGURES)


def _copy(experiment: Path, tmp_path: Path) -> Path:
    """A copy under the same name (the study in optuna.db is named after the experiment)."""
    dst = tmp_path / "copy" / experiment.name
    shutil.copytree(experiment, dst)
    return dst


def _result_lines(experiment: Path) -> dict[str, int]:
    return {t: len(rows) for t, rows in trial_rows(experiment).items() if rows}


def _check_files(report: Path) -> None:
    for name in REPORT_FILES:
        f = report / name
        assert f.exists() and f.stat().st_size > 0, name
        if name.endswith(".png"):
            with Image.open(f) as im:
                im.verify()
            with Image.open(f) as im:
                assert im.size[0] > 100 and im.size[1] > 100


@pytest.fixture(scope="module")
def analysed(tiny_experiment, tmp_path_factory) -> tuple[Path, Path]:
    exp = _copy(tiny_experiment, tmp_path_factory.mktemp("an"))
    report = analyze(str(exp))
    return exp, report


def test_analyze_writes_every_file(analysed):
    exp, report = analysed
    assert report == exp / "report"
    _check_files(report)


def test_trials_csv_one_row_per_trial_ranked_like_best_trial(analysed):
    exp, report = analysed
    df = pd.read_csv(report / "trials.csv", dtype={"trial_id": str})
    trial_dirs = sorted(d.name for d in exp.glob("trial_*"))
    assert len(df) == len(trial_dirs) == 4
    assert sorted(df["trial_id"]) == sorted(d.removeprefix("trial_") for d in trial_dirs)
    for col in ("outcome", "rank", "best_val_loss", "objective", "last_epoch", "node_id",
                "hostname", "start_time", "end_time", "wall_s", "model/arch", "clip/algorithm"):
        assert col in df.columns, col
    assert sorted(df["rank"].dropna().astype(int)) == [1, 2, 3, 4]
    tid, tdir, ckpt, metrics = best_trial(str(exp))
    assert df.loc[df["rank"] == 1, "trial_id"].item() == tid
    assert tdir.name == f"trial_{tid}" and ckpt is not None and (ckpt / names.STATE_FILE).exists()
    assert metrics["objective"] == pytest.approx(df.loc[df["rank"] == 1, "objective"].item())
    # the chosen checkpoint is the newest kept one; the best_model in it is the weights of the
    # trial's lowest val_loss epoch, identical to the model of that epoch's own checkpoint
    rows = result_rows(tdir)
    assert ckpt.name == rows[-1]["checkpoint_dir_name"]
    state = torch.load(ckpt / names.STATE_FILE, weights_only=True)
    best_row = min(rows, key=lambda r: r["val_loss"])
    assert best_epoch(state) == best_row["epoch"] == metrics["best_epoch"]
    at_best = torch.load(tdir / best_row["checkpoint_dir_name"] / names.STATE_FILE,
                         weights_only=True)
    for k, v in at_best["model"].items():  # kept by Tune's checkpoint scoring on val_loss
        assert torch.equal(best_weights(state)[k], v), k
    assert set(df["outcome"]) <= {"finished", "stopped_early", "collapsed_ratio",
                                  "collapsed_flat", "diverged", "error"}


def test_report_names_best_trial_and_counts(analysed):
    exp, report = analysed
    text = (report / "report.md").read_text()
    df = pd.read_csv(report / "trials.csv", dtype={"trial_id": str})
    tid = best_trial(str(exp))[0]
    assert f"Best trial: `{tid}`" in text
    n = df["outcome"].value_counts()
    line = next(x for x in text.splitlines() if x.startswith("Trials: "))
    assert line.startswith("Trials: 4 ")
    assert f"finished {n.get('finished', 0)}," in line
    assert f"stopped early by ASHA {n.get('stopped_early', 0)}," in line
    assert f"errored {n.get('error', 0)}" in line
    collapsed = any(o.startswith("collapsed") or o == "diverged" for o in df["outcome"])
    for fig in REPORT_FIGURES:  # each figure shown once (layers.png: when a trial collapsed)
        assert text.count(f"]({fig})") == (0 if fig == LAYERS_PNG and not collapsed else 1), fig
    for section in ("## Best trials", "## What collapses", "## Parameter importance",
                    "## Trials per node"):
        assert section in text


def test_results_parquet_has_every_reported_epoch(analysed):
    exp, report = analysed
    res = pd.read_parquet(report / "results.parquet")
    lines = _result_lines(exp)
    assert len(res) == sum(lines.values())
    assert not res.duplicated(["trial_id", "epoch"]).any()
    counts = res.groupby("trial_id").size().to_dict()
    assert counts == {k.removeprefix("trial_"): v for k, v in lines.items()}
    assert any(c.startswith("config/") for c in res.columns)
    assert {"val_loss", "best_val_loss", "objective", "collapse_kind",
            "node_id"} <= set(res.columns)


def test_export_best_loads_strictly_and_runs(analysed, tmp_path):
    exp, _ = analysed
    out = export_best(str(exp), tmp_path / "best.pt")
    cfg = RunConfig.from_dict(json.loads(Path(str(out) + ".json").read_text()))
    model = build_generator(cfg.model, N=cfg.data.N)
    model.load_state_dict(torch.load(out, weights_only=True), strict=True)
    data, _, _ = get_datasets(cfg.data, log=lambda _: None)
    model.eval()
    with torch.no_grad():
        y = model(to_input(data.test.diffraction[:4]))
    assert torch.isfinite(y).all()


def test_cli_best_and_analyze_print_summary(analysed, capsys, tmp_path):
    exp, _ = analysed
    tid = best_trial(str(exp))[0]
    assert main(["best", str(exp), "--export", str(tmp_path / "w.pt")]) == 0
    out = capsys.readouterr().out
    assert (f"best trial: {tid}" in out and "best weights: best_model in" in out
            and "objective" in out)
    assert (tmp_path / "w.pt").exists() and (tmp_path / "w.pt.json").exists()
    assert main(["analyze", str(exp), "--out", str(tmp_path / "rep")]) == 0
    out = capsys.readouterr().out
    assert str(tmp_path / "rep" / "report.md") in out and "Trials: 4" in out and tid in out


@pytest.mark.parametrize("command", ["analyze", "best"])
def test_cli_not_an_experiment_exits_2(tmp_path, capsys, command):
    bogus = tmp_path / "not-an-experiment"
    bogus.mkdir()
    assert main([command, str(bogus)]) == 2
    assert str(bogus) in capsys.readouterr().err
    assert main([command, str(tmp_path / "missing")]) == 2
    assert str(tmp_path / "missing") in capsys.readouterr().err


def test_analyze_tolerates_an_empty_result_json(tiny_experiment, tmp_path):
    exp = _copy(tiny_experiment, tmp_path)
    victim = sorted(exp.glob("trial_*"))[0]
    (victim / "result.json").write_text("")
    for h in victim.glob("checkpoint_*/history.json"):  # else its epochs come back from there
        h.unlink()
    report = analyze(str(exp))
    _check_files(report)
    df = pd.read_csv(report / "trials.csv", dtype={"trial_id": str})
    assert len(df) == 4
    row = df[df["trial_id"] == victim.name.removeprefix("trial_")].iloc[0]
    assert row["outcome"] == "error" and pd.isna(row["rank"])
    text = (report / "report.md").read_text()
    assert "errored 1" in next(x for x in text.splitlines() if x.startswith("Trials: "))
    assert len(pd.read_parquet(report / "results.parquet")) == sum(_result_lines(exp).values())
    assert best_trial(str(exp))[0] != victim.name.removeprefix("trial_")


def test_epochs_missing_from_result_json_come_back_from_the_newest_checkpoint(
        tiny_experiment, tmp_path):
    """A driver killed with SIGKILL can leave result.json behind the checkpoints (Ray copies it
    every few seconds): the trainer's history.json beside each checkpoint fills the gap."""
    exp = _copy(tiny_experiment, tmp_path)
    before = {t.trial_id: t.rows for t in load_experiment(exp).trials}
    victim = max(exp.glob("trial_*"), key=lambda d: len(before[d.name.removeprefix("trial_")]))
    lines = [x for x in (victim / "result.json").read_text().splitlines() if x.strip()]
    assert len(lines) >= 3
    (victim / "result.json").write_text(lines[-1] + "\n")  # only the last epoch survived
    after = {t.trial_id: t.rows for t in load_experiment(exp).trials}
    tid = victim.name.removeprefix("trial_")
    assert [r["epoch"] for r in after[tid]] == [r["epoch"] for r in before[tid]]
    for old, new in zip(before[tid][:-1], after[tid][:-1], strict=True):
        assert new["restored_from_checkpoint"] is True
        assert new["val_loss"] == pytest.approx(old["val_loss"])  # the trainer's own metrics
    assert "restored_from_checkpoint" not in after[tid][-1]
    for other in set(before) - {tid}:  # complete trials are left as they were
        assert after[other] == before[other]


def test_analyze_with_no_results_at_all(tiny_experiment, tmp_path, capsys):
    exp = _copy(tiny_experiment, tmp_path)
    for d in exp.glob("trial_*"):
        (d / "result.json").write_text("{not json\n")
        for h in d.glob("checkpoint_*/history.json"):
            h.unlink()
    report = analyze(str(exp))
    _check_files(report)
    text = (report / "report.md").read_text()
    assert "No trial reported a result" in text and "Trials: 4 " in text
    assert len(pd.read_parquet(report / "results.parquet")) == 0
    assert main(["best", str(exp)]) == 2
    assert "no trial" in capsys.readouterr().err


def _rewrite_results(trial_dir: Path, edit) -> None:
    rows = result_rows(trial_dir)
    edit(rows[-1])
    (trial_dir / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))


def _set_status(experiment: Path, trial_id: str, status: str) -> None:
    for f in experiment.glob("experiment_state-*.json"):
        data = json.loads(f.read_text())
        for entry in data["trial_data"]:
            a = json.loads(entry[0])
            if a["trial_id"] == trial_id:
                a["status"] = status
                entry[0] = json.dumps(a)
        f.write_text(json.dumps(data))


def test_analyze_counts_collapsed_diverged_and_errored(tiny_experiment, tmp_path):
    """Outcomes edited into a copy (flat collapse, divergence with its sentinel, a Tune ERROR):
    each is counted, the collapse table appears, and the figures still build."""
    exp = _copy(tiny_experiment, tmp_path)
    t_flat, t_div, t_err, _ = sorted(exp.glob("trial_*"))
    _rewrite_results(t_flat, lambda r: r.update(collapsed=1, collapse_kind="flat"))
    _rewrite_results(t_div, lambda r: r.update(diverged=1, val_loss=1e3, objective=1e3))
    _set_status(exp, t_err.name.removeprefix("trial_"), "ERROR")
    report = analyze(str(exp))
    _check_files(report)
    df = pd.read_csv(report / "trials.csv", dtype={"trial_id": str}).set_index("trial_id")
    assert df.loc[t_flat.name.removeprefix("trial_"), "outcome"] == "collapsed_flat"
    assert df.loc[t_div.name.removeprefix("trial_"), "outcome"] == "diverged"
    assert df.loc[t_err.name.removeprefix("trial_"), "outcome"] == "error"
    text = (report / "report.md").read_text()
    line = next(x for x in text.splitlines() if x.startswith("Trials: "))
    assert "collapsed 1 (ratio 0, flat 1, flat amplitude 0), diverged 1, errored 1" in line
    assert "| P(collapse) |" in text and "1 of 3 trials collapsed (" in text
