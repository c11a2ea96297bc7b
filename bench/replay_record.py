"""Record real learning curves once, on a finite grid: the table ``bench/replay.py`` replays search
methods on (the tabular method of HPOBench and LCBench).

Every run is a real training of the preset (``cpu`` by default: 14 epochs, ~40 s a run on one
core) that never stops on a collapse flag (``collapse/stop`` false), so that its whole curve
exists after a flag and the replay can stop it wherever a method would; a diverged run ends at
the divergence (its weights hold NaN), as it does in every method. Validation runs every epoch
whatever ``train/eval_every`` says (it only schedules the test-image metrics, which the replay does
not read), so the preset's ``eval_every`` is kept: each epoch's recorded seconds are a trial's.

The grid (``bench/_replay.py``, ``CPU_GRID``), full factorial, each point at training seeds 0
and 1 (72 points x 2 seeds = 144 runs, ~50-60 min on 2 cores):

* arch: ``hybrid``; ``stable_hybrid`` with the ``zero_gamma`` block; ``stable_hybrid`` with the
  ``layerscale`` block at ``model/layerscale_init`` 1e-2;
* peak ``optim/lr``: 1e-3, 4e-3, 1.4e-2, 4e-2 (the cpu preset's cliff lies near 1e-2 to 2e-2);
* ``warmup_cosine`` with ``sched/min_ratio`` 0.05 and ``sched/warmup_epochs`` 2 or 6;
* clipping: none; norm at 1.0; AGC at 0.01;
* fixed: Adam, betas 0.9 / 0.999.

Left out (the grid cannot say anything about them): adamw and sgd, the constant (and
exponential, plateau) LR schedules, other learning rates, warmups and clip thresholds, value and
agc_unitwise clipping, other LayerScale inits, more training seeds.

Each finished run is appended to the table (``docs/bench/replay/table.jsonl``) as one JSON line:
the point, its config updates, the seed, the per-epoch lists (objective, val_loss, train_loss,
best_val_loss, best_epoch, collapsed, collapse_kind, diverged, output_std, amp_iqr, lr,
epoch_time_s), the final flags and the run's wall seconds. The recorder resumes: a (point, seed)
already in the table is skipped, so a crash loses at most the runs in flight. The sidecar
``recording.json`` beside the table holds the grid, what it leaves out and every recording
session (commit, date, CPU, wall seconds; the total is their sum).

    python bench/replay_record.py                 # the whole grid, 2 processes (~50-60 min)
    python bench/replay_record.py --limit 4       # 4 more runs, then stop
    python bench/replay_record.py --quick         # tiny preset, 2 x 2 points, 1 seed: seconds
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict
from pathlib import Path
from typing import Any

import _common
import _replay


def train_one(point: str, updates: dict[str, Any], seed: int, preset: str, cache: str
              ) -> dict[str, Any]:
    """Train one (point, seed) to its last epoch (or its divergence) on one thread; its row."""
    import torch

    from ptycho_model.presets import preset_config
    from ptycho_model.train import Trainer
    from tune_ptycho.storage.dataset_cache import get_datasets

    torch.set_num_threads(1)  # as a trial: 1 CPU each, 2 at a time
    cfg = preset_config(preset, {**updates, "train/seed": seed, "collapse/stop": False})
    data, _, _ = get_datasets(cfg.data, cache, log=lambda _: None)
    t0 = time.perf_counter()
    trainer = Trainer(cfg, data)
    curves: dict[str, list[Any]] = {k: [] for k in _replay.PER_EPOCH}
    for m in trainer.epochs():
        for k in _replay.PER_EPOCH:
            curves[k].append(m.get(k))
    last = trainer.history[-1]
    return {
        "point": point, "seed": seed, "updates": updates, "preset": preset,
        "max_epochs": cfg.train.max_epochs, "epochs": len(trainer.history),
        "collapse_grace": cfg.collapse_grace,
        "collapse_rule": {k: v for k, v in asdict(cfg.collapse).items() if k != "stop"},
        "curves": curves,
        "final": {k: last.get(k) for k in ("objective", "val_loss", "best_val_loss", "best_epoch",
                                           "collapsed", "collapse_kind", "diverged")},
        "collapse_epoch": trainer.state.collapse_epoch,
        "diverged_epoch": len(trainer.history) if trainer.diverged else 0,
        "wall_s": round(time.perf_counter() - t0, 2),
    }


def recorded(table: Path) -> set[tuple[str, int]]:
    return {(r["point"], int(r["seed"])) for r in _replay.read_rows(table)}


def describe(row: dict[str, Any]) -> str:
    f = row["final"]
    flag = ("diverged" if f["diverged"] else
            f"{f['collapse_kind']}@{row['collapse_epoch']}" if f["collapsed"] else "none")
    return (f"{row['point']} seed {row['seed']}: final objective {f['objective']:.4g}, best "
            f"{f['best_val_loss']:.4g}@{f['best_epoch']}, flag {flag}, {row['wall_s']:.0f} s")


def record(grid: _replay.Grid, table: Path, workers: int = 2, limit: int = 0,
           cache: str | None = None, quiet: bool = False) -> int:
    """Record the grid's runs missing from ``table`` (at most ``limit`` when > 0), ``workers``
    at a time; returns how many were recorded now."""
    from ptycho_model.presets import preset_config
    from ptycho_model.train import json_safe
    from tune_ptycho.storage.dataset_cache import get_datasets

    say = (lambda *_: None) if quiet else print
    _replay.check_grid(grid)  # every config checked before any run starts
    cache = cache or os.environ.get("TUNE_PTYCHO_BENCH_CACHE", str(
        Path(os.environ.get("TMPDIR", "/tmp")) / "tune-ptycho-bench-cache"))
    get_datasets(preset_config(grid.preset).data, cache, log=lambda _: None)  # once, up front
    table.parent.mkdir(parents=True, exist_ok=True)
    meta = _replay.open_sidecar(table, grid, workers)
    _replay.repair_tail(table)
    done = recorded(table)
    todo = [(p, s) for p, s in grid.runs() if (p, s) not in done]
    if limit > 0:
        todo = todo[:limit]
    total = len(grid.runs())
    say(f"{len(done)} of {total} runs recorded, {len(todo)} to go -> {table}", flush=True)
    _replay.write_sidecar(table, meta)
    if not todo:
        return 0
    t0 = time.perf_counter()
    new = 0
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futs = {pool.submit(train_one, p, grid.updates(p), s, grid.preset, cache): (p, s)
                for p, s in todo}
        for fut in as_completed(futs):
            try:
                row = fut.result()
            except Exception as e:  # noqa: BLE001 - one failed run must not cost the others
                say(f"{futs[fut]}: failed: {type(e).__name__}: {e}", flush=True)
                continue
            with table.open("a") as f:
                f.write(json.dumps(json_safe(row), allow_nan=False) + "\n")
            new += 1
            elapsed = time.perf_counter() - t0
            _replay.close_run(meta, elapsed, len(done) + new)
            _replay.write_sidecar(table, meta)
            eta = elapsed / new * (len(todo) - new)
            say(f"[{len(done) + new}/{total}, {elapsed:5.0f} s, ETA {eta:5.0f} s] "
                f"{describe(row)}", flush=True)
    say(f"recorded {new} runs in {time.perf_counter() - t0:.0f} s; total recording wall time "
        f"{meta['total_wall_s']:.0f} s over {len(meta['sessions'])} session(s)")
    return new


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="cpu", help="the grid to record: cpu (the default)")
    ap.add_argument("--table", type=Path, default=None,
                    help=f"the JSON-lines table (default {_replay.TABLE.relative_to(_common.REPO)}"
                         "; --quick: a new temporary folder)")
    ap.add_argument("--workers", type=int, default=2, help="runs at a time, 1 thread each")
    ap.add_argument("--limit", type=int, default=0, help="record at most this many new runs")
    ap.add_argument("--quick", action="store_true",
                    help="smoke: tiny preset, 2 x 2 points, 1 seed (seconds)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if args.workers < 1:
        raise SystemExit(f"--workers {args.workers}: must be >= 1")
    if args.quick:
        grid = _replay.QUICK_GRID
        table = args.table or Path(tempfile.mkdtemp(prefix="replay-quick-")) / "table.jsonl"
    else:
        if args.preset not in _replay.GRIDS or args.preset == "quick":
            raise SystemExit(f"--preset {args.preset!r}: no grid for it; grids: cpu (or --quick)")
        grid = _replay.get_grid(args.preset)
        table = args.table or _replay.TABLE
    _common.banner(f"replay table: recording grid {grid.name!r} ({len(grid.runs())} runs)",
                   {**vars(args), "table": table})
    print("left out: " + "; ".join(grid.left_out))
    record(grid, Path(table), workers=args.workers, limit=args.limit)


if __name__ == "__main__":
    main()
