"""Parallel efficiency on this host: N single-threaded trials, 1 vs 2 at a time.

Issue: "Parallel efficiency on this host: N single-threaded trials with 1 vs 2 concurrent (target:
> 1.7x)."

The same study twice through ``tune-ptycho run`` on one embedded Ray started beforehand (its
start-up is not counted) with the dataset already cached, after an untimed warm-up study: space
``seeds`` (the preset's arm over Optuna-drawn seeds, same ``--seed`` both times), ``--no-asha`` so
every trial runs all its epochs, 1 CPU (= 1 torch thread) per trial, ``--max-concurrent 1`` then
``2``.

Timed: the whole ``tune-ptycho run`` call (driver set-up, Optuna study, Tuner.fit, final summary)
and the trials' span (first ``trial_start_ts`` to last ``report_ts``). Speedup = time at 1 / time
at 2; efficiency = speedup / 2.
"""

from __future__ import annotations

import argparse

import _common  # noqa: F401
from _common import LocalRay, banner, median, read_trials, table, trials_span, verdict


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="cpu")
    p.add_argument("--num-samples", type=int, default=4, help="trials per study (default 4)")
    p.add_argument("--epochs", type=int, default=10, help="epochs per trial (default 10)")
    p.add_argument("--concurrency", default="1,2", help="max-concurrent values (default 1,2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-cpus", type=int, default=2, help="CPUs of the embedded Ray")
    p.add_argument("--keep", action="store_true")
    p.add_argument("--quick", action="store_true", help="smoke run: tiny, 2 trials x 3 epochs")
    return p.parse_args()


def main() -> None:
    args = parse()
    if args.quick:
        args.preset, args.num_samples, args.epochs = "tiny", 2, 3
    levels = [int(x) for x in args.concurrency.split(",")]
    banner("parallel: N single-threaded trials, 1 vs 2 concurrent",
           {"preset": args.preset, "trials": args.num_samples, "epochs": args.epochs,
            "concurrency": levels, "seed": args.seed, "quick": args.quick})
    rows, results = [], {}
    with LocalRay(num_cpus=args.num_cpus, keep=args.keep, prefix="tpbp") as r:
        print(f"Ray started in {r.start_s:.1f} s (not counted)", flush=True)
        r.warm_dataset(args.preset)
        print(f"untimed warm-up study: {r.warm_up(args.preset):.1f} s", flush=True)
        for k in levels:
            print(f"study with --max-concurrent {k} ...", flush=True)
            code, wall, exp = r.run_cli(f"parallel-c{k}", [
                "--preset", args.preset, "--space", "seeds", "--num-samples", str(args.num_samples),
                "--max-epochs", str(args.epochs), "--no-asha", "--max-concurrent", str(k),
                "--cpus-per-trial", "1", "--seed", str(args.seed)])
            trials = read_trials(exp)
            epochs = sum(len(t) for t in trials.values())
            ep_times = [row["epoch_time_s"] for t in trials.values() for row in t[1:]]
            span = trials_span(trials)
            results[k] = (wall, span)
            rows.append([k, code, len(trials), epochs, wall, span, median(ep_times)])

    print()
    print(table(["concurrent", "exit", "trials", "epochs", "run wall s", "trials span s",
                 "median epoch_time_s"], rows))
    if 1 in results and 2 in results:
        (w1, s1), (w2, s2) = results[1], results[2]
        print()
        print(table(["measure", "1 at a time s", "2 at a time s", "speedup", "efficiency"], [
            ["whole run call", w1, w2, f"{w1 / w2:.2f}x", f"{w1 / w2 / 2:.0%}"],
            ["trials span", s1, s2, f"{s1 / s2:.2f}x", f"{s1 / s2 / 2:.0%}"],
        ]))
        print()
        verdict("speedup 2 vs 1 concurrent (whole run call)", w1 / w2, "> 1.7", w1 / w2 > 1.7)
        verdict("speedup 2 vs 1 concurrent (trials span)", s1 / s2, "> 1.7", s1 / s2 > 1.7)


if __name__ == "__main__":
    main()
