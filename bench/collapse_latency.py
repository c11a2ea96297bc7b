"""Collapse detection latency: epochs from a trial's first collapsed epoch to its stop.

Issue: "Collapse detection latency: epochs between a trial's first collapse epoch and its stop
(target: <= patience)."

Studies of ``tune-ptycho run`` (space ``seeds``, ``--no-asha`` so only the collapse rule stops a
trial) on one embedded Ray started beforehand:

* ratio collapses, scripted through the real rule: ``faults/collapse_at_epoch=k`` multiplies
  val_loss by ``faults/collapse_factor`` (10) from epoch k on — a learns-then-collapses curve;
  several k, several trials each;
* flat collapses, real: ``optim/lr=0.1``, ``model/arch=hybrid`` (the output goes constant).

Per trial, from its result.json: *first* = the first epoch in the collapsed regime (ratio: the
first epoch after ``collapse/grace`` with val_loss / best_val_loss > ``collapse/ratio``; flat: the
first epoch with output_std < ``collapse/flat_std``), *stop* = its last reported epoch, latency =
stop - first + 1 (the rule needs ``patience`` epochs in the regime: latency == patience is the
design), and the epochs reported after the ``collapsed`` flag (the stopper should make that 0).

``--experiment PATH`` measures the same on an existing experiment instead, with no Ray and no
fault hook: the real collapses of, say, the main job (``tune-ptycho run``), under its own ASHA.
"""

from __future__ import annotations

import argparse

import _common  # noqa: F401
from _common import LocalRay, banner, read_trials, table, verdict


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="tiny")
    p.add_argument("--epochs", type=int, default=12, help="max epochs per trial (default 12)")
    p.add_argument("--collapse-at", default="4,6,9",
                   help="scripted collapse epochs, comma-separated (default 4,6,9); each must "
                        "be after the grace period")
    p.add_argument("--trials", type=int, default=2, help="trials per setting (default 2)")
    p.add_argument("--flat-lr", type=float, default=0.1)
    p.add_argument("--patience", type=int, default=None, help="collapse/patience (default: preset)")
    p.add_argument("--num-cpus", type=int, default=2)
    p.add_argument("--keep", action="store_true")
    p.add_argument("--experiment", metavar="PATH",
                   help="measure the real collapses of this finished experiment; run nothing")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 6 epochs, collapse at 3, 1 trial per setting")
    return p.parse_args()


def first_in_regime(rows: list[dict], kind: str, grace: int, ratio: float, flat_std: float):
    for r in rows:
        if kind == "ratio" and r["epoch"] > grace and r["collapse_ratio"] > ratio:
            return r["epoch"]
        if kind == "flat" and r["output_std"] < flat_std:
            return r["epoch"]
    return None


def latency_row(label: str, tid: str, code, t: list[dict], kind: str, grace: int, ratio: float,
                flat_std: float, latencies: list[int]) -> list:
    first = first_in_regime(t, kind, grace, ratio, flat_std)
    stop = t[-1]["epoch"]
    flagged = next((x["epoch"] for x in t if x.get("collapsed")), None)
    after = stop - flagged if flagged is not None else None
    lat = stop - first + 1 if first is not None else None
    if lat is not None and t[-1].get("collapsed"):
        latencies.append(lat)
    return [label, tid, code, t[-1].get("collapse_kind"), first, flagged, stop, lat, after]


def report(rows: list[list], latencies: list[int], patience: int) -> None:
    print()
    print(table(["setting", "trial", "exit", "kind", "first collapsed epoch", "flagged at",
                 "stop epoch", "latency (epochs)", "epochs after flag"], rows))
    print()
    if latencies:
        worst = max(latencies)
        print(f"{len(latencies)} collapsed trial(s); latency min {min(latencies)}, max {worst} "
              f"epochs; patience {patience}")
        verdict("worst latency / patience", worst / patience, "<= 1.0", worst <= patience)
    else:
        print("no trial collapsed: nothing to measure (check the settings)")


def measure_experiment(path: str) -> None:
    from tune_ptycho.storage.experiment import ExperimentInfo

    spec = ExperimentInfo.load(path).spec
    cfg = spec.run
    grace, c = cfg.collapse_grace, cfg.collapse
    banner("collapse latency of an experiment's real collapses",
           {"experiment": path, "preset": spec.preset, "grace": grace, "patience": c.patience,
            "ratio": c.ratio, "flat_std": c.flat_std})
    rows, latencies = [], []
    for tid, t in read_trials(path).items():
        if t and t[-1].get("collapsed"):
            kind = t[-1].get("collapse_kind")
            rows.append(latency_row(spec.search.space, tid, "-", t, kind, grace, c.ratio,
                                    c.flat_std, latencies))
    report(rows, latencies, c.patience)


def main() -> None:
    args = parse()
    if args.experiment:
        return measure_experiment(args.experiment)
    if args.quick:
        args.epochs, args.collapse_at, args.trials = 6, "3", 1
    from ptycho_model.presets import preset_config

    upd = {"train/max_epochs": args.epochs}
    if args.patience:
        upd["collapse/patience"] = args.patience
    cfg = preset_config(args.preset, upd)
    grace, c = cfg.collapse_grace, cfg.collapse
    ks = [int(x) for x in args.collapse_at.split(",")]
    banner("collapse latency: first collapsed epoch -> trial stop",
           {"preset": args.preset, "max epochs": args.epochs, "grace": grace,
            "patience": c.patience, "ratio": c.ratio, "flat_std": c.flat_std,
            "collapse_at": ks, "trials per setting": args.trials, "flat lr": args.flat_lr,
            "quick": args.quick})
    bad = [k for k in ks if k <= grace or k + c.patience - 1 > args.epochs]
    if bad:
        print(f"warning: collapse_at {bad} not in (grace={grace}, max_epochs - patience + 1]: "
              "the rule cannot see them as intended")

    settings = [(f"ratio, collapse_at={k}", "ratio",
                 ["--set", "faults/allowed=true", "--set", f"faults/collapse_at_epoch={k}"])
                for k in ks]
    settings.append((f"flat, lr={args.flat_lr} hybrid", "flat",
                     ["--set", f"optim/lr={args.flat_lr}", "--set", "model/arch=hybrid"]))
    common = ["--preset", args.preset, "--space", "seeds", "--num-samples", str(args.trials),
              "--max-epochs", str(args.epochs), "--no-asha", "--max-concurrent", "2",
              "--cpus-per-trial", "1", "--set", f"collapse/patience={c.patience}"]
    rows, latencies = [], []
    with LocalRay(num_cpus=args.num_cpus, keep=args.keep, prefix="tpbc") as r:
        print(f"Ray started in {r.start_s:.1f} s (not counted)", flush=True)
        r.warm_dataset(args.preset)
        for i, (label, kind, extra) in enumerate(settings):
            print(f"{label} ...", flush=True)
            code, _, exp = r.run_cli(f"cl{i}", [*common, *extra])
            for tid, t in read_trials(exp).items():
                if not t:
                    rows.append([label, tid, code, "no results", "", "", "", "", ""])
                    continue
                rows.append(latency_row(label, tid, code, t, kind, grace, c.ratio, c.flat_std,
                                        latencies))
    report(rows, latencies, c.patience)


if __name__ == "__main__":
    main()
