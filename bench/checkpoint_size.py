"""How big is a trial's checkpoint, and what does writing one every epoch cost?

A checkpoint is ``Trainer.save``: the weights, the optimizer's state (Adam: two moments per
weight), the best weights so far, RNG and history. This builds each preset's real Trainer, takes
one optimizer step so that Adam's moments exist, sets the best weights, and times
``Trainer.save`` to a temporary directory (with fsync) plus one copy of it (what Ray does to
persist a reported checkpoint into local storage; S3 uploads instead). The last columns put the
write against upstream's ~35 s per stage_a epoch on one GPU, for a checkpoint every epoch and
every 5th (``--checkpoint-every 5``).

    python bench/checkpoint_size.py                 # tiny, cpu, stage_a (stage_a: ~1 GB, ~30 s)
    python bench/checkpoint_size.py --presets tiny cpu
    python bench/checkpoint_size.py --quick       # smoke: tiny, one write
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from _common import banner, table

UPSTREAM_EPOCH_S = 35.0  # stage_a on one RTX 3090 (docs/physics.md §7)


def measure(preset: str, repeats: int) -> list:

    from ptycho_model import names
    from ptycho_model.data import simulate
    from ptycho_model.presets import preset_config
    from ptycho_model.train import Trainer

    cfg = preset_config(preset)
    trainer = Trainer(cfg, simulate(cfg.data))
    params = list(trainer.model.parameters())
    loss = sum((p.abs() ** 2).sum() for p in params)
    loss.backward()
    trainer.optimizer.step()
    trainer.best_model_state = {k: v.detach().clone()
                                for k, v in trainer.model.state_dict().items()}
    n_params = sum(p.numel() for p in params)
    saves, copies = [], []
    for _ in range(repeats):
        d = Path(tempfile.mkdtemp(prefix="tp-ckpt-"))
        try:
            t0 = time.perf_counter()
            trainer.save(d / names.STATE_FILE)
            with open(d / names.STATE_FILE, "rb") as f:
                os.fsync(f.fileno())
            saves.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            shutil.copytree(d, d.with_name(d.name + "-persisted"))
            with open(d.with_name(d.name + "-persisted") / names.STATE_FILE, "rb") as f:
                os.fsync(f.fileno())
            copies.append(time.perf_counter() - t0)
            size = (d / names.STATE_FILE).stat().st_size
        finally:
            shutil.rmtree(d, ignore_errors=True)
            shutil.rmtree(d.with_name(d.name + "-persisted"), ignore_errors=True)
    save, copy = min(saves), min(copies)
    total = save + copy
    return [preset, cfg.model.arch, f"{n_params:,}", f"{size / 1e6:.1f}", f"{save:.2f}",
            f"{copy:.2f}", f"{100 * total / UPSTREAM_EPOCH_S:.1f}%",
            f"{100 * total / (5 * UPSTREAM_EPOCH_S):.1f}%"]


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark with ``argv`` (the command line's by default); 0 when it ran."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=["tiny", "cpu", "stage_a"])
    ap.add_argument("--repeats", type=int, default=3, help="best of N writes")
    ap.add_argument("--quick", action="store_true", help="smoke run: tiny preset, one write")
    args = ap.parse_args(argv)
    if args.quick:
        args.presets, args.repeats = ["tiny"], 1
    if args.repeats < 1:
        ap.error(f"--repeats {args.repeats}: give at least 1")
    banner("checkpoint size and write time", {"presets": " ".join(args.presets),
                                              "repeats": args.repeats,
                                              "quick": args.quick})
    rows = [measure(p, args.repeats) for p in args.presets]
    print(table(["preset", "arch", "params", "checkpoint MB", "save s", "persist copy s",
                 "vs 35 s epoch, every epoch", "every 5th"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
