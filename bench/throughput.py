"""Simulation and training throughput at the tiny, cpu and stage_a shapes — no Ray.

Issue: "Simulation and training throughput at tiny, cpu and stage_a shapes (CPU here; on a GPU when
one is at hand — through fit, since that machine has no Ray — stage_a samples/s and s/epoch against
upstream's ~35 s/epoch on an RTX 3090, with bf16 autocast (physics kept in fp32) and channels_last
tried)."

* Simulation: ``simulate(cfg.data)`` of each preset, patches/s over train + val + test.
* Training: the real ``Trainer._train_epoch`` (forward, PINN loss, backward, clipping, optimizer
  step) on a train split cut to a few batches, after one untimed warm-up batch: samples/s. The
  validation pass (``Trainer._validate``, forward only, batch 64) is timed the same way.
* tiny and cpu: also whole epochs through ``fit`` (train + val + scheduled eval), median s/epoch.
* stage_a: s/epoch is *extrapolated*: n_train / train samples/s + n_val / val samples/s, and
  compared with upstream's ~35 s/epoch (RTX 3090). On CUDA, fp32 / bf16 autocast / channels_last
  / both are tried (``train/precision``, ``train/channels_last``); on a CPU autocast is off by
  design, so only fp32 runs.

Run ``python bench/throughput.py`` (all presets), ``--presets stage_a`` on a GPU machine,
``--quick`` for a smoke run. This script never imports Ray.
"""

from __future__ import annotations

import argparse
import gc
import math
import time

import _common  # noqa: F401  (puts the repo on sys.path)
from _common import banner, median, table, verdict

UPSTREAM_S_PER_EPOCH = 35.0  # upstream Stage A, RTX 3090 (docs/calibration.md, "Cost")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--presets", default="tiny,cpu,stage_a",
                   help="comma-separated presets (default: tiny,cpu,stage_a)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: what one trial gets)")
    p.add_argument("--batches", type=int, default=20,
                   help="timed train batches for tiny/cpu (default 20)")
    p.add_argument("--stage-a-batches", type=int, default=None,
                   help="timed train batches at stage_a (default 5 on CPU, 100 on CUDA)")
    p.add_argument("--epochs", type=int, default=5,
                   help="whole epochs through fit for tiny/cpu (default 5; 0: skip)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--quick", action="store_true",
                   help="smoke run: tiny,cpu + stage_a with 1 timed batch, 2 fit epochs")
    return p.parse_args(argv)


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def time_simulation(name: str):
    from ptycho_model.data import simulate
    from ptycho_model.presets import preset_config

    cfg = preset_config(name)
    t0 = time.perf_counter()
    data = simulate(cfg.data)
    dt = time.perf_counter() - t0
    n_val = 0 if data.val_is_test else data.val.n
    patches = data.train.n + n_val + data.test.n
    return cfg, data, dt, patches, n_val


def time_steps(cfg, data, device, batches: int) -> tuple[float, float, int]:
    """(train samples/s, val samples/s, parameters) over ``batches`` train batches and
    ``max(1, batches // 4)`` val batches of the real Trainer code, after a warm-up batch."""
    import torch

    from ptycho_model.train import Trainer

    tr = Trainer(cfg, data, device=device)
    bs = cfg.train.batch_size
    vbs = max(bs, 64)
    x_train, x_val = tr.x_train, tr.x_val
    n_params = sum(p.numel() for p in tr.model.parameters())
    # warm-up (allocator, cuDNN / cuFFT plans): one train batch and one val batch, untimed
    tr.x_train = x_train[:bs]
    tr._train_epoch(1)
    tr.x_val = x_val[:vbs]
    tr._validate()
    sync(device)

    n = min(batches * bs, x_train.shape[0])
    tr.x_train = x_train[:n]
    sync(device)
    t0 = time.perf_counter()
    loss, _, _ = tr._train_epoch(2)
    sync(device)
    train_sps = n / (time.perf_counter() - t0)
    if not math.isfinite(loss):
        print(f"  warning: non-finite train loss at {cfg.train.precision}")

    nv = min(max(1, batches // 4) * vbs, x_val.shape[0])
    tr.x_val = x_val[:nv]
    t0 = time.perf_counter()
    with torch.no_grad():
        tr._validate()
    sync(device)
    val_sps = nv / (time.perf_counter() - t0)
    del tr
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return train_sps, val_sps, n_params


def fit_epochs(cfg, data, device, epochs: int) -> tuple[float, float]:
    """(median s/epoch of plain epochs, median s of epochs that also ran the reconstruction eval)
    through ``fit``. Plain epochs are train + val; the first epoch is dropped when others remain."""
    from ptycho_model import names
    from ptycho_model.train import fit

    cfg = cfg.with_updates({"train/max_epochs": epochs, "collapse/stop": False})  # all epochs
    res = fit(cfg, data, device=device)
    plain = [m[names.EPOCH_TIME_S] for m in res.history if names.AMP_SSIM not in m
             and names.BEST_CKPT_PREFIX + names.AMP_SSIM not in m]
    evals = [m[names.EPOCH_TIME_S] for m in res.history if names.AMP_SSIM in m
             or names.BEST_CKPT_PREFIX + names.AMP_SSIM in m]
    return median(plain[1:] if len(plain) > 1 else plain), median(evals)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark with ``argv`` (the command line's by default); 0 when it ran."""
    args = parse(argv)
    import torch

    from ptycho_model.device import resolve_device

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    presets = [p.strip() for p in args.presets.split(",") if p.strip()]
    if args.quick:
        args.batches, args.epochs = 3, 2
        args.stage_a_batches = args.stage_a_batches or 1
    sa_batches = args.stage_a_batches or (100 if device.type == "cuda" else 5)
    banner("throughput: simulation and training (no Ray)",
           {"presets": ",".join(presets), "threads": args.threads, "device": device.type,
            "batches": args.batches, "stage_a batches": sa_batches, "fit epochs": args.epochs,
            "quick": args.quick})

    variants = [("fp32", False)]
    if device.type == "cuda":
        variants += [("bf16", False), ("fp32", True), ("bf16", True)]

    sim_rows, train_rows, epoch_rows, sa_rows = [], [], [], []
    for name in presets:
        print(f"[{name}] simulating ...", flush=True)
        cfg, data, dt, patches, n_val = time_simulation(name)
        sim_rows.append([name, data.train.n, n_val, data.test.n, patches, dt, patches / dt])
        cfg = cfg.with_updates({"train/device": device.type})
        batches = sa_batches if name.startswith("stage_a") else args.batches
        for precision, cl in variants:
            label = precision + (" +channels_last" if cl else "")
            print(f"[{name}] {label}: {batches} train batches ...", flush=True)
            vcfg = cfg.with_updates({"train/precision": precision, "train/channels_last": cl})
            try:
                tsps, vsps, n_params = time_steps(vcfg, data, device, batches)
            except Exception as e:  # noqa: BLE001 — one failing variant must not end the run
                print(f"[{name}] {label} FAILED: {type(e).__name__}: {e}", flush=True)
                train_rows.append([name, label, "-", cfg.train.batch_size, batches,
                                   f"failed: {type(e).__name__}", ""])
                gc.collect()
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                continue
            train_rows.append([name, label, f"{n_params:,}", cfg.train.batch_size, batches,
                               tsps, vsps])
            if name.startswith("stage_a"):
                train_s = data.train.n / tsps
                val_s = (n_val or data.test.n) / vsps
                sa_rows.append([name, label, tsps, train_s, train_s + val_s,
                                (train_s + val_s) / UPSTREAM_S_PER_EPOCH])
            elif args.epochs and (precision, cl) == variants[0]:
                print(f"[{name}] {args.epochs} epochs through fit ...", flush=True)
                plain, with_eval = fit_epochs(vcfg, data, device, args.epochs)
                epoch_rows.append([name, data.train.n, n_val or data.test.n, args.epochs, plain,
                                   with_eval])
        del data
        gc.collect()

    print()
    print("Simulation (simulate(cfg.data), vectorised numpy/torch on CPU)")
    print(table(["preset", "train", "val", "test", "patches", "seconds", "patches/s"], sim_rows))
    print()
    print(f"Training steps on {device_line_short(device)} ({args.threads} thread(s)); "
          "train = forward+backward+clip+step, val = forward only (batch 64)")
    print(table(["preset", "variant", "params", "batch", "batches", "train samples/s",
                 "val samples/s"], train_rows))
    if epoch_rows:
        print()
        print("Whole epochs through fit, median seconds: plain = train + val (first epoch dropped "
              "when others remain), eval = an epoch that also scored the test image (the last one "
              "scores two models)")
        print(table(["preset", "train patches", "val patches", "epochs", "plain s/epoch",
                     "eval epoch s"], epoch_rows))
    if sa_rows:
        print()
        print(f"stage_a s/epoch, EXTRAPOLATED from {sa_batches} timed batch(es): "
              "n_train / train samples/s (+ n_val / val samples/s); "
              "upstream ~35 s/epoch (RTX 3090)")
        print(table(["preset", "variant", "train samples/s", "train s/epoch (extrap.)",
                     "train+val s/epoch (extrap.)", "ratio vs 35 s"], sa_rows))
        best = min(sa_rows, key=lambda r: r[4])
        print()
        verdict(f"stage_a s/epoch / upstream 35 s ({best[1]}, {device.type}, extrapolated)",
                best[5], "<= 1.0 on a GPU; a CPU is not expected to meet it",
                best[5] <= 1.0 if device.type == "cuda" else None)
    return 0


def device_line_short(device) -> str:
    import torch

    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name()})"
    return "cpu"


if __name__ == "__main__":
    raise SystemExit(main())
