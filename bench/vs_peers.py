"""Search efficiency against what a researcher would otherwise use, on one epoch budget.

Five arms, each given the same data (the preset's), the same ranges (the space as the preset
scales it: ``tune-ptycho spaces --show full --preset cpu``), the same budget of epochs summed
over trials, 2 trials at a time, 1 thread each, and the same sampler seeds:

1. ``tune-ptycho``: ``tune-ptycho run`` with its defaults: seeded TPE after the seed arms (the
   preset's own, then upstream's: the main job's 4, given as ``search/seed_arms=4`` since the
   default offers at most half of this arm's trials), ASHA and the collapse rule. It has no
   experiment-wide epoch budget, so it runs ``--tp-trials`` trials (default: budget / ASHA's
   grace + 2, enough to spend the budget, as arm 2 gets) and is read up to the budget, as every
   arm is (below).
2. ``ray-defaults``: Ray Tune's own search, built from the service's pieces (``make_trainable``,
   ``make_scheduler``, ``run_config``): ``BasicVariantGenerator`` (random search) and the same
   ASHA, ``collapse/stop=false`` (flags reported, no trial stopped for them). The space is
   define-by-run and conditional; it is written as a Tune ``param_space`` by
   ``_peer_arms.tune_param_space``: Tune's own domains for the unconditional ranges,
   ``tune.sample_from`` for the conditional ones (a path whose condition does not hold takes the
   study's base value, as one Optuna never suggests does).
3. ``optuna-alone``: no Ray. Two worker processes on one ``JournalFileBackend`` study, Optuna's
   default ``TPESampler`` (seeded per worker) and ``HyperbandPruner(min_resource=1,
   max_resource=epochs, reduction_factor=3)``, the same space's suggest calls, ``fit`` with
   ``trial.report`` every epoch and ``trial.should_prune()``. Its winner's best weights are
   scored with ``evaluate_test_image`` as the trainer's final eval does.
4. ``hand-run``: upstream's seed arms (``SEED_ARMS``, projected onto the space as the service
   projects them, in upstream's order; the preset's own arms are the service's, not upstream's),
   each run to the end: ``tune-ptycho run --no-asha --no-collapse-stop`` with them as
   ``search.points``, budget / epochs of them. Its trials are seeded training runs of fixed
   configurations, so it is run once and its spread over seeds is zero by construction.
5. ``random-full``: random search as in 2, no ASHA and no collapse stop: the floor.

Read-out, the same for every arm: every reported epoch in wall-clock order, cut after the
budget-th. A trial stands at the objective of its last epoch inside the budget (Optuna's and
``tune-ptycho best``'s ranking: the final val_loss, 1e3 for a diverged trial); the arm's best is
the lowest standing trial. "Reach" is the first epoch (counted over all the arm's trials, and in
seconds from the arm's start; Ray's own start is not counted) at which any trial's objective is
within 5% of the best value any arm found; a seed that never gets there counts as the budget.
Collapsed epochs: the epochs of trials flagged collapsed or diverged. amp SSIM: of the winner's
best weights on test image 0 (the final eval the trainer reports; for a trial that ended without
one, its newest checkpoint's best weights, scored the same way).

Defaults, sized for about 30 minutes on 2 cores (a cpu-preset epoch took 9-10 s on one thread on
2026-12-03): 8 epochs per trial (the main job's run 14; ``--epochs 14 --budget 56`` is the main
job's shape at about 2.5x the time), a budget of 32 epochs (4 trials run to the end), seeds
0,1,2. At 8 epochs the cpu preset's ASHA grace (10 of its 14 epochs) keeps its share: 6, as for
any ``tune-ptycho run --max-epochs 8`` (``--tp-args '--grace-period 2'`` gives the plain quarter
of the run it had before). ``--quick``: tiny preset, 2 epochs, budget 2, seed 0, no warm-up
study: a smoke of every arm's code path in seconds.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import time
from pathlib import Path
from typing import Any

import _common  # noqa: F401
from _common import LocalRay, banner, read_trials, table, verdict
from _peer_arms import epoch_budget, run_optuna_alone, tune_param_space

ARMS = ("tune-ptycho", "ray-defaults", "optuna-alone", "hand-run", "random-full")
PEERS = ARMS[1:]
WITHIN = 1.05  # "reached": within 5% of the best value any arm found


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="cpu")
    p.add_argument("--space", default="full")
    p.add_argument("--epochs", type=int, default=8, help="max epochs per trial (default 8; the "
                   "main job's trials run 14)")
    p.add_argument("--budget", type=int, default=32, help="epochs per arm and seed (default 32)")
    p.add_argument("--seeds", default="0,1,2", help="sampler seeds, comma-separated")
    p.add_argument("--arms", default=",".join(ARMS))
    p.add_argument("--tp-trials", type=int, default=None,
                   help="tune-ptycho's --num-samples (default: budget / ASHA's grace + 2)")
    p.add_argument("--tp-args", default="", help="more flags for the tune-ptycho arm's run, e.g. "
                   "'--grace-period 4' (one string, split on spaces)")
    p.add_argument("--max-concurrent", type=int, default=2)
    p.add_argument("--num-cpus", type=int, default=2)
    p.add_argument("--keep", action="store_true")
    p.add_argument("--quick", action="store_true", help="smoke run: tiny, 2 epochs, budget 2, "
                   "seed 0, no warm-up study")
    return p.parse_args(argv)


# ------------------------------------------------------------------ arms
def base_spec(args, seed: int, name: str, storage: Path, sets: dict | None = None):
    from tune_ptycho.spec import build_spec

    return build_spec(flags={
        "preset": args.preset, "search/space": args.space, "train/max_epochs": args.epochs,
        "search/seed": seed, "search/max_concurrent": args.max_concurrent,
        "resources/cpus_per_trial": 1.0, "storage/path": str(storage), "storage/name": name,
        "storage/log_to": []}, sets=sets)


def ray_events(exp: Path) -> tuple[list[dict], dict[str, Path]]:
    events, dirs = [], {}
    for tid, rows in read_trials(exp).items():
        dirs[tid] = exp / f"trial_{tid}"
        for row in rows:
            events.append({"ts": row["report_ts"], "trial": tid, "epoch": row["epoch"],
                           "objective": row["objective"], "collapsed": row.get("collapsed", 0),
                           "diverged": row.get("diverged", 0),
                           "ssim": row.get("best_ckpt_amp_ssim")})
    return events, dirs


def cli_arm(r: LocalRay, name: str, args, extra: list[str]) -> dict:
    t0 = time.time()
    code, wall, exp = r.run_cli(name, [
        "--preset", args.preset, "--space", args.space, "--max-epochs", str(args.epochs),
        "--max-concurrent", str(args.max_concurrent), "--cpus-per-trial", "1",
        "--log-to", "none", *extra])
    events, dirs = ray_events(exp)
    return {"exit": code, "t0": t0, "wall": wall, "events": events, "dirs": dirs}


def trials_for_budget(args, asha: bool) -> int:
    """Enough trials to spend the budget: with ASHA every trial runs at least to its first rung."""
    if not asha:
        return math.ceil(args.budget / args.epochs)
    spec = base_spec(args, 0, "sizing", Path("/nonexistent"))
    return math.ceil(args.budget / spec.grace_period) + 2


def tune_peer(r: LocalRay, name: str, args, seed: int, asha: bool) -> dict:
    """Arms 2 and 5: Tune's BasicVariantGenerator on the service's trainable and run config."""
    from ray import tune
    from ray.tune.schedulers import FIFOScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator
    from ray.tune.stopper import CombinedStopper

    from ptycho_model.config import flatten
    from tune_ptycho.run.trackers import logger_callbacks
    from tune_ptycho.run.tuner import make_scheduler, make_trainable, run_config
    from tune_ptycho.storage.dataset_cache import get_datasets, slim_for_trials

    spec = base_spec(args, seed, name, r.storage, sets={"collapse/stop": False})
    data = slim_for_trials(get_datasets(spec.run.data, r.cache, log=lambda _: None)[0])
    # the service's own result.json / progress.csv writers (it turns Tune's defaults off)
    rc = run_config(spec, name, str(r.storage),
                    logger_callbacks([], str(r.storage / name), name, ""))
    rc = dataclasses.replace(rc, stop=CombinedStopper(rc.stop, epoch_budget(args.budget)))
    n = trials_for_budget(args, asha)
    tuner = tune.Tuner(
        make_trainable(spec, data),
        param_space=tune_param_space(spec.space, flatten(spec.run.to_dict()), seed),
        tune_config=tune.TuneConfig(
            search_alg=BasicVariantGenerator(random_state=seed),
            scheduler=make_scheduler(spec) if asha else FIFOScheduler(), num_samples=n,
            max_concurrent_trials=args.max_concurrent,
            trial_dirname_creator=lambda t: f"trial_{t.trial_id}"),
        run_config=rc)
    t0 = time.time()
    code = 0
    try:
        tuner.fit()
    except Exception as e:  # noqa: BLE001 — reported in the table, never raised
        print(f"  {name}: {type(e).__name__}: {e}", flush=True)
        code = 1
    events, dirs = ray_events(r.storage / name)
    return {"exit": code, "t0": t0, "wall": time.time() - t0, "events": events, "dirs": dirs}


def optuna_arm(r: LocalRay, name: str, args, seed: int) -> dict:
    spec = base_spec(args, seed, name, r.storage)
    rows, t0, wall = run_optuna_alone(r.root, name, args.preset, args.epochs, spec.space, seed,
                                      args.budget, workers=args.max_concurrent)
    ssim = {x["trial"]: x["amp_ssim"] for x in rows if x["event"] == "end"}
    events = [{**x, "ssim": ssim.get(x["trial"])} for x in rows if x["event"] == "epoch"]
    return {"exit": 0, "t0": t0, "wall": wall, "events": events, "dirs": {}}


def hand_run_arm(r: LocalRay, args) -> tuple[dict, list[str]]:
    from search_spaces import project_arms

    spec = base_spec(args, 0, "hand-run-spec", r.storage)
    points = project_arms(spec.space, spec.run).points  # upstream's arms only, in their order
    k = max(1, math.ceil(args.budget / args.epochs))
    chosen = dict(list(points.items())[:k])
    spec_file = r.root / "hand-run.json"
    spec_file.write_text(json.dumps({"search": {"points": list(chosen.values())}}))
    res = cli_arm(r, "hand-run", args, ["--spec", str(spec_file), "--num-samples", str(len(chosen)),
                                        "--no-asha", "--no-collapse-stop"])
    return res, list(chosen)


# ------------------------------------------------------------------ read-out
def within_budget(events: list[dict], budget: int) -> list[dict]:
    return sorted(events, key=lambda e: e["ts"])[:budget]


def _num(x: Any) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return math.nan
    return v


def score(run: dict, budget: int) -> dict:
    ev = within_budget(run["events"], budget)
    last: dict[Any, dict] = {}
    bad: set = set()
    for e in ev:
        last[e["trial"]] = e
        if _num(e["collapsed"]) > 0 or _num(e["diverged"]) > 0:
            bad.add(e["trial"])
    standing = {t: _num(e["objective"]) for t, e in last.items()}
    winner = min(standing, key=lambda t: standing[t]) if standing else None
    return {"ev": ev, "spent": len(ev), "trials": len(last),
            "best": standing[winner] if winner is not None else math.nan, "winner": winner,
            "collapsed_epochs": sum(1 for e in ev if e["trial"] in bad),
            "collapsed_trials": len(bad)}


def reach(run: dict, s: dict, target: float, budget: int) -> tuple[float, float, bool]:
    for i, e in enumerate(s["ev"]):
        if _num(e["objective"]) <= target:
            return float(i + 1), e["ts"] - run["t0"], True
    end = s["ev"][-1]["ts"] - run["t0"] if s["ev"] else math.nan
    return float(budget), end, False


def winner_ssim(run: dict, s: dict, test) -> float:
    """The winner's best-weights amp SSIM: its reported final eval inside the budget, else its
    newest checkpoint's best weights scored the same way."""
    w = s["winner"]
    if w is None:
        return math.nan
    reported = [_num(e.get("ssim")) for e in s["ev"] if e["trial"] == w]
    reported = [x for x in reported if math.isfinite(x)]
    if reported:
        return reported[-1]
    d = run["dirs"].get(w)
    if d is None:  # an Optuna trial pruned or cut by the budget: fit gave back no weights
        ends = [_num(e.get("ssim")) for e in run["events"] if e["trial"] == w]
        return next((x for x in ends if math.isfinite(x)), math.nan)
    return checkpoint_ssim(d, test)


def checkpoint_ssim(trial_dir: Path, test) -> float:
    import torch

    from ptycho_model import names
    from ptycho_model.config import RunConfig
    from ptycho_model.evaluate import evaluate_test_image
    from ptycho_model.generators import build_generator
    from tune_ptycho.analysis.best import best_weights

    ckpts = sorted(trial_dir.glob(f"checkpoint_*/{names.STATE_FILE}"))
    if not ckpts:
        return math.nan
    state = torch.load(ckpts[-1], map_location="cpu", weights_only=True)
    cfg = RunConfig.from_dict(state["config"])
    model = build_generator(cfg.model, N=cfg.data.N)
    model.load_state_dict(best_weights(state))
    return float(evaluate_test_image(model, test)[0][names.AMP_SSIM])


def mean(xs: list[float]) -> float:
    xs = [x for x in xs if math.isfinite(x)]
    return statistics.fmean(xs) if xs else math.nan


def spread(xs: list[float]) -> str:
    xs = [x for x in xs if math.isfinite(x)]
    if len(xs) < 2:
        return "-"
    return f"sd {statistics.stdev(xs):.4f} ({min(xs):.4f}-{max(xs):.4f})"


# ------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    """Run the benchmark with ``argv`` (the command line's by default); 0 when it ran."""
    args = parse(argv)
    if args.quick:
        args.preset, args.epochs, args.budget, args.seeds = "tiny", 2, 2, "0"
    from ptycho_model.presets import preset_config

    args.epochs = args.epochs or preset_config(args.preset).train.max_epochs
    seeds = [int(s) for s in args.seeds.split(",")]
    arms = [a for a in args.arms.split(",") if a]
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        raise SystemExit(f"--arms: unknown {unknown}; choose from {', '.join(ARMS)}")
    tp_trials = args.tp_trials or trials_for_budget(args, asha=True)
    banner("search efficiency: tune-ptycho vs Ray Tune's defaults, Optuna alone, hand-run arms, "
           "random search", {"preset": args.preset, "space": args.space, "epochs": args.epochs,
                             "budget (epochs)": args.budget, "seeds": args.seeds,
                             "max concurrent": args.max_concurrent, "tune-ptycho trials":
                             tp_trials, "tune-ptycho flags": args.tp_args or "-",
                             "quick": args.quick})
    runs: dict[tuple[str, int], dict] = {}
    with LocalRay(num_cpus=args.num_cpus, keep=args.keep, prefix="tpbv") as r:
        print(r.started_line(), flush=True)
        r.warm_dataset(args.preset)
        if not args.quick:
            print(f"untimed warm-up study: {r.warm_up(args.preset):.1f} s", flush=True)
        from tune_ptycho.storage.dataset_cache import get_datasets

        test = get_datasets(preset_config(args.preset).data, r.cache, log=lambda _: None)[0].test
        if "hand-run" in arms:
            res, chosen = hand_run_arm(r, args)
            print(f"arm hand-run: {', '.join(chosen)}: {res['wall']:.0f} s", flush=True)
            for seed in seeds:
                runs["hand-run", seed] = res
        for seed in seeds:
            for arm in arms:
                if arm == "hand-run":
                    continue
                name = f"{arm}-{seed}"
                if arm == "tune-ptycho":
                    # the main job's 4 seed arms, as measured (the default: tp_trials // 2)
                    res = cli_arm(r, name, args, ["--seed", str(seed), "--num-samples",
                                                  str(tp_trials), "--set", "search/seed_arms=4",
                                                  *args.tp_args.split()])
                elif arm == "optuna-alone":
                    res = optuna_arm(r, name, args, seed)
                else:
                    res = tune_peer(r, name, args, seed, asha=arm == "ray-defaults")
                runs[arm, seed] = res
                print(f"arm {arm} seed {seed}: {res['wall']:.0f} s, {len(res['events'])} "
                      f"epochs reported, exit {res['exit']}", flush=True)
        scores = {k: score(v, args.budget) for k, v in runs.items()}
        for k, s in scores.items():
            s["ssim"] = winner_ssim(runs[k], s, test)
    report(args, arms, seeds, runs, scores)
    return 0


def report(args, arms, seeds, runs, scores) -> None:
    best_any = min((s["best"] for s in scores.values() if math.isfinite(s["best"])),
                   default=math.nan)
    target = best_any * WITHIN
    for k, s in scores.items():
        s["reach_epochs"], s["reach_wall"], s["reached"] = reach(runs[k], s, target, args.budget)
    print()
    print(f"best value any arm found: {best_any:.4f}; reached = objective <= {target:.4f}")
    print()
    print(table(["arm", "seed", "exit", "epochs", "trials", "best objective", "reach epochs",
                 "reach s", "collapsed trials", "collapsed epochs", "winner amp SSIM", "wall s"],
                [[a, sd, runs[a, sd]["exit"], s["spent"], s["trials"], s["best"],
                  f"{s['reach_epochs']:.0f}" + ("" if s["reached"] else " (not)"),
                  s["reach_wall"], s["collapsed_trials"], s["collapsed_epochs"], s["ssim"],
                  runs[a, sd]["wall"]]
                 for (a, sd), s in scores.items()]))
    agg: dict[str, dict] = {}
    for a in arms:
        ss = [scores[a, sd] for sd in seeds]
        agg[a] = {"best": mean([s["best"] for s in ss]),
                  "spread": spread([s["best"] for s in ss]),
                  "reach_epochs": mean([s["reach_epochs"] for s in ss]),
                  "reached": sum(s["reached"] for s in ss),
                  "reach_wall": mean([s["reach_wall"] for s in ss]),
                  "spent": mean([s["spent"] for s in ss]),
                  "collapsed": mean([s["collapsed_epochs"] for s in ss]),
                  "ssim": mean([s["ssim"] for s in ss])}
    print()
    print(table(["arm", "best objective (mean)", "spread over seeds", "epochs to reach (mean)",
                 "seeds reached", "s to reach (mean)", "epochs spent", "collapsed epochs",
                 "winner amp SSIM"],
                [[a, v["best"], v["spread"], v["reach_epochs"], f"{v['reached']}/{len(seeds)}",
                  v["reach_wall"], v["spent"], v["collapsed"], v["ssim"]]
                 for a, v in agg.items()]))
    peers = [a for a in PEERS if a in agg]
    if "tune-ptycho" not in agg or not peers:
        return
    tp = agg["tune-ptycho"]
    print()
    both = True
    for label, group in (("best peer", peers),
                         ("best search peer", [a for a in peers if a != "hand-run"])):
        if not group:
            continue
        by_obj = min(group, key=lambda a: agg[a]["best"])
        by_ep = min(group, key=lambda a: agg[a]["reach_epochs"])
        obj = tp["best"] / agg[by_obj]["best"]
        ep = tp["reach_epochs"] / agg[by_ep]["reach_epochs"]
        wall = tp["reach_wall"] / min(agg[a]["reach_wall"] for a in group)
        print(f"{label} ({', '.join(group)}): by objective {by_obj}, by epochs to reach {by_ep}")
        verdict(f"{label}: best objective tune-ptycho / {by_obj}", obj, "<= 1.02", obj <= 1.02)
        verdict(f"{label}: epochs to within 5% tune-ptycho / {by_ep}", ep, "<= 0.50",
                ep <= 0.50)
        verdict(f"{label}: seconds to within 5% tune-ptycho / fastest", wall, "reported", None)
        ok = obj <= 1.02 and ep <= 0.50
        verdict(f"{label}: both together", max(obj / 1.02, ep / 0.50),
                "<= 1 (objective within 2% AND at most half the epochs)", ok)
        both = both and ok
    print(f"RESULT target met against every peer: {'yes' if both else 'no'}")


if __name__ == "__main__":
    raise SystemExit(main())
