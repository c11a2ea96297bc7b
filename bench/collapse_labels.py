"""Record the labelled set of real runs the collapse rule is measured against (docs/calibration.md,
"The collapse rule, measured").

Every run is a real `cpu`-preset training (no fault hook) of 14 epochs that never stops on a flag
(``collapse/stop`` false), with the test image scored every epoch. One JSON line per run
goes to ``--out`` as soon as the run ends: the per-epoch signals the rule reads (val_loss,
output_std, amp_std, phase_std, min_block_rel_std) and the per-epoch signals the labels read
(the test image's amplitude SSIM, the constant output's SSIM, the stitched amplitude's spread),
plus the best checkpoint's amplitude SSIM. A run already in ``--out`` is skipped: kill it and run
it again, it goes on where it stopped.

    python bench/collapse_labels.py                 # the whole grid, 2 processes (~50 min)
    python bench/collapse_labels.py --limit 4       # the first 4 runs only
    python bench/collapse_rule.py                   # labels, confusion matrices, thresholds
    python bench/collapse_labels.py --quick         # smoke: 1 tiny healthy run of 2 epochs,
                                                    # in this process, to a temp file

The grid: the cpu preset's cliff arm (hybrid, Adam, warmup_cosine over 6 epochs, min ratio 0.05)
at peak LRs around its cliff, its AGC 0.01 twin, its norm-clip 1.0 twin, stable_hybrid with
zero_gamma and layerscale past the cliff, a constant LR past the cliff with no warmup, and
upstream's healthy lr 1e-3 arms (hybrid and stable_hybrid), over training seeds.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import _common

OUT = _common.REPO / "docs" / "bench" / "collapse_runs.jsonl"

_CLIFF = {"model/arch": "hybrid", "optim/name": "adam", "sched/name": "warmup_cosine",
          "sched/warmup_epochs": 6, "sched/min_ratio": 0.05, "clip/algorithm": "none"}
_AGC = {**_CLIFF, "clip/algorithm": "agc", "clip/threshold": 0.01}
_NORM = {**_CLIFF, "clip/algorithm": "norm", "clip/threshold": 1.0}
_STABLE = {**_CLIFF, "model/arch": "stable_hybrid"}
_HEALTHY = {"optim/name": "adam", "sched/name": "constant", "clip/algorithm": "none",
            "optim/lr": 1e-3}

# (arm, overrides, seeds): 64 runs
GRID: list[tuple[str, dict, int]] = [
    *((f"cliff@{lr:g}", {**_CLIFF, "optim/lr": lr}, 4) for lr in (1e-2, 1.4e-2, 2e-2, 3e-2)),
    *((f"agc@{lr:g}", {**_AGC, "optim/lr": lr}, 4) for lr in (1.4e-2, 2e-2, 3e-2)),
    *((f"norm1@{lr:g}", {**_NORM, "optim/lr": lr}, 2) for lr in (1.4e-2, 2e-2)),
    *((f"stable_{b}@{lr:g}", {**_STABLE, "model/stable_block": b, "optim/lr": lr}, 2)
      for b in ("layerscale", "zero_gamma") for lr in (2e-2, 3e-2)),
    *((f"constant@{lr:g}", {**_CLIFF, "sched/name": "constant", "optim/lr": lr}, 2)
      for lr in (3e-2, 5e-2)),
    ("healthy_hybrid@0.001", {**_HEALTHY, "model/arch": "hybrid"}, 4),
    ("healthy_stable@0.001", {**_HEALTHY, "model/arch": "stable_hybrid"}, 4),
    ("warm_hybrid@0.003", {**_CLIFF, "optim/lr": 3e-3}, 4),
    *((f"cliff@{lr:g}", {**_CLIFF, "optim/lr": lr}, 4) for lr in (1.7e-2, 2.5e-2)),
]

ROW_KEYS = ("epoch", "train_loss", "val_loss", "lr", "output_std", "amp_std", "amp_iqr",
            "phase_std",
            "min_block_rel_std", "amp_ssim", "amp_ssim_constant", "collapsed", "collapse_kind")


def runs() -> list[tuple[str, str, dict, int]]:
    """(run id, arm, overrides, training seed), seed-major: a partial set covers every arm."""
    out = []
    for seed in range(max(n for _, _, n in GRID)):
        for arm, over, n in GRID:
            if seed < n:
                out.append((f"{arm}/s{seed}", arm, over, seed))
    return out


def train_one(run_id: str, arm: str, overrides: dict, seed: int, cache: str,
              preset: str = "cpu", epochs: int | None = None) -> dict:
    """One run of the grid, never stopped on a flag, its test image scored every epoch."""
    import numpy as np
    import torch

    from ptycho_model import names
    from ptycho_model.presets import preset_config
    from ptycho_model.train import Trainer
    from tune_ptycho.storage.dataset_cache import get_datasets

    torch.set_num_threads(1)
    updates = {**overrides, "train/seed": seed, "train/eval_every": 1, "collapse/stop": False}
    if epochs:
        updates["train/max_epochs"] = epochs
    cfg = preset_config(preset, updates)
    data, _, _ = get_datasets(cfg.data, cache, log=lambda _: None)
    trainer = Trainer(cfg, data)
    t0 = time.perf_counter()
    rows = []
    for m in trainer.epochs():
        row = {k: m.get(k) for k in ROW_KEYS}
        if trainer.last_eval is not None and m.get(names.AMP_SSIM) is not None:
            amp = np.abs(trainer.last_eval[0])
            row["test_amp_std"] = float(amp.std() / amp.mean()) if amp.mean() > 0 else 0.0
        rows.append(row)
    final = trainer.history[-1]
    return {"run": run_id, "arm": arm, "seed": seed, "overrides": overrides,
            "max_epochs": cfg.train.max_epochs, "grace": cfg.collapse_grace,
            "best_ckpt_amp_ssim": final.get(names.BEST_CKPT_PREFIX + names.AMP_SSIM),
            "diverged": int(final.get(names.DIVERGED, 0)),
            "seconds": round(time.perf_counter() - t0, 1), "rows": rows}


def done_ids(out: Path) -> set[str]:
    if not out.exists():
        return set()
    return {json.loads(line)["run"] for line in out.read_text().splitlines() if line.strip()}


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None, help=f"default {OUT}; --quick: a temp file")
    ap.add_argument("--workers", type=int, default=2,
                    help="worker processes (0: run in this process)")
    ap.add_argument("--limit", type=int, default=0, help="record at most this many new runs")
    ap.add_argument("--preset", default="cpu", help="the grid's preset (default cpu)")
    ap.add_argument("--epochs", type=int, default=None,
                    help="train/max_epochs of every run (default: the preset's, 14 at cpu)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: the grid's first healthy run at the tiny preset, 2 "
                         "epochs, in this process, to a temp file")
    args = ap.parse_args(argv)
    if args.quick:
        args.preset, args.epochs, args.limit, args.workers = "tiny", 2, 1, 0
        args.out = args.out or Path(tempfile.mkdtemp(prefix="tp-labels-quick-")) / "runs.jsonl"
    args.out = args.out or OUT
    return args


def record(rec: dict, out: Path, i: int, total: int, t0: float) -> None:
    """Append one run's line to ``out`` and print its last epoch."""
    from ptycho_model.train import json_safe

    with out.open("a") as f:
        f.write(json.dumps(json_safe(rec), allow_nan=False) + "\n")
    last = rec["rows"][-1]
    print(f"[{i}/{total} {time.perf_counter() - t0:6.0f} s] {rec['run']:28s} "
          f"val {last['val_loss']:.3g} amp_ssim {last['amp_ssim']:.3f} "
          f"(const {last['amp_ssim_constant']:.3f}) amp_iqr {last['amp_iqr']:.3g} "
          f"flag {last['collapse_kind']}", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Record the runs not yet in ``--out``; 0 when none failed."""
    args = parse(argv)
    _common.banner("collapse labels: recording", vars(args))
    from ptycho_model.presets import preset_config
    from tune_ptycho.storage.dataset_cache import get_datasets

    cache = os.environ.get("TUNE_PTYCHO_BENCH_CACHE",
                           str(Path(os.environ.get("TMPDIR", "/tmp")) / "tune-ptycho-bench-cache"))
    get_datasets(preset_config(args.preset).data, cache)  # once, before the workers read it
    done = done_ids(args.out)
    todo = [r for r in runs() if r[0] not in done]
    if args.quick:  # a constant LR: valid at any epoch count (the warmup arms need > 6)
        todo = [r for r in todo if r[1].startswith("healthy")]
    if args.limit:
        todo = todo[: args.limit]
    for _run_id, _, over, seed in todo:  # every config checked before any run starts
        preset_config(args.preset, {**over, "train/seed": seed,
                                    **({"train/max_epochs": args.epochs} if args.epochs else {})})
    print(f"{len(done)} runs recorded, {len(todo)} to go -> {args.out}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    extra = (args.preset, args.epochs)
    failed = 0
    if args.workers <= 0:
        for i, r in enumerate(todo, 1):
            record(train_one(*r, cache, *extra), args.out, i, len(todo), t0)
    else:
        with ProcessPoolExecutor(max_workers=args.workers) as pool:
            futs = {pool.submit(train_one, *r, cache, *extra): r[0] for r in todo}
            for i, fut in enumerate(as_completed(futs), 1):
                try:
                    rec = fut.result()
                except Exception as e:  # noqa: BLE001 - one failed run must not cost the others
                    print(f"[{i}/{len(todo)}] {futs[fut]}: failed: {type(e).__name__}: {e}",
                          flush=True)
                    failed += 1
                    continue
                record(rec, args.out, i, len(todo), t0)
    print(f"recorded {len(todo) - failed} runs in {time.perf_counter() - t0:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
