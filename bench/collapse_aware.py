"""Does telling TPE which trials collapsed (``search/collapse_aware``) help the search?

For each searcher seed, the same study (cpu preset, the full space with its range past the cliff,
ASHA, no seed arms, a fixed number of trials) runs twice: with collapsed and diverged trials
reaching Optuna as infeasible (``constraints_func``), and without. Printed per arm: the share of
trials in the second half of the study (by study trial number, where TPE has left its random
start) that collapsed or diverged, and the best objective.

    python bench/collapse_aware.py                     # 3 searcher seeds x 2 arms x 12 trials
    python bench/collapse_aware.py --seeds 0 --trials 8
    python bench/collapse_aware.py --quick   # smoke: tiny, seed 0, 2 trials x 2 epochs per arm
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time

import _common


def study_figures(path: str) -> tuple[int, int, float]:
    """(crashed in the second half, trials in the second half, best objective)."""
    from tune_ptycho.outcomes import COLLAPSED, DIVERGED
    from tune_ptycho.storage.experiment import ExperimentInfo
    from tune_ptycho.storage.study import load_study

    info = ExperimentInfo.load(path)
    study = load_study(info.study_url, info.name)
    trials = sorted(study.trials, key=lambda t: t.number)
    half = trials[len(trials) // 2:]
    bad = {"collapsed_" + k for k in ("ratio", "flat", "amp_flat")} | {DIVERGED}
    assert bad >= set(COLLAPSED)
    crashed = sum(1 for t in half if t.user_attrs.get("outcome") in bad)
    values = [t.value for t in trials if t.value is not None]
    return crashed, len(half), min(values) if values else float("nan")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--startup", type=int, default=4)
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--max-epochs", type=int, default=None,
                    help="train/max_epochs of every trial (default: the preset's)")
    ap.add_argument("--max-concurrent", type=int, default=None,
                    help="trials at a time (default: tune-ptycho run's)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: tiny preset, seed 0, 2 trials (1 startup) x 2 epochs per "
                         "arm, one at a time")
    args = ap.parse_args(argv)
    if args.quick:
        args.preset, args.seeds, args.trials, args.startup, args.max_epochs = "tiny", "0", 2, 1, 2
        args.max_concurrent = 1
    return args


def main(argv: list[str] | None = None) -> int:
    """Run both arms for every searcher seed and print the table; 0 when it ran."""
    args = parse(argv)
    _common.set_ray_env()
    _common.banner("collapse-aware sampler", vars(args))
    from tune_ptycho.cli import main as cli

    root = tempfile.mkdtemp(prefix="tp-aware-")
    t_all = time.perf_counter()
    results: dict[bool, list[tuple[int, int, float]]] = {False: [], True: []}
    codes = []
    for seed in (int(s) for s in args.seeds.split(",")):
        for aware in (False, True):  # alternated, so drift in the host hits both alike
            name = f"s{seed}_{'aware' if aware else 'plain'}"
            t0 = time.perf_counter()
            extra = ["--max-epochs", str(args.max_epochs)] if args.max_epochs else []
            if args.max_concurrent:
                extra += ["--max-concurrent", str(args.max_concurrent)]
            code = cli(["run", "--preset", args.preset, "--space", "full", *extra,
                        "--num-samples", str(args.trials), "--seed", str(seed),
                        "--storage", root, "--name", name,
                        "--no-dashboard", "--no-progress", "--set", "search/seed_points=false",
                        "--set", f"search/n_startup_trials={args.startup}",
                        "--set", f"search/collapse_aware={str(aware).lower()}"])
            codes.append(code)
            fig = study_figures(f"{root}/{name}")
            results[aware].append(fig)
            print(f"seed {seed} {'aware' if aware else 'plain':5s}: exit {code}, second half "
                  f"{fig[0]}/{fig[1]} crashed, best objective {fig[2]:.4f}, "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)
    from tune_ptycho.analysis.crash_hunt import wilson

    print()
    rows, cis = [], {}
    for a, rs in results.items():
        k, n = sum(r[0] for r in rs), sum(r[1] for r in rs)
        cis[a] = wilson(k, n)
        rows.append([("collapse_aware" if a else "plain"), f"{k}/{n}",
                     f"{k / max(1, n):.0%} [{cis[a][0]:.0%}, {cis[a][1]:.0%}]",
                     " ".join(f"{r[2]:.4f}" for r in rs),
                     f"{statistics.median(r[2] for r in rs):.4f}"])
    print(_common.table(["arm", "crashed in 2nd half (all seeds)", "share [Wilson 95%]",
                         "best objective per seed", "median best"], rows))
    overlap = cis[True][0] <= cis[False][1] and cis[False][0] <= cis[True][1]
    verdict = "not decided (the intervals overlap)" if overlap else "the intervals do not overlap"
    print(f"collapse share, aware against plain: {verdict}")
    print(f"took {(time.perf_counter() - t_all) / 60:.1f} min")
    if args.quick:
        shutil.rmtree(root, ignore_errors=True)
    return max(codes, default=0)


if __name__ == "__main__":
    raise SystemExit(main())
