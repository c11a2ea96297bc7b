"""The replay benchmark end to end at toy size: ``bench/replay_record.py --quick`` trains the tiny
grid for real (2 x 2 points, one seed, 3 epochs), a second run resumes and adds nothing, and
``bench/replay.py --quick`` replays every method on that table with real Optuna and Ray's own
ASHA code (no mocks, no Ray cluster).

One row of the table gets a constructed collapse flag (the tiny runs never collapse in 3
epochs): the collapse-rule method must stop a trial of it at that epoch, the methods without
the rule must not. What is checked of every replay: each trial's score is its recorded
objective, best-so-far never rises and never goes below the table's best value, the
no-stopping method runs every trial to ``max_epochs``, the hand protocol too.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
RESULT = ROOT / "docs" / "bench" / "results" / "replay.json"


def _bench(name: str):
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    return __import__(name)


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
    p = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True,
                       text=True, cwd=ROOT, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return p


def _flag_row(rows: list[dict], point: str, from_epoch: int) -> None:
    """Raise the collapse flag of ``point``'s row from ``from_epoch`` on, as the rule would."""
    row = next(r for r in rows if r["point"] == point)
    c = row["curves"]
    for i in range(from_epoch - 1, len(c["collapsed"])):
        c["collapsed"][i], c["collapse_kind"][i] = 1, "flat"


@pytest.mark.slow  # three scripts, each importing torch or Ray: ~20 s on 2 quiet cores
def test_record_resume_and_replay_every_method(tmp_path):
    R = _bench("_replay")
    grid = R.QUICK_GRID
    result_before = RESULT.read_bytes() if RESULT.exists() else None

    table = tmp_path / "rec" / "table.jsonl"
    _run("replay_record.py", "--quick", "--table", str(table))
    rows = [json.loads(line) for line in table.read_text().splitlines()]
    assert sorted((r["point"], r["seed"]) for r in rows) == sorted(grid.runs())
    max_epochs = rows[0]["max_epochs"]
    assert max_epochs == 3
    for r in rows:  # the whole curve, every key, every epoch (no tiny run diverges)
        assert not r["final"]["diverged"] and r["epochs"] == max_epochs
        assert all(len(r["curves"][k]) == max_epochs for k in R.PER_EPOCH), r["point"]
        assert r["curves"]["objective"][-1] == r["final"]["objective"]
    meta = json.loads((table.parent / "recording.json").read_text())
    assert meta["grid"] == grid.to_dict() and meta["runs_recorded"] == len(grid.runs())
    assert meta["total_wall_s"] > 0 and meta["sessions"][0]["commit"]

    before = table.read_text()
    again = _run("replay_record.py", "--quick", "--table", str(table))
    assert table.read_text() == before  # resumed: nothing added
    assert f"{len(grid.runs())} of {len(grid.runs())} runs recorded, 0 to go" in again.stdout
    meta = json.loads((table.parent / "recording.json").read_text())
    assert len(meta["sessions"]) == 2 and meta["sessions"][1]["runs"] == 0

    flagged = R.seed_arms(grid)[0].point  # run first by every method with arms
    _flag_row(rows, flagged, 2)
    replay_dir = tmp_path / "replay"
    replay_dir.mkdir()
    (replay_dir / "table.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (replay_dir / "recording.json").write_text(json.dumps(meta))
    out = tmp_path / "out"
    _run("replay.py", "--quick", "--table", str(replay_dir / "table.jsonl"), "--out", str(out),
         "--traces")

    replay = _bench("replay")
    objective = {(r["point"], r["seed"]): r["curves"]["objective"] for r in rows}
    floor = min(min(v) for v in objective.values())
    traces = json.loads((out / "traces.json").read_text())
    assert {(t["method"], t["arms"]) for t in traces} == {
        (m, a) for m in replay.METHODS for a in (True, False)}
    stopped_at_flag = ran_past_flag = 0
    for t in traces:
        trials = [replay.TrialEnd(**x) for x in t["trials"]]
        assert trials, (t["method"], t["arms"], t["seed"])
        for x in trials:  # a trial's score is its recorded objective at its last epoch
            assert x.objective == objective[(x.point, x.seed)][x.epochs - 1]
        curve = replay.Trace(t["method"], t["arms"], t["seed"], trials, t["consumed"],
                             t["hit"]).best_curve(t["consumed"])
        seen = curve[np.isfinite(curve)]
        assert len(seen) and np.all(np.diff(seen) <= 0) and seen.min() >= floor
        on_flag = [x for x in trials if x.point == flagged]
        if t["method"] in ("random", "hand"):  # no stopping: every trial to its last epoch
            assert all(x.epochs == max_epochs and x.reason == "max_epochs" for x in trials)
        if t["method"] == "tune-ptycho":  # the rule stops the flagged row at its flag, no later
            assert all(x.epochs <= 2 for x in on_flag)
            assert all(x.reason == "collapse" for x in on_flag if x.epochs == 2)
            assert all(x.reason != "collapse" for x in trials if x.point != flagged)
            stopped_at_flag += sum(x.reason == "collapse" and x.epochs == 2 for x in on_flag)
        elif t["method"] == "random+asha":  # the same ASHA without the rule trains on
            assert all(x.reason != "collapse" for x in trials)
            ran_past_flag += sum(x.epochs == max_epochs for x in on_flag)
    assert stopped_at_flag >= 3 and ran_past_flag >= 3  # every run with arms starts on it

    for name in ("replay.md", "replay_best.png", "replay_survival.png", "replay_detail.json"):
        assert (out / name).stat().st_size > 0, name
    res = json.loads((out / "replay.json").read_text())  # bench/_results.py's, quick
    assert res["quick"] and res["settings"]["budgets"] == [4, 10] and res["settings"]["seeds"] == 3
    assert res["figures"] and all(0 <= f["min"] <= f["max"] <= 1 for f in res["figures"])
    assert (RESULT.read_bytes() if RESULT.exists() else None) == result_before  # not docs/

    # a table read at some of its training seeds: only those rows; a seed it lacks is refused
    one = R.Table.read(replay_dir / "table.jsonl", seeds=(grid.seeds[0],))
    assert {s for _, s in one.curves} == {grid.seeds[0]}
    with pytest.raises(ValueError, match="records seeds"):
        R.Table.read(replay_dir / "table.jsonl", seeds=(max(grid.seeds) + 1,))
