"""Trainable overhead: per-epoch time of one trial inside Ray Tune against ``fit`` called directly.

Issue: "Trainable overhead: per-epoch time of a trial inside Ray Tune against fit called directly
on the same config and data (target: within 10%)."

1. One trial through ``tune-ptycho run`` (space ``seeds``, one sample, no ASHA, 1 CPU = 1 torch
   thread) on an embedded Ray started beforehand, after an untimed warm-up study. Per epoch it
   reports ``epoch_time_s`` (the trainer's own clock) and ``report_ts`` (after the checkpoint is
   written and just before ``tune.report``): the deltas of ``report_ts`` are the wall time per
   epoch *with* checkpointing and reporting.
2. ``fit`` on the very config the trial ran (read back from its ``params.json``) and the same
   dataset, in this process with ``torch.set_num_threads(1)``; wall per epoch from the
   ``on_epoch`` timestamps.

Medians skip epoch 1 (warm-up) and epochs that ran the reconstruction eval (eval_every, the last),
so both sides compare plain train+val epochs. Ratio = Ray wall per epoch / fit wall per epoch.

The two arms run interleaved, ``--repeats`` times each (default 5: ray fit ray fit ...), and the
ratio is taken per repeat pair; its min / median / max go to ``docs/bench/results/overhead.json``
with a verdict from the spread. Refused on a loaded machine unless ``--allow-load``.

    python bench/overhead.py                 # cpu preset, 8 epochs, 5 repeats per arm
    python bench/overhead.py --quick         # smoke: tiny, 3 epochs, 1 repeat, JSON to a temp dir
"""

from __future__ import annotations

import argparse
import itertools
import json
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
)
from _results import Target, figure, publish

SCRIPT = "bench/overhead.py"
MODULES = ["ptycho_model", "trainables", "tune_ptycho/run"]  # the trial's code and fit's
TARGET = Target("<=", 1.10)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="cpu")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--order", default="ray,fit", choices=["ray,fit", "fit,ray"],
                   help="which arm runs first in each repeat pair (default ray,fit)")
    p.add_argument("--num-cpus", type=int, default=2, help="CPUs of the embedded Ray")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (experiment, logs)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: tiny preset, 3 epochs, 1 repeat, no warm-up study")
    add_timing_args(p)
    return p.parse_args(argv)


def plain(rows: list[dict], key: str) -> list[float]:
    """``key`` over the epochs > 1 that ran no reconstruction eval."""
    from ptycho_model import names

    return [r[key] for r in rows if r[names.EPOCH] > 1 and names.AMP_SSIM not in r
            and names.BEST_CKPT_PREFIX + names.AMP_SSIM not in r and r.get(key) is not None]


def with_deltas(rows: list[dict], ts_key: str, out_key: str) -> list[dict]:
    """Add ``out_key`` = ts(epoch) - ts(epoch - 1) to every row but the first."""
    out = []
    for prev, r in itertools.pairwise(rows):
        out.append({**r, out_key: r[ts_key] - prev[ts_key]})
    return [rows[0], *out] if rows else []


def per_epoch(rows: list[dict], what: str) -> Measure:
    """Median wall and ``epoch_time_s`` over the plain epochs of one run (with ``wall_s``)."""
    walls, clocks = plain(rows, "wall_s"), plain(rows, "epoch_time_s")
    if not walls or not clocks:
        raise SystemExit(f"{what}: no plain epoch (epoch > 1 without an eval) among "
                         f"{len(rows)} epochs; give --epochs of at least 3")
    return {"wall_per_epoch_s": median(walls), "epoch_time_s": median(clocks)}


def run_ray(r: LocalRay, preset: str, epochs: int, name: str) -> tuple[list[dict], dict, float]:
    code, wall, exp = r.run_cli(name, [
        "--preset", preset, "--space", "seeds", "--num-samples", "1", "--max-epochs", str(epochs),
        "--no-asha", "--max-concurrent", "1", "--cpus-per-trial", "1"])
    trials = read_trials(exp)
    if code != 0 or not trials:
        raise SystemExit(f"the Ray run {name} failed (exit {code}); see above")
    (tid, rows), = trials.items()
    params = json.loads((exp / f"trial_{tid}" / "params.json").read_text())
    return rows, params, wall


def run_fit(preset: str, epochs: int, params: dict, cache) -> list[dict]:
    import torch

    from ptycho_model.config import flatten
    from ptycho_model.presets import preset_config
    from ptycho_model.train import fit
    from tune_ptycho.storage.dataset_cache import get_datasets

    torch.set_num_threads(1)
    cfg = preset_config(preset, {"train/max_epochs": epochs, "collapse/stop": False,
                                 **flatten(params)})  # every epoch, past a flag too
    data, _, _ = get_datasets(cfg.data, cache, log=lambda s: None)
    stamps: list[dict] = []
    fit(cfg, data, on_epoch=lambda m: stamps.append({**m, "ts": time.time()}))
    return stamps


class Arms:
    """One repeat of each arm; keeps the newest rows of both for the per-epoch table."""

    def __init__(self, r: LocalRay, preset: str, epochs: int):
        self.r, self.preset, self.epochs = r, preset, epochs
        self.params: dict | None = None
        self.ray_rows: list[dict] = []
        self.fit_rows: list[dict] = []
        self.ray_call_s = float("nan")

    def ray(self, i: int) -> Measure:
        rows, self.params, self.ray_call_s = run_ray(self.r, self.preset, self.epochs,
                                                     f"overhead-{i}")
        self.ray_rows = with_deltas(rows, "report_ts", "wall_s")
        return per_epoch(self.ray_rows, "the Ray Tune trial")

    def fit(self, i: int) -> Measure:
        if self.params is None:
            print("note: fit runs before the first trial, with the preset's seed (same shapes)")
        rows = run_fit(self.preset, self.epochs, self.params or {}, self.r.cache)
        self.fit_rows = with_deltas(rows, "ts", "wall_s")
        return per_epoch(self.fit_rows, "fit")


def epoch_table(fit_rows: list[dict], ray_rows: list[dict]) -> str:
    rows = []
    for a, b in zip(fit_rows, ray_rows, strict=False):
        rows.append([a["epoch"], a["epoch_time_s"], a.get("wall_s"), b["epoch_time_s"],
                     b.get("wall_s"), "eval" if "amp_ssim" in b or "best_ckpt_amp_ssim" in b
                     else ""])
    return table(["epoch", "fit epoch_time_s", "fit wall", "ray epoch_time_s", "ray wall", ""],
                 rows)


def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()
    args = parse(argv)
    import torch

    torch.set_num_threads(1)  # the direct fit's threads, as a trial's (cpus_per_trial=1)
    if args.quick:
        args.preset, args.epochs = "tiny", 3
    repeats = check_repeats(args.repeats, args.quick)
    settings = {"preset": args.preset, "epochs": args.epochs, "order": args.order,
                "repeats": repeats, "num_cpus": args.num_cpus, "quick": args.quick}
    banner("overhead: one trial inside Ray Tune vs fit directly (1 thread each)", settings)
    load = check_load(args.allow_load, args.quick)
    with LocalRay(num_cpus=args.num_cpus, keep=args.keep, prefix="tpbo") as r:
        print(r.started_line(), flush=True)
        r.warm_dataset(args.preset)
        if not args.quick:
            print(f"untimed warm-up study: {r.warm_up(args.preset):.1f} s", flush=True)
        arms = Arms(r, args.preset, args.epochs)
        order = args.order.split(",")
        runs = interleave({a: getattr(arms, a) for a in order}, repeats, [("ray", "fit")])

    print()
    print(f"trial config: {arms.params}; per epoch of the last repeat pair (s):")
    print(epoch_table(arms.fit_rows, arms.ray_rows))
    print(f"\nwhole `tune-ptycho run` call of the last repeat (Ray already up): "
          f"{arms.ray_call_s:.1f} s for {len(arms.ray_rows)} epochs")
    figures = [
        figure("Ray wall per epoch / fit wall per epoch",
               runs.ratios("ray", "fit", "wall_per_epoch_s"), target=TARGET),
        figure("Ray epoch_time_s / fit epoch_time_s",
               runs.ratios("ray", "fit", "epoch_time_s"), target=TARGET),
        figure("fit wall per epoch", runs.values("fit", "wall_per_epoch_s"), unit="s"),
        figure("Ray Tune trial wall per epoch", runs.values("ray", "wall_per_epoch_s"), unit="s"),
    ]
    publish(SCRIPT, MODULES, settings, figures, load_start=load, started=started,
            quick=args.quick, out_dir=result_dir(args.out_dir, args.quick))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
