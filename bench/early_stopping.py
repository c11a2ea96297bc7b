"""Early-stopping value: one seeded study under ASHA, HyperBand and no scheduler (+ collapse rule).

Issue: "Early-stopping value: the same seeded study with and without ASHA + collapse rule: epochs
spent, wall time, best objective reached (target: under 40% of the epochs for a best objective
within 5%)."

Two arms of ``tune-ptycho run`` on one embedded Ray (started beforehand, not counted), same
preset, space, ``--seed``, trial count and epochs, 2 trials at a time, 1 CPU each, after an
untimed warm-up study:

* ``early``: the defaults — ASHA on the current val_loss and the collapse rule (ratio + flat);
* ``hyperband``: ``--scheduler hyperband`` — Ray's synchronous HyperBand (reduction factor 3), the
  collapse rule as in ``early``: what reproducible stops cost against ASHA;
* ``full``:  ``--no-asha --collapse-ratio 1e6 --flat-std 0`` — every trial runs every epoch
  (a diverged trial still ends: it has nothing left to train).

Epochs spent = the sum over trials of the epochs each reported. Best objective = the lowest
objective a trial ended with (what Optuna ranks: the current val_loss at the stop); the lowest
best_val_loss seen at any epoch is shown beside it. Optuna's seeded TPE sees different values
from stopped trials, so after the seed arms and the random start-up trials the two arms may
sample different configurations: that is part of what is measured.

The arms run interleaved (early hyperband full early hyperband full ..., ``--repeats`` each,
default 5, the same seed each time: what differs is the asynchronous scheduling), and every ratio
is taken per repeat round: early / full (epochs < 0.40, best objective <= 1.05, wall reported)
and hyperband / early (epochs, wall, best objective: reported, no target). Their min / median /
max and verdicts go to ``docs/bench/results/early_stopping.json``. Refused on a loaded machine
unless ``--allow-load``.

    python bench/early_stopping.py           # cpu preset, full space, 12 trials x 12 epochs
    python bench/early_stopping.py --quick   # smoke: tiny, 1 trial x 2 epochs, 1 repeat
"""

from __future__ import annotations

import argparse
import math
import time

import _common  # noqa: F401
from _common import (
    LocalRay,
    Measure,
    add_timing_args,
    banner,
    check_load,
    check_repeats,
    interleave,
    read_trials,
    result_dir,
    table,
)
from _results import Target, figure, publish

SCRIPT = "bench/early_stopping.py"
# the schedulers, the collapse rule, the searcher and the trials they stop
MODULES = ["ptycho_model", "trainables", "tune_ptycho/run", "search_spaces"]
ARMS = {
    "early": [],
    "hyperband": ["--scheduler", "hyperband"],
    "full": ["--no-asha", "--collapse-ratio", "1e6", "--flat-std", "0"],
}
EPOCHS_TARGET = Target("<", 0.40)
OBJECTIVE_TARGET = Target("<=", 1.05)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="cpu")
    p.add_argument("--space", default="full")
    p.add_argument("--num-samples", type=int, default=12)
    p.add_argument("--epochs", type=int, default=12,
                   help="max epochs per trial (default 12; the full space needs > 5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-concurrent", type=int, default=2)
    p.add_argument("--order", default="early,hyperband,full",
                   help="the arms, in the order each repeat runs them")
    p.add_argument("--num-cpus", type=int, default=2)
    p.add_argument("--keep", action="store_true")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: tiny, 1 trial x 2 epochs, 1 repeat, no warm-up study")
    add_timing_args(p)
    args = p.parse_args(argv)
    args.order = [a.strip() for a in args.order.split(",") if a.strip()]
    bad = [a for a in args.order if a not in ARMS]
    if bad or not args.order or len(set(args.order)) != len(args.order):
        p.error(f"--order {','.join(args.order)}: give distinct arms of {', '.join(ARMS)}")
    return args


def outcome(rows: list[dict], max_epochs: int) -> str:
    last = rows[-1]
    if last.get("diverged"):
        return "diverged"
    if last.get("collapsed"):
        return f"collapsed ({last.get('collapse_kind')})"
    return "finished" if last["epoch"] >= max_epochs else "stopped (scheduler)"


def summarise(trials: dict[str, list[dict]], max_epochs: int) -> dict:
    done = {t: r for t, r in trials.items() if r}
    finals = [r[-1]["objective"] for r in done.values()]
    bests = [min(x["best_val_loss"] for x in r) for r in done.values()]
    outcomes: dict[str, int] = {}
    for r in done.values():
        o = outcome(r, max_epochs)
        outcomes[o] = outcomes.get(o, 0) + 1
    return {
        "trials": len(done),
        "epochs": sum(len(r) for r in done.values()),
        "best_objective": min(finals) if finals else math.nan,
        "best_val_loss": min(bests) if bests else math.nan,
        "outcomes": ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())),
    }


def one_arm(r: LocalRay, args: argparse.Namespace, arm: str, i: int, log: list) -> Measure:
    """One study of ``arm``: epochs spent, wall of the run call, best objective."""
    name = f"es-{arm}-{i}"
    code, wall, exp = r.run_cli(name, [
        "--preset", args.preset, "--space", args.space,
        "--num-samples", str(args.num_samples), "--max-epochs", str(args.epochs),
        "--max-concurrent", str(args.max_concurrent), "--cpus-per-trial", "1",
        "--seed", str(args.seed), *ARMS[arm]])
    s = summarise(read_trials(exp), args.epochs)
    if code != 0 or not s["trials"]:
        raise SystemExit(f"study {name} failed: exit {code}, {s['trials']} trials; see above")
    log.append([arm, i + 1, s["trials"], s["epochs"],
                f"{s['epochs'] / (args.num_samples * args.epochs):.0%}", wall,
                s["best_objective"], s["best_val_loss"], s["outcomes"]])
    print(f"  {wall:.0f} s, {s['epochs']} epochs", flush=True)
    return {"epochs": float(s["epochs"]), "wall_s": wall, "best_objective": s["best_objective"],
            "best_val_loss": s["best_val_loss"]}


def early_vs_full(runs) -> list:
    """The targets: ASHA + collapse rule against every trial to the end, per repeat round."""
    ep = runs.ratios("early", "full", "epochs")
    obj = runs.ratios("early", "full", "best_objective")
    return [
        figure("epochs early / full", ep, target=EPOCHS_TARGET),
        figure("best objective early / full", obj, target=OBJECTIVE_TARGET),
        figure("both together: max(epochs / 0.40, objective / 1.05)",
               [max(e / 0.40, o / 1.05) for e, o in zip(ep, obj, strict=True)],
               target=Target("<", 1.0), note="< 1: epochs < 40% AND objective within 5%"),
        figure("wall time early / full", runs.ratios("early", "full", "wall_s")),
        figure("best val_loss (any epoch) early / full",
               runs.ratios("early", "full", "best_val_loss")),
    ]


def hyperband_vs_asha(runs) -> list:
    """Reported, no target: what reproducible stops cost against ASHA."""
    return [figure(f"hyperband / ASHA {what}", runs.ratios("hyperband", "early", key),
                   note="reported, no target")
            for what, key in (("epochs", "epochs"), ("wall time", "wall_s"),
                              ("best objective", "best_objective"))]


def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()
    args = parse(argv)
    if args.quick:
        args.preset, args.num_samples, args.epochs = "tiny", 1, 2
    repeats = check_repeats(args.repeats, args.quick)
    settings = {"preset": args.preset, "space": args.space, "trials": args.num_samples,
                "max epochs": args.epochs, "seed": args.seed,
                "max concurrent": args.max_concurrent, "order": args.order, "repeats": repeats,
                "quick": args.quick}
    banner("early stopping: ASHA, HyperBand (+ collapse rule) vs every trial to the end",
           settings)
    load = check_load(args.allow_load, args.quick)
    log: list[list] = []
    pairs = [(a, b) for a, b in (("early", "full"), ("hyperband", "early"))
             if a in args.order and b in args.order]
    with LocalRay(num_cpus=args.num_cpus, keep=args.keep, prefix="tpbe") as r:
        print(r.started_line(), flush=True)
        r.warm_dataset(args.preset)
        if not args.quick:
            print(f"untimed warm-up study: {r.warm_up(args.preset):.1f} s", flush=True)
        arms = {a: (lambda i, a=a: one_arm(r, args, a, i, log)) for a in args.order}
        runs = interleave(arms, repeats, pairs)

    print()
    print(table(["arm", "repeat", "trials", "epochs spent", "of max", "wall s",
                 "best objective", "best val_loss (any epoch)", "outcomes"], log))
    figures = []
    if ("early", "full") in pairs:
        figures += early_vs_full(runs)
    if ("hyperband", "early") in pairs:
        figures += hyperband_vs_asha(runs)
    figures += [figure(f"epochs spent, {a}", runs.values(a, "epochs")) for a in args.order]
    publish(SCRIPT, MODULES, settings, figures, load_start=load, started=started,
            quick=args.quick, out_dir=result_dir(args.out_dir, args.quick))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
