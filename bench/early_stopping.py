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
"""

from __future__ import annotations

import argparse
import math

import _common  # noqa: F401
from _common import LocalRay, banner, read_trials, table, verdict

ARMS = {
    "early": [],
    "hyperband": ["--scheduler", "hyperband"],
    "full": ["--no-asha", "--collapse-ratio", "1e6", "--flat-std", "0"],
}


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="cpu")
    p.add_argument("--space", default="full")
    p.add_argument("--num-samples", type=int, default=12)
    p.add_argument("--epochs", type=int, default=12,
                   help="max epochs per trial (default 12; the full space needs > 5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-concurrent", type=int, default=2)
    p.add_argument("--order", default="early,hyperband,full")
    p.add_argument("--num-cpus", type=int, default=2)
    p.add_argument("--keep", action="store_true")
    p.add_argument("--quick", action="store_true", help="smoke run: tiny, 4 trials x 6 epochs")
    return p.parse_args()


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


def main() -> None:
    args = parse()
    if args.quick:
        args.preset, args.num_samples, args.epochs = "tiny", 4, 6
    banner("early stopping: ASHA, HyperBand (+ collapse rule) vs every trial to the end",
           {"preset": args.preset, "space": args.space, "trials": args.num_samples,
            "max epochs": args.epochs, "seed": args.seed, "max concurrent": args.max_concurrent,
            "quick": args.quick})
    res = {}
    with LocalRay(num_cpus=args.num_cpus, keep=args.keep, prefix="tpbe") as r:
        print(f"Ray started in {r.start_s:.1f} s (not counted)", flush=True)
        r.warm_dataset(args.preset)
        print(f"untimed warm-up study: {r.warm_up(args.preset):.1f} s", flush=True)
        for arm in args.order.split(","):
            print(f"arm {arm}: {' '.join(ARMS[arm]) or '(ASHA + collapse rule, defaults)'} ...",
                  flush=True)
            code, wall, exp = r.run_cli(f"es-{arm}", [
                "--preset", args.preset, "--space", args.space,
                "--num-samples", str(args.num_samples), "--max-epochs", str(args.epochs),
                "--max-concurrent", str(args.max_concurrent), "--cpus-per-trial", "1",
                "--seed", str(args.seed), *ARMS[arm]])
            s = summarise(read_trials(exp), args.epochs)
            res[arm] = {**s, "wall": wall, "exit": code}
            print(f"  {wall:.0f} s, {s['epochs']} epochs", flush=True)

    print()
    print(table(["arm", "exit", "trials", "epochs spent", "of max", "wall s", "best objective",
                 "best val_loss (any epoch)", "outcomes"],
                [[a, v["exit"], v["trials"], v["epochs"],
                  f"{v['epochs'] / (args.num_samples * args.epochs):.0%}", v["wall"],
                  v["best_objective"], v["best_val_loss"], v["outcomes"]]
                 for a, v in res.items()]))
    if "early" in res and "full" in res:
        e, f = res["early"], res["full"]
        ep, wall, obj = e["epochs"] / f["epochs"], e["wall"] / f["wall"], \
            e["best_objective"] / f["best_objective"]
        print()
        print(table(["ratio early / full", "value", "target"], [
            ["epochs spent", ep, "< 0.40"],
            ["wall time", wall, "-"],
            ["best objective", obj, "<= 1.05"],
            ["best val_loss (any epoch)", e["best_val_loss"] / f["best_val_loss"], "-"],
        ]))
        print()
        verdict("epochs early / full", ep, "< 0.40", ep < 0.40)
        verdict("best objective early / full", obj, "<= 1.05", obj <= 1.05)
        verdict("both together", max(ep / 0.40, obj / 1.05), "< 1 (epochs < 40% AND objective "
                "within 5%)", ep < 0.40 and obj <= 1.05)
    if "early" in res and "hyperband" in res:  # reported, no target: the price of reproducing
        e, h = res["early"], res["hyperband"]
        print()
        print(table(["ratio hyperband / early (ASHA)", "value"], [
            ["epochs spent", h["epochs"] / e["epochs"]],
            ["wall time", h["wall"] / e["wall"]],
            ["best objective", h["best_objective"] / e["best_objective"]],
        ]))
        for what, key in (("epochs", "epochs"), ("wall time", "wall"),
                          ("best objective", "best_objective")):
            print(f"RESULT hyperband / ASHA {what}: {h[key] / e[key]:.3f} (reported, no target)")


if __name__ == "__main__":
    main()
