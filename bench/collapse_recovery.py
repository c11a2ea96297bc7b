"""Would a flagged trial have recovered? Reads experiments run with ``collapse/stop=false``.

Run a study (and its crash hunt) with ``--no-collapse-stop``: every trial is flagged as usual but
trains on. For each flagged trial this prints its best val_loss before the flag, the best it
reached after it, and whether it recovered (came back within ``--within`` of its pre-flag best);
and, for contrast, the unflagged trials whose val_loss went above ``collapse/ratio`` x best for a
single epoch (the excursions ``collapse/patience`` already tolerates).

    tune-ptycho run --no-collapse-stop --name recovery
    tune-ptycho crash-hunt tune-ptycho-runs/recovery --top 5 --seeds 3
    python bench/collapse_recovery.py tune-ptycho-runs/recovery tune-ptycho-runs/recovery/crash_hunt
"""

from __future__ import annotations

import argparse

import _common

from ptycho_model import names
from tune_ptycho.analysis.load import load_experiment


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("experiments", nargs="+")
    ap.add_argument("--within", type=float, default=0.10,
                    help="recovered: best after the flag <= (1 + within) x best before it")
    args = ap.parse_args()
    _common.banner("collapse recovery", vars(args))
    rows, flagged, recovered, excursions = [], 0, 0, 0
    for path in args.experiments:
        exp = load_experiment(path, with_study=False)
        if exp.spec.run.collapse.stop:
            print(f"note: {path} ran with collapse/stop=true: its flagged trials were stopped")
        ratio = exp.spec.run.collapse.ratio
        for t in exp.trials:
            vals = [r.get(names.VAL_LOSS) for r in t.rows]
            flag = next((r[names.EPOCH] for r in t.rows if r.get(names.COLLAPSED)), None)
            if flag is None:
                peak = max((v / min(vals[:i + 1]) for i, v in enumerate(vals) if i), default=0)
                if peak > ratio:
                    excursions += 1
                    rows.append([exp.info.name, t.trial_id, "-", f"{min(vals):.4g}", "-",
                                 f"{peak:.2f}", "unflagged excursion"])
                continue
            flagged += 1
            before = min(vals[:flag - 1]) if flag > 1 else vals[0]
            after = min(vals[flag:]) if len(vals) > flag else None
            ok = after is not None and after <= (1 + args.within) * before
            recovered += ok
            rows.append([exp.info.name, t.trial_id, flag, f"{before:.4g}",
                         f"{after:.4g}" if after is not None else "-",
                         f"{max(vals[flag - 1:]) / before:.2f}",
                         f"{'recovered' if ok else 'did not recover'} "
                         f"({len(vals) - flag} epochs after the flag)"])
    print(_common.table(["experiment", "trial", "flagged at", "best before", "best after",
                         "max ratio", "verdict"], rows))
    print(f"\n{recovered} of {flagged} flagged trials recovered; {excursions} unflagged trial(s) "
          "went above the ratio for less than the patience")
    _common.verdict("flagged trials that recovered", recovered / flagged if flagged else 0.0,
                    "reported", None)


if __name__ == "__main__":
    main()
