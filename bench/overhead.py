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
"""

from __future__ import annotations

import argparse
import itertools
import json
import time

import _common  # noqa: F401
from _common import LocalRay, banner, median, read_trials, table, verdict


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="cpu")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--order", default="ray,fit", help="ray,fit or fit,ray (which runs first)")
    p.add_argument("--num-cpus", type=int, default=2, help="CPUs of the embedded Ray")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (experiment, logs)")
    p.add_argument("--quick", action="store_true", help="smoke run: tiny preset, 4 epochs")
    return p.parse_args()


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


def run_ray(r: LocalRay, preset: str, epochs: int) -> tuple[list[dict], dict, float]:
    code, wall, exp = r.run_cli("overhead", [
        "--preset", preset, "--space", "seeds", "--num-samples", "1", "--max-epochs", str(epochs),
        "--no-asha", "--max-concurrent", "1", "--cpus-per-trial", "1"])
    trials = read_trials(exp)
    if code != 0 or not trials:
        raise SystemExit(f"the Ray run failed (exit {code}); see above")
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


def main() -> None:
    args = parse()
    import torch

    torch.set_num_threads(1)  # the direct fit's threads, as a trial's (cpus_per_trial=1)
    if args.quick:
        args.preset, args.epochs = "tiny", 4
    banner("overhead: one trial inside Ray Tune vs fit directly (1 thread each)",
           {"preset": args.preset, "epochs": args.epochs, "order": args.order,
            "quick": args.quick})
    with LocalRay(num_cpus=args.num_cpus, keep=args.keep, prefix="tpbo") as r:
        print(f"Ray started in {r.start_s:.1f} s (not counted)", flush=True)
        r.warm_dataset(args.preset)
        print(f"untimed warm-up study: {r.warm_up(args.preset):.1f} s", flush=True)
        ray_rows, fit_rows, params, ray_wall = [], [], None, float("nan")
        for what in args.order.split(","):
            if what == "ray":
                print("running the trial in Ray Tune ...", flush=True)
                ray_rows, params, ray_wall = run_ray(r, args.preset, args.epochs)
            elif what == "fit":
                if params is None:
                    print("note: fit runs before the trial, with the preset's seed (same shapes)")
                print("running fit directly ...", flush=True)
                fit_rows = run_fit(args.preset, args.epochs, params or {}, r.cache)

    ray_rows = with_deltas(ray_rows, "report_ts", "wall_s")
    fit_rows = with_deltas(fit_rows, "ts", "wall_s")
    ray_epoch = median(plain(ray_rows, "epoch_time_s"))
    fit_epoch = median(plain(fit_rows, "epoch_time_s"))
    ray_wall_ep = median(plain(ray_rows, "wall_s"))
    fit_wall_ep = median(plain(fit_rows, "wall_s"))
    n = len(plain(ray_rows, "wall_s"))

    print()
    print(f"trial config: {params}; {n} plain epochs in the medians")
    print(table(["", "median epoch_time_s", "median wall per epoch", "epochs"], [
        ["fit (direct)", fit_epoch, fit_wall_ep, len(fit_rows)],
        ["Ray Tune trial", ray_epoch, ray_wall_ep, len(ray_rows)],
        ["ratio Ray / fit", ray_epoch / fit_epoch, ray_wall_ep / fit_wall_ep, ""],
    ]))
    print()
    print("per epoch (s):")
    rows = []
    for a, b in zip(fit_rows, ray_rows, strict=False):
        rows.append([a["epoch"], a["epoch_time_s"], a.get("wall_s"), b["epoch_time_s"],
                     b.get("wall_s"), "eval" if "amp_ssim" in b or "best_ckpt_amp_ssim" in b
                     else ""])
    print(table(["epoch", "fit epoch_time_s", "fit wall", "ray epoch_time_s", "ray wall", ""],
                rows))
    print(f"\nwhole `tune-ptycho run` call (Ray already up): {ray_wall:.1f} s for "
          f"{len(ray_rows)} epochs")
    ratio = ray_wall_ep / fit_wall_ep
    verdict("Ray wall per epoch / fit wall per epoch", ratio, "<= 1.10", ratio <= 1.10)
    verdict("Ray epoch_time_s / fit epoch_time_s", ray_epoch / fit_epoch, "<= 1.10",
            ray_epoch / fit_epoch <= 1.10)


if __name__ == "__main__":
    main()
