"""stage_a on one GPU in one command: s/epoch per precision, 4 trials packed, the upstream arms.

Written for one H100/H200 with torch only (no Ray, Optuna or PyYAML; matplotlib optional) and
about 5 minutes of it; ``--deadline-s`` (default 290) bounds the whole run and every stage keeps
to its share of it. Three stages, on the ``stage_a`` preset (``--quick``: ``tiny``, on any device):

1. **Throughput.** The real ``Trainer._train_epoch`` (forward, fp32 physics, PINN loss, backward,
   clipping, optimizer step) on ``--batches`` train batches after an untimed warm-up batch, and
   the validation pass, in fp32, bf16 autocast (``train/precision=bf16``: the generator only,
   physics and loss stay fp32), fp32 + ``train/channels_last`` and bf16 + channels_last; CUDA is
   synchronised around every timing. s/epoch is **extrapolated**: n_train / train samples/s +
   n_val / val samples/s, against upstream's ~35 s/epoch on an RTX 3090 (docs/physics.md §7.3).
   On a CPU autocast is off by design, so only fp32 runs.
2. **Packing.** ``--pack`` (4) trials side by side on the one GPU, each its own process (this
   script's ``worker`` sub-command), as Ray packs trials at ``--gpus-per-trial 0.25``: Ray only
   sets ``CUDA_VISIBLE_DEVICES`` to the same device for each, with no memory or compute split, so
   plain processes on one device are the same thing. All start training together (a file barrier)
   and train for ``--pack-window-s``; aggregate samples/s (all samples over the common span)
   against the same worker alone.
3. **Arms.** Upstream's Stage A arms of ``hybrid`` (``stage_a_control``: norm clip 1.0) and of
   ``stable_hybrid`` with LayerScale (``stage_a_stable_layerscale``: no clip), both Adam 1e-3,
   constant LR (their settings from ``ptycho_model/upstream_arms.py``, which needs no Optuna),
   through ``ptycho_model.train.fit``, the two side by side on the GPU, each for as many epochs
   as ``--arm-budget-s`` holds. Per-epoch curves (val_loss, train_loss,
   output_std, collapse_ratio and flags, grad norms, the per-block spread and grad ratio, amp SSIM
   at eval epochs) go to the results JSON and ``curves.png``: does upstream's learn-then-collapse
   (stable_hybrid LayerScale: best val_loss 0.0237 at epoch ~4, final 0.179; docs/physics.md
   §7.2) reproduce at full size with corrected physics? When an epoch is too long for the budget
   to hold ``--arm-min-epochs`` epochs, the arms train on a seeded random subset of the train
   patches (``--arm-train-fraction``, default auto) and the curves' x axis counts epochs of the
   full train set; the run says so. ``--arm-preset stage_a_upstream`` runs upstream's quirks.

Everything goes to ``--out`` (default ``$OUT`` if set, else a new temp dir, printed at the end):
``results.json`` (every figure), ``curves.png``, ``history_<arm>.json`` (fit's full per-epoch
rows, the per-block tables included), ``output.txt`` (what was printed) and the workers' logs.
Run ``python bench/gpu_stage_a.py``; ``--quick`` is the same code at toy size in seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common  # noqa: F401  (puts the repo on sys.path)
from _common import banner, table, verdict
from _gpu_workers import free, run_workers, sync, time_train, warm_up, worker_main, write_json

from ptycho_model.upstream_arms import SEED_ARMS

UPSTREAM_S_PER_EPOCH = 35.0  # upstream Stage A, RTX 3090 (docs/physics.md §7.3)
# docs/physics.md §7.1-7.2: upstream's Stage A arms (quirks A-D active, 50 epochs)
UPSTREAM_ARMS = {
    "stage_a_control": {"best_val_loss": 0.0138, "amp_ssim": 0.925},
    "stage_a_stable_layerscale": {"best_val_loss": 0.0237, "best_epoch": 4,
                                  "final_val_loss": 0.179, "amp_ssim_final": 0.277},
}
# upstream's arms of those names (ptycho_model.upstream_arms: plain data, no Optuna)
ARMS: dict[str, dict[str, Any]] = {name: dict(SEED_ARMS[name]) for name in UPSTREAM_ARMS}
VARIANTS = [("fp32", False), ("bf16", False), ("fp32", True), ("bf16", True)]
# Where each stage must end, as a fraction of --deadline-s; a stage that ends early leaves its
# time to the next. The rest (5%) is for writing the results.
STAGE_ENDS = {"throughput": 0.22, "pack": 0.47, "arms": 0.95}
CURVE_KEYS = ("epoch", "train_loss", "val_loss", "best_val_loss", "output_std", "collapse_ratio",
              "collapsed", "collapse_kind", "grad_norm", "grad_norm_max", "min_block_rel_std",
              "max_block_grad_ratio", "lr", "epoch_time_s", "amp_ssim", "amp_ssim_constant")


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="worker: the sub-command this script runs itself "
                                       "(`gpu_stage_a.py worker SPEC.json`); not for users.")
    p.add_argument("--out", default=None,
                   help="output directory (default: $OUT if set, else a new temp dir)")
    p.add_argument("--deadline-s", type=float, default=None,
                   help="wall-clock bound of the whole run (default 290; --quick 120, a bound "
                        "for a loaded machine: a quiet one needs ~20 s)")
    p.add_argument("--preset", default=None, help="throughput and packing preset "
                   "(default stage_a; --quick tiny)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads per process (default 1: what one trial gets)")
    p.add_argument("--batches", type=int, default=None,
                   help="timed train batches per variant (default 100 on CUDA, 5 on CPU)")
    p.add_argument("--pack", type=int, default=4, help="trials packed on the GPU (default 4)")
    p.add_argument("--pack-window-s", type=float, default=None,
                   help="seconds each packed trial trains (default 15; --quick 1)")
    p.add_argument("--pack-precision", default="fp32", choices=["fp32", "bf16"],
                   help="train/precision of the packed trials (default fp32, a trial's default)")
    p.add_argument("--arm-preset", default=None,
                   help="preset of the arms (default: --preset; stage_a_upstream: upstream quirks)")
    p.add_argument("--arms", default=",".join(ARMS),
                   help=f"comma-separated arms (default {','.join(ARMS)})")
    p.add_argument("--arm-budget-s", type=float, default=None,
                   help="training seconds per arm, both arms side by side (default 150, "
                        "--quick 20; never past the deadline)")
    p.add_argument("--arm-max-epochs", type=int, default=None,
                   help="train/max_epochs of the arms (default: the preset's; --quick 3)")
    p.add_argument("--arm-min-epochs", type=int, default=8,
                   help="epochs the budget should hold before the train set is cut (default 8)")
    p.add_argument("--arm-train-fraction", default="auto",
                   help="fraction of the train patches the arms train on (default auto: 1 unless "
                        "--arm-min-epochs full epochs would not fit the budget)")
    p.add_argument("--arm-precision", default="fp32", choices=["fp32", "bf16"],
                   help="train/precision of the arms (default fp32, as upstream)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: tiny preset, 3 batches, 1 s packing window, arms of 3 "
                        "epochs")
    a = p.parse_args()
    q = a.quick
    a.deadline_s = a.deadline_s or (120.0 if q else 290.0)
    a.preset = a.preset or ("tiny" if q else "stage_a")
    a.arm_preset = a.arm_preset or a.preset
    a.pack_window_s = a.pack_window_s or (1.0 if q else 15.0)
    a.arm_budget_s = a.arm_budget_s or (20.0 if q else 150.0)
    if q and a.arm_max_epochs is None:
        a.arm_max_epochs = 3
    a.arm_names = [x.strip() for x in a.arms.split(",") if x.strip()]
    bad = [x for x in a.arm_names if x not in ARMS]
    if bad:
        p.error(f"--arms: unknown arm(s) {bad}; known: {', '.join(ARMS)}")
    if a.arm_train_fraction != "auto":
        try:
            f = float(a.arm_train_fraction)
        except ValueError:
            f = math.nan
        if not 0 < f <= 1:
            p.error(f"--arm-train-fraction={a.arm_train_fraction!r}: use auto or a number "
                    "in (0, 1]")
    if a.pack < 1:
        p.error(f"--pack={a.pack} must be >= 1")
    return a


# ------------------------------------------------------------------ time and output
class Clock:
    """The run's deadline: seconds left overall and until a stage's end mark."""

    def __init__(self, deadline_s: float):
        self.t0 = time.perf_counter()
        self.deadline_s = deadline_s

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def left(self, stage: str | None = None) -> float:
        end = self.deadline_s * (STAGE_ENDS[stage] if stage else 1.0)
        return end - self.elapsed()

    def hard_end(self, margin_s: float = 3.0) -> float:
        """The ``time.perf_counter()`` value past which no worker may run."""
        return self.t0 + self.deadline_s - margin_s


class Tee:
    """stdout to the terminal and to ``output.txt``."""

    def __init__(self, stream, path: Path):
        self.stream, self.file = stream, open(path, "w")  # noqa: SIM115

    def write(self, s: str) -> int:
        self.file.write(s)
        return self.stream.write(s)

    def flush(self) -> None:
        self.file.flush()
        self.stream.flush()


def time_variant(cfg, data, device, batches: int, max_s: float) -> dict[str, Any]:
    """Train and val samples/s of one precision / memory-format variant."""
    from ptycho_model.train import Trainer

    tr = Trainer(cfg, data, device=device)
    x_train, x_val = tr.x_train, tr.x_val
    n_params = sum(p.numel() for p in tr.model.parameters())
    warm_up(tr, x_train, x_val, device)
    chunk = 50 if device.type == "cuda" else 5
    n, dt, loss = time_train(tr, x_train, device, max_batches=batches, max_s=0.8 * max_s,
                             chunk=chunk)
    vbs = max(cfg.train.batch_size, 64)
    nv = min(max(1, n // cfg.train.batch_size // 4) * vbs, x_val.shape[0])
    tr.x_val = x_val[:nv]
    sync(device)
    t0 = time.perf_counter()
    tr._validate()
    sync(device)
    vdt = time.perf_counter() - t0
    peak = 0.0
    if device.type == "cuda":
        import torch

        peak = torch.cuda.max_memory_allocated() / 2**30
        torch.cuda.reset_peak_memory_stats()
    del tr, x_train, x_val
    free(device)
    return {"params": n_params, "batches_timed": n // cfg.train.batch_size, "train_samples": n,
            "train_s": dt, "train_sps": n / dt, "val_samples": nv, "val_sps": nv / vdt,
            "final_train_loss": loss, "loss_finite": math.isfinite(loss), "peak_gib": peak}


def stage_throughput(args, clock: Clock, cfg, data, device) -> dict[str, Any]:
    variants = VARIANTS if device.type == "cuda" else VARIANTS[:1]
    batches = args.batches or (100 if device.type == "cuda" else 5)
    if args.quick and not args.batches:
        batches = 3
    n_train, n_val = data.train.n, data.val.n
    rows, out, first_s = [], [], None
    for i, (precision, cl) in enumerate(variants):
        label = precision + (" +channels_last" if cl else "")
        left = clock.left("throughput")
        share = left / (len(variants) - i)
        if first_s is not None and left < min(first_s, share) * 0.9:
            print(f"[throughput] {label}: skipped, {left:.0f} s left of the stage", flush=True)
            out.append({"variant": label, "skipped": "deadline"})
            continue
        print(f"[throughput] {label}: up to {batches} train batches or {share:.0f} s ...",
              flush=True)
        vcfg = cfg.with_updates({"train/precision": precision, "train/channels_last": cl})
        t0 = time.perf_counter()
        try:
            r = time_variant(vcfg, data, device, batches, share)
        except Exception as e:  # noqa: BLE001 — one failing variant must not end the run
            print(f"[throughput] {label} FAILED: {type(e).__name__}: {e}", flush=True)
            out.append({"variant": label, "error": f"{type(e).__name__}: {e}"})
            free(device)
            continue
        first_s = first_s or time.perf_counter() - t0
        train_s = n_train / r["train_sps"]
        epoch_s = train_s + n_val / r["val_sps"]
        r.update(variant=label, precision=precision, channels_last=cl, train_s_per_epoch=train_s,
                 s_per_epoch=epoch_s, ratio_vs_upstream=epoch_s / UPSTREAM_S_PER_EPOCH,
                 wall_s=time.perf_counter() - t0)
        out.append(r)
        rows.append([label, f"{r['params']:,}", r["batches_timed"], r["train_sps"], r["val_sps"],
                     train_s, epoch_s, r["ratio_vs_upstream"], r["peak_gib"],
                     "yes" if r["loss_finite"] else "NO"])
    print()
    print(f"{args.preset} s/epoch, EXTRAPOLATED: n_train {n_train:,} / train samples/s + n_val "
          f"{n_val:,} / val samples/s; upstream ~{UPSTREAM_S_PER_EPOCH:.0f} s/epoch (RTX 3090)")
    print(table(["variant", "params", "batches", "train samples/s", "val samples/s",
                 "train s/epoch", "s/epoch", "ratio vs 35 s", "peak GiB", "finite loss"], rows))
    ok = [r for r in out if "s_per_epoch" in r]
    best = min(ok, key=lambda r: r["s_per_epoch"]) if ok else None
    if best:
        print()
        verdict(f"{args.preset} s/epoch / upstream 35 s ({best['variant']}, {device.type}, "
                "extrapolated)", best["ratio_vs_upstream"],
                "<= 1.0 on a GPU; a CPU is not expected to meet it",
                best["ratio_vs_upstream"] <= 1.0 if device.type == "cuda" else None)
    return {"n_train": n_train, "n_val": n_val, "batches": batches, "variants": out,
            "best": best["variant"] if best else None,
            "upstream_s_per_epoch": UPSTREAM_S_PER_EPOCH}


def stage_pack(args, clock: Clock, data_dir: Path, tmp: Path, out: Path, device
               ) -> dict[str, Any]:
    spec = {"role": "pack", "data": str(data_dir), "preset": args.preset, "device": device.type,
            "updates": {"train/precision": args.pack_precision}, "window_s": args.pack_window_s}
    res: dict[str, Any] = {"trials": args.pack, "precision": args.pack_precision,
                           "window_s": args.pack_window_s}
    for n, key in ((1, "alone"), (args.pack, "packed")):
        left = clock.left("pack")
        need = args.pack_window_s + 5
        if left < need:
            print(f"[pack] {n} trial(s): skipped, {left:.0f} s left of the stage", flush=True)
            res[key] = {"skipped": "deadline"}
            continue
        ready_s = min(90.0, max(5.0, left - args.pack_window_s - 3))
        print(f"[pack] {n} trial(s) side by side, {args.pack_window_s:.0f} s of training each ...",
              flush=True)
        t0 = time.perf_counter()
        ws = run_workers([spec] * n, tmp, out, f"pack{n}", ready_s=ready_s,
                         run_s=args.pack_window_s + 30, hard_end=clock.hard_end(),
                         threads=args.threads)
        good = [w for w in ws if w.get("ok")]
        r: dict[str, Any] = {"workers": ws, "ok": len(good), "wall_s": time.perf_counter() - t0}
        if good:
            span = max(w["t_end"] for w in good) - min(w["t_start"] for w in good)
            r["samples"] = sum(w["samples"] for w in good)
            r["span_s"] = span
            r["aggregate_sps"] = r["samples"] / span
            r["sum_of_rates_sps"] = sum(w["samples"] / w["seconds"] for w in good)
            r["start_skew_s"] = max(w["t_start"] for w in good) - min(w["t_start"] for w in good)
        res[key] = r
    a, p = res.get("alone", {}), res.get("packed", {})
    rows = []
    for key, r in (("1 trial alone", a), (f"{args.pack} trials packed", p)):
        rows.append([key, r.get("ok", "-"), r.get("samples"), r.get("span_s"),
                     r.get("aggregate_sps"), r.get("sum_of_rates_sps"), r.get("start_skew_s"),
                     max((w.get("peak_gib", 0.0) for w in r.get("workers", [])), default=None)])
    print()
    print(f"Trials side by side on one {device.type} device, each its own process "
          f"({args.pack_precision}, {args.pack_window_s:.0f} s window): aggregate = all samples / "
          "span from the first start to the last end")
    print(table(["run", "workers ok", "samples", "span s", "aggregate samples/s",
                 "sum of rates", "start skew s", "peak GiB/proc"], rows))
    if a.get("aggregate_sps") and p.get("aggregate_sps") and p["ok"] == args.pack:
        res["speedup"] = p["aggregate_sps"] / a["aggregate_sps"]
        res["per_trial_rate_vs_alone"] = res["speedup"] / args.pack
        print()
        verdict(f"{args.pack} trials packed on one {device.type} device: aggregate samples/s / "
                "1 trial alone", res["speedup"], f"> 1.0: packing at 1/{args.pack} GPU pays",
                res["speedup"] > 1.0 if device.type == "cuda" else None)
    return res


def stage_arms(args, clock: Clock, data_dir: Path, tmp: Path, out: Path, device,
               thr: dict[str, Any] | None, pack: dict[str, Any] | None, arm_data) -> dict[str, Any]:
    from ptycho_model.presets import preset_config

    left = clock.left("arms")
    startup = 20.0 if device.type == "cuda" else 8.0
    budget = min(args.arm_budget_s, left - startup)
    res: dict[str, Any] = {"preset": args.arm_preset, "precision": args.arm_precision,
                           "budget_s": budget, "arms": {}}
    if budget < 2:
        print(f"[arms] skipped: {left:.0f} s left of the run", flush=True)
        res["skipped"] = "deadline"
        return res
    base = preset_config(args.arm_preset)
    max_epochs = args.arm_max_epochs or base.train.max_epochs
    fraction, why = _fraction(args, thr, pack, arm_data, budget)
    res.update(train_fraction=fraction, train_fraction_why=why, max_epochs=max_epochs,
               n_train_full=arm_data.train.n)
    print(f"[arms] {', '.join(args.arm_names)} side by side, {budget:.0f} s each, preset "
          f"{args.arm_preset}, {args.arm_precision}, train fraction {fraction:.3g} ({why}) ...",
          flush=True)
    specs = []
    for name in args.arm_names:
        updates = {**ARMS[name], "train/precision": args.arm_precision,
                   "train/max_epochs": max_epochs}
        specs.append({"role": "arm", "data": str(data_dir), "preset": args.arm_preset,
                      "device": device.type, "updates": updates, "budget_s": budget,
                      "end_time": time.time() + clock.left("arms"),
                      "train_fraction": fraction, "history": str(out / f"history_{name}.json")})
    ws = run_workers(specs, tmp, out, "arm", ready_s=min(90.0, max(5.0, left - budget)),
                     run_s=budget + 30, hard_end=clock.hard_end(), threads=args.threads)
    for name, w, s in zip(args.arm_names, ws, specs, strict=True):
        rows = _read_rows(Path(s["history"]))
        res["arms"][name] = {"settings": ARMS[name], **w, **_summary(rows, fraction),
                             "curves": _curves(rows, fraction), "upstream": UPSTREAM_ARMS[name]}
    _print_arms(args, res)
    return res


def _fraction(args, thr, pack, arm_data, budget: float) -> tuple[float, str]:
    if args.arm_train_fraction != "auto":
        return float(args.arm_train_fraction), "--arm-train-fraction"
    v = next((r for r in (thr or {}).get("variants", []) if r.get("variant") == args.arm_precision
              and "train_sps" in r), None)
    if v is None or args.arm_preset.split("_upstream")[0] != args.preset:
        return 1.0, "no throughput figure for this preset and precision"
    speedup = (pack or {}).get("speedup") or 1.0
    slow = len(args.arm_names) / max(1.0, min(float(len(args.arm_names)), speedup))
    train_s = arm_data.train.n / v["train_sps"] * slow
    val_s = arm_data.val.n / v["val_sps"] * slow
    per_epoch = budget / args.arm_min_epochs
    if train_s + val_s <= per_epoch:
        return 1.0, (f"{train_s + val_s:.1f} s/epoch estimated with {len(args.arm_names)} side "
                     f"by side: {budget / (train_s + val_s):.0f} epochs fit")
    f = min(1.0, max(0.05, (per_epoch - val_s) / train_s))
    return f, (f"a full epoch ~{train_s + val_s:.0f} s with {len(args.arm_names)} side by side: "
               f"{args.arm_min_epochs} would not fit {budget:.0f} s, so a train subset")


def _read_rows(path: Path) -> list[dict[str, Any]]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return []


def _curves(rows: list[dict[str, Any]], fraction: float) -> dict[str, list[Any]]:
    c = {k: [r.get(k) for r in rows] for k in CURVE_KEYS}
    c["full_epochs"] = [r["epoch"] * fraction for r in rows]
    c["best_ckpt_amp_ssim"] = [r.get("best_ckpt_amp_ssim") for r in rows]
    return c


def _summary(rows: list[dict[str, Any]], fraction: float) -> dict[str, Any]:
    vals = [(r["epoch"], r["val_loss"]) for r in rows
            if isinstance(r.get("val_loss"), (int, float))]
    if not vals:
        return {"best_val_loss": None}
    be, bv = min(vals, key=lambda t: t[1])
    last = rows[-1]
    flagged = [r["epoch"] for r in rows if r.get("collapsed")]
    return {"best_val_loss": bv, "best_epoch": be, "best_full_epochs": be * fraction,
            "last_val_loss": last["val_loss"],
            "last_over_best": last["val_loss"] / bv if bv else None,
            "collapsed": bool(flagged), "collapse_kind": last.get("collapse_kind"),
            "collapse_epoch": flagged[0] if flagged else None,
            "last_output_std": last.get("output_std"),
            "median_epoch_s": sorted(r["epoch_time_s"] for r in rows)[len(rows) // 2]}


def _print_arms(args, res: dict[str, Any]) -> None:
    rows, keys = [], ["epoch", "val_loss", "train_loss", "output_std", "collapse_ratio",
                      "collapsed", "grad_norm", "min_block_rel_std", "amp_ssim"]
    for name, a in res["arms"].items():
        c = a["curves"]
        for i in range(len(c["epoch"])):
            rows.append([name, *[c[k][i] for k in keys]])
    print()
    print(f"Arms through fit, per epoch (preset {res['preset']}, train fraction "
          f"{res['train_fraction']:.3g})")
    print(table(["arm", *[k.replace("_", " ") for k in keys]], rows))
    srows = []
    for name, a in res["arms"].items():
        up = a["upstream"]
        srows.append([name, a.get("epochs"), a.get("stopped", a.get("error")),
                      a.get("best_val_loss"), a.get("best_epoch"), a.get("last_val_loss"),
                      a.get("last_over_best"), a.get("collapse_kind") if a.get("collapsed") else
                      "no", a.get("median_epoch_s"), up.get("best_val_loss"),
                      up.get("final_val_loss")])
    print()
    print(table(["arm", "epochs", "stopped", "best val", "best epoch", "last val", "last/best",
                 "collapsed", "s/epoch", "upstream best", "upstream final"], srows))
    for name, a in res["arms"].items():
        if a.get("last_over_best") is None:
            continue
        up = a["upstream"]
        ref = (f"upstream {up['final_val_loss']} / {up['best_val_loss']} = "
               f"{up['final_val_loss'] / up['best_val_loss']:.1f}" if "final_val_loss" in up
               else f"upstream best {up['best_val_loss']}, no collapse")
        print()
        verdict(f"arm {name}: last / best val_loss after {a['epochs']} epoch(s), best "
                f"{a['best_val_loss']:.4g} at epoch {a['best_epoch']}", a["last_over_best"],
                f"{ref}; > 2 (collapse/ratio) would reproduce the collapse", None)


# ------------------------------------------------------------------ main
def resolve_out(arg: str | None) -> Path:
    d = Path(arg or os.environ.get("OUT") or tempfile.mkdtemp(prefix="gpu_stage_a_"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def run(args, clock: Clock, out: Path) -> dict[str, Any]:
    import torch

    from ptycho_model.data import simulate
    from ptycho_model.device import resolve_device
    from ptycho_model.npz_io import save_datasets
    from ptycho_model.presets import preset_config

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    settings = {"preset": args.preset, "arm preset": args.arm_preset, "device": device.type,
                "threads": args.threads, "deadline s": args.deadline_s, "pack": args.pack,
                "pack window s": args.pack_window_s, "arm budget s": args.arm_budget_s,
                "quick": args.quick, "out": str(out)}
    banner("gpu_stage_a: stage_a throughput, packed trials, upstream arms (no Ray)", settings)
    from _common import cores, cpu_model, device_line

    results: dict[str, Any] = {
        "machine": {"python": sys.version.split()[0], "torch": torch.__version__,
                    "cuda": torch.version.cuda, "device": device_line(), "cpu": cpu_model(),
                    "cores": cores(), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")},
        "settings": {k: v for k, v in vars(args).items()}, "stages": {}}
    tmp = Path(tempfile.mkdtemp(prefix="gpu_stage_a_data_"))
    try:
        cfg = preset_config(args.preset, {"train/device": device.type})
        t0 = time.perf_counter()
        data = simulate(cfg.data)
        sim_s = time.perf_counter() - t0
        save_datasets(data, tmp / "data")
        arm_data, arm_dir = data, tmp / "data"
        if args.arm_preset != args.preset:
            arm_data = simulate(preset_config(args.arm_preset).data)
            arm_dir = tmp / "arm_data"
            save_datasets(arm_data, arm_dir)
        results["simulation"] = {"preset": args.preset, "n_train": data.train.n,
                                 "n_val": data.val.n, "n_test": data.test.n, "seconds": sim_s}
        print(f"[simulate] {args.preset}: {data.train.n:,} train, {data.val.n:,} val, "
              f"{data.test.n:,} test patches in {sim_s:.1f} s", flush=True)
        for name, fn in (("throughput", lambda: stage_throughput(args, clock, cfg, data, device)),
                         ("pack", lambda: stage_pack(args, clock, tmp / "data", tmp, out, device)),
                         ("arms", lambda: stage_arms(args, clock, arm_dir, tmp, out, device,
                                                     results.get("throughput"),
                                                     results.get("pack"), arm_data))):
            t0 = time.perf_counter()
            try:
                results[name] = fn()
            except Exception as e:  # noqa: BLE001 — later stages still run
                print(f"[{name}] FAILED: {type(e).__name__}: {e}", flush=True)
                results[name] = {"error": f"{type(e).__name__}: {e}"}
            results["stages"][name] = {"wall_s": time.perf_counter() - t0,
                                       "ended_at_s": clock.elapsed()}
            print(flush=True)
        results["curves_png"] = _plot(results.get("arms", {}), out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    results["wall_s"] = clock.elapsed()
    return results


def _plot(arms: dict[str, Any], out: Path) -> dict[str, Any] | None:
    from _curves_png import write_curves_png

    curves = {n: a["curves"] for n, a in arms.get("arms", {}).items() if a.get("curves")}
    if not curves:
        return None
    try:
        info = write_curves_png(
            curves, out / "curves.png", x_key="full_epochs",
            panels=[("val_loss", "val loss", True), ("train_loss", "train loss", True),
                    ("output_std", "output std", True),
                    ("collapse_ratio", "val / best val", False)],
            title=f"{arms.get('preset')} arms, train fraction {arms.get('train_fraction'):.3g}")
    except Exception as e:  # noqa: BLE001 — the JSON holds the numbers anyway
        print(f"[plot] FAILED: {type(e).__name__}: {e}")
        return {"error": f"{type(e).__name__}: {e}"}
    print(f"curves: {out / 'curves.png'} ({info['backend']}; colours {info['colours']})")
    return {"path": "curves.png", **info}


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        return worker_main(sys.argv[2:])
    args = parse()
    clock = Clock(args.deadline_s)
    out = resolve_out(args.out)
    tee = Tee(sys.stdout, out / "output.txt")
    with contextlib.redirect_stdout(tee):
        results = run(args, clock, out)
        write_json(out / "results.json", results)
        print(f"wall {results['wall_s']:.1f} s of a {args.deadline_s:.0f} s deadline")
        print(f"results: {out / 'results.json'}")
    tee.file.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
