"""The cliff map: rounds of seeds over an axis, counted from the trials' own results."""

from __future__ import annotations

import csv
import math

import pytest

from ptycho_model import names
from tune_ptycho.analysis.cliff import Plan, find_cliff, read_plan
from tune_ptycho.cli import main
from tune_ptycho.run.cliff import next_round, wilson_halfwidth

from rows import trial_rows

VALUES = [1e-4, 2e-2, 0.3]
HALFWIDTH = 0.34  # 0 or 2 of 2 collapsed: 0.33, done; 1 of 2: 0.41, two seeds more


def _plan(**kw) -> Plan:
    d = dict(preset="tiny", axis="optim/lr", values=[1e-3, 1e-2], arms={"plain": {}}, seeds=2,
             halfwidth=0.3, max_seeds=6, base_seed=0, sets={}, rounds=[])
    d.update(kw)
    return Plan(**d)


def test_a_round_adds_seeds_only_to_points_whose_interval_is_too_wide():
    plan = _plan(rounds=[{"name": "round_1", "points": [["plain", 1e-3, 1], ["plain", 1e-3, 2],
                                                        ["plain", 1e-2, 1], ["plain", 1e-2, 2]]}])
    # 0 of 6 is narrow enough (half-width 0.2); 1 of 2 is not (0.41)
    assert wilson_halfwidth(0, 6) < 0.3 < wilson_halfwidth(1, 2)
    pts = next_round(plan, {("plain", 1e-3): (0, 6), ("plain", 1e-2): (1, 2)})
    assert pts == [["plain", 1e-2, 3], ["plain", 1e-2, 4]]  # new seeds, the same for all
    capped = next_round(_plan(max_seeds=3, rounds=plan.rounds),
                        {("plain", 1e-3): (0, 2), ("plain", 1e-2): (1, 2)})
    assert capped == [["plain", 1e-3, 3], ["plain", 1e-2, 3]]  # one seed each: the cap is 3


def test_the_cliff_interval_runs_between_the_points_that_are_surely_below_and_above():
    rows = [{"value": v, "runs": 10, "p_crash": p, "low": lo, "high": hi}
            for v, p, lo, hi in ((1e-3, 0.0, 0.0, 0.28), (1e-2, 0.4, 0.17, 0.69),
                                 (1e-1, 1.0, 0.72, 1.0))]
    c = find_cliff("a", rows)
    assert (c.low, c.high) == (1e-3, 1e-1)
    assert 1e-2 < c.estimate < 1e-1  # 0.5 is crossed between the second and third point


@pytest.mark.slow
def test_a_small_cliff_map_counts_its_trials_and_adds_seeds_where_needed(ray_session, tmp_path):
    args = ["cliff", "--preset", "tiny", "--arms", "plain", "--values",
            ",".join(map(str, VALUES)), "--seeds", "2", "--max-seeds", "4", "--halfwidth",
            str(HALFWIDTH), "--storage", str(tmp_path), "--name", "map", "--no-dashboard",
            "--no-progress", "--set", "train/eval_every=0", "--set", "train/max_epochs=2"]
    assert main(args) == 0
    root = tmp_path / "map"
    plan = read_plan(root)
    assert plan.rounds[0]["points"] == [["plain", v, s] for v in VALUES for s in (1, 2)]

    def crashed(rows: list[dict]) -> bool:
        return bool(rows[-1].get(names.COLLAPSED) or rows[-1].get(names.DIVERGED))

    # each trial's own result.json, by (value, seed)
    runs: dict[tuple[float, int], bool] = {}
    for rnd in plan.rounds:
        for rows in trial_rows(root / rnd["name"]).values():
            cfg = rows[0]["config"]
            runs[(cfg["optim"]["lr"], cfg["train"]["seed"])] = crashed(rows)
    assert len(runs) == sum(len(r["points"]) for r in plan.rounds)

    round1 = {v: sum(runs[(v, s)] for s in (1, 2)) for v in VALUES}
    wide = [v for v in VALUES if wilson_halfwidth(round1[v], 2) > HALFWIDTH]
    if wide:
        assert plan.rounds[1]["points"] == [["plain", v, s] for v in wide for s in (3, 4)]
    assert len(plan.rounds) == (2 if wide else 1)  # the cap (4 runs) ends it after round 2

    with open(root / "report" / "cliff.csv") as f:
        table = {float(r["value"]): r for r in csv.DictReader(f)}
    for v in VALUES:
        mine = [c for (lr, _), c in runs.items() if lr == v]
        r = table[v]
        assert int(r["runs"]) == len(mine) == (4 if v in wide else 2)
        assert int(r["collapsed"]) == sum(mine)
        assert math.isclose(float(r["p_crash"]), sum(mine) / len(mine))
        assert float(r["low"]) <= float(r["p_crash"]) <= float(r["high"])
    report = (root / "report" / "report.md").read_text()
    assert "## The cliff" in report and "P_crash crosses 0.5" in report
    assert (root / "report" / "cliff.png").stat().st_size > 10_000

    # the same command continues the map: nothing is left to run
    before = sorted(p.name for p in root.iterdir())
    assert main(args) == 0
    assert sorted(p.name for p in root.iterdir()) == before
    # another map under the same name is refused, naming what differs
    assert main([*args[:6], "1e-4,0.3", *args[7:]]) == 2
