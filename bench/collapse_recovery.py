"""Would a flagged trial have recovered? Reads experiments run with ``collapse/stop=false``.

Run a study (and its crash hunt) with ``--no-collapse-stop``: every trial is flagged as usual but
trains on. For each flagged trial this prints its best val_loss before the flag, the best it
reached after it, and whether it recovered (came back within ``--within`` of its pre-flag best);
and, for contrast, the unflagged trials whose val_loss went above ``collapse/ratio`` x best for a
single epoch (the excursions ``collapse/patience`` already tolerates).

    tune-ptycho run --no-collapse-stop --name recovery
    tune-ptycho crash-hunt tune-ptycho-runs/recovery --top 5 --seeds 3
    python bench/collapse_recovery.py tune-ptycho-runs/recovery tune-ptycho-runs/recovery/crash_hunt
    python bench/collapse_recovery.py --quick   # smoke: reads a 1-trial tiny study it runs
                                                # first (--no-collapse-stop, 2 epochs, temp dir),
                                                # or the experiments given
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import _common

from ptycho_model import names
from tune_ptycho.analysis.load import load_experiment


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("experiments", nargs="*", help="experiment directories (one at least)")
    ap.add_argument("--within", type=float, default=0.10,
                    help="recovered: best after the flag <= (1 + within) x best before it")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: with no experiment given, run a 1-trial tiny study with "
                         "--no-collapse-stop (2 epochs, in a temp dir) and read it")
    args = ap.parse_args(argv)
    if not args.experiments and not args.quick:
        ap.error("give at least one experiment directory (or --quick)")
    return args


@contextmanager
def quick_experiment() -> Iterator[str]:
    """A finished 1-trial tiny study run with ``--no-collapse-stop``; removed afterwards."""
    with _common.LocalRay(prefix="tpbr") as r:
        print(r.started_line(), flush=True)
        code, _, exp = r.run_cli("recovery", [
            "--preset", "tiny", "--space", "seeds", "--num-samples", "1", "--max-epochs", "2",
            "--no-asha", "--no-collapse-stop", "--max-concurrent", "1", "--cpus-per-trial", "1"])
        if code != 0:
            raise SystemExit(f"the quick study failed (exit {code}); see above")
        yield str(exp)


def trial_row(name: str, t, ratio: float, within: float) -> tuple[list, str]:
    """One trial's table row and what it is: flagged-recovered, flagged, excursion, or plain."""
    vals = [r.get(names.VAL_LOSS) for r in t.rows]
    flag = next((r[names.EPOCH] for r in t.rows if r.get(names.COLLAPSED)), None)
    if flag is None:
        peak = max((v / min(vals[:i + 1]) for i, v in enumerate(vals) if i), default=0)
        if peak > ratio:
            return [name, t.trial_id, "-", f"{min(vals):.4g}", "-", f"{peak:.2f}",
                    "unflagged excursion"], "excursion"
        return [], "plain"
    before = min(vals[:flag - 1]) if flag > 1 else vals[0]
    after = min(vals[flag:]) if len(vals) > flag else None
    ok = after is not None and after <= (1 + within) * before
    return [name, t.trial_id, flag, f"{before:.4g}",
            f"{after:.4g}" if after is not None else "-",
            f"{max(vals[flag - 1:]) / before:.2f}",
            f"{'recovered' if ok else 'did not recover'} "
            f"({len(vals) - flag} epochs after the flag)"], "recovered" if ok else "flagged"


def analyse(paths: Sequence[str], within: float) -> dict[str, int]:
    """Print the table of the experiments' flagged trials and excursions; the counts."""
    rows, counts = [], {"flagged": 0, "recovered": 0, "excursion": 0, "plain": 0, "trials": 0}
    for path in paths:
        exp = load_experiment(path, with_study=False)
        if exp.spec.run.collapse.stop:
            print(f"note: {path} ran with collapse/stop=true: its flagged trials were stopped")
        for t in exp.trials:
            row, kind = trial_row(exp.info.name, t, exp.spec.run.collapse.ratio, within)
            counts[kind] += 1
            counts["trials"] += 1
            if row:
                rows.append(row)
    counts["flagged"] += counts["recovered"]  # a recovered trial was flagged too
    print(_common.table(["experiment", "trial", "flagged at", "best before", "best after",
                         "max ratio", "verdict"], rows))
    return counts


def main(argv: list[str] | None = None) -> int:
    """Read the experiments (or the quick one) and print who recovered; 0."""
    args = parse(argv)
    _common.banner("collapse recovery", vars(args))
    if args.quick and not args.experiments:
        with quick_experiment() as path:
            counts = analyse([path], args.within)
    else:
        counts = analyse(args.experiments, args.within)
    flagged, recovered = counts["flagged"], counts["recovered"]
    print(f"\n{recovered} of {flagged} flagged trials recovered; {counts['excursion']} "
          "unflagged trial(s) went above the ratio for less than the patience "
          f"({counts['trials']} trials read)")
    _common.verdict("flagged trials that recovered", recovered / flagged if flagged else 0.0,
                    "reported", None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
