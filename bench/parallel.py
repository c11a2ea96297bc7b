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

The two studies run interleaved, ``--repeats`` times each (default 5: c1 c2 c1 c2 ...), the
speedup taken per repeat pair; its min / median / max go to ``docs/bench/results/parallel.json``
with a verdict from the spread. Refused on a loaded machine unless ``--allow-load``.

    python bench/parallel.py                 # cpu preset, 4 trials x 10 epochs, 5 repeats
    python bench/parallel.py --quick         # smoke: tiny, 2 trials x 1 epoch, 1 repeat
"""

from __future__ import annotations

import argparse
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
    median,
    read_trials,
    result_dir,
    table,
    trials_span,
)
from _results import Target, figure, publish

SCRIPT = "bench/parallel.py"
MODULES = ["ptycho_model", "trainables", "tune_ptycho/run"]  # the trials and the driver's loop
TARGET = Target(">=", 1.7)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="cpu")
    p.add_argument("--num-samples", type=int, default=4, help="trials per study (default 4)")
    p.add_argument("--epochs", type=int, default=10, help="epochs per trial (default 10)")
    p.add_argument("--concurrency", default="1,2",
                   help="max-concurrent values, the arms (default 1,2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-cpus", type=int, default=2, help="CPUs of the embedded Ray")
    p.add_argument("--keep", action="store_true")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: tiny, 2 trials x 1 epoch, 1 repeat, no warm-up study")
    add_timing_args(p)
    return p.parse_args(argv)


def levels_of(text: str) -> list[int]:
    """``--concurrency`` as distinct positive integers."""
    try:
        levels = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise SystemExit(f"--concurrency {text!r}: give integers separated by commas") from None
    if not levels or min(levels) < 1 or len(set(levels)) != len(levels):
        raise SystemExit(f"--concurrency {text!r}: give distinct integers >= 1")
    return levels


def one_study(r: LocalRay, args: argparse.Namespace, k: int, i: int, log: list) -> Measure:
    """One study at ``--max-concurrent k``: its whole-call wall and the trials' span."""
    name = f"parallel-c{k}-{i}"
    code, wall, exp = r.run_cli(name, [
        "--preset", args.preset, "--space", "seeds", "--num-samples", str(args.num_samples),
        "--max-epochs", str(args.epochs), "--no-asha", "--max-concurrent", str(k),
        "--cpus-per-trial", "1", "--seed", str(args.seed)])
    trials = read_trials(exp)
    if code != 0 or len(trials) != args.num_samples:
        raise SystemExit(f"study {name} failed: exit {code}, {len(trials)} of "
                         f"{args.num_samples} trials reported; see above")
    epochs = sum(len(t) for t in trials.values())
    ep_times = [row["epoch_time_s"] for t in trials.values() for row in t[1:]]
    span = trials_span(trials)
    log.append([k, i + 1, len(trials), epochs, wall, span, median(ep_times)])
    return {"run_call_s": wall, "trials_span_s": span}


def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()
    args = parse(argv)
    if args.quick:
        args.preset, args.num_samples, args.epochs = "tiny", 2, 1
    levels = levels_of(args.concurrency)
    repeats = check_repeats(args.repeats, args.quick)
    settings = {"preset": args.preset, "trials": args.num_samples, "epochs": args.epochs,
                "concurrency": levels, "seed": args.seed, "repeats": repeats,
                "num_cpus": args.num_cpus, "quick": args.quick}
    banner("parallel: N single-threaded trials, 1 vs 2 concurrent", settings)
    load = check_load(args.allow_load, args.quick)
    log: list[list] = []
    pairs = [("c1", "c2")] if {1, 2} <= set(levels) else []
    with LocalRay(num_cpus=args.num_cpus, keep=args.keep, prefix="tpbp") as r:
        print(r.started_line(), flush=True)
        r.warm_dataset(args.preset)
        if not args.quick:
            print(f"untimed warm-up study: {r.warm_up(args.preset):.1f} s", flush=True)
        arms = {f"c{k}": (lambda i, k=k: one_study(r, args, k, i, log)) for k in levels}
        runs = interleave(arms, repeats, pairs)

    print()
    print(table(["concurrent", "repeat", "trials", "epochs", "run wall s", "trials span s",
                 "median epoch_time_s"], log))
    figures = [figure(f"run call at {k} concurrent", runs.values(f"c{k}", "run_call_s"), unit="s")
               for k in levels]
    if pairs:
        figures[:0] = [
            figure("speedup 2 vs 1 concurrent (whole run call)",
                   runs.ratios("c1", "c2", "run_call_s"), target=TARGET),
            figure("speedup 2 vs 1 concurrent (trials span)",
                   runs.ratios("c1", "c2", "trials_span_s"), target=TARGET),
        ]
    publish(SCRIPT, MODULES, settings, figures, load_start=load, started=started,
            quick=args.quick, out_dir=result_dir(args.out_dir, args.quick))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
