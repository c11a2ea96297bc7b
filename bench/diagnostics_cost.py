"""What the per-block diagnostics cost: cpu-preset epochs with ``train/layer_stats`` on and off.

The diagnostics read the block outputs of the val pass that already computes ``output_std``
(forward hooks, no extra forward) and one ``_foreach_norm`` of each block's gradients per step.
This times whole epochs of the same run both ways on one thread, the two arms interleaved
(off on off on ..., ``--repeats`` each, default 5; each repeat a fresh Trainer, one untimed
warm-up epoch, then ``--epochs`` timed ones), and takes the ratio of the median epochs per repeat
pair (target: under 3% of an epoch, i.e. a ratio <= 1.03). Its spread and verdict go to
``docs/bench/results/diagnostics_cost.json``. Refused on a loaded machine unless ``--allow-load``.

    python bench/diagnostics_cost.py [--epochs 4] [--repeats 5] [--preset cpu]
    python bench/diagnostics_cost.py --quick     # smoke: tiny, 1 epoch, 1 repeat, temp JSON
"""

from __future__ import annotations

import argparse
import statistics
import time

import _common  # noqa: F401 - puts the checkout on sys.path
from _common import Measure, add_timing_args, banner, check_load, check_repeats, interleave
from _results import Target, figure, publish

SCRIPT = "bench/diagnostics_cost.py"
MODULES = ["ptycho_model"]  # the trainer, the model and its diagnostics hooks
TARGET = Target("<=", 1.03)


def epoch_times(preset: str, layer_stats: bool, epochs: int) -> list[float]:
    """Seconds of each of ``epochs`` epochs of a fresh Trainer, after one untimed epoch."""
    from ptycho_model.presets import preset_config
    from ptycho_model.train import Trainer
    from tune_ptycho.storage.dataset_cache import get_datasets

    cfg = preset_config(preset, {"train/layer_stats": layer_stats, "train/eval_every": 0,
                                 "train/max_epochs": epochs + 1})
    data, _, _ = get_datasets(cfg.data, log=lambda _m: None)
    trainer = Trainer(cfg, data)
    trainer.run_epoch()  # warm-up
    out = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        trainer.run_epoch()
        out.append(time.perf_counter() - t0)
    return out


def one_repeat(preset: str, layer_stats: bool, epochs: int) -> Measure:
    """The median epoch of one run, with or without the diagnostics."""
    return {"s_per_epoch": statistics.median(epoch_times(preset, layer_stats, epochs))}


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--epochs", type=int, default=4, help="timed epochs per repeat (default 4)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: tiny preset, 1 epoch, 1 repeat per arm")
    add_timing_args(ap)
    args = ap.parse_args(argv)
    if args.epochs < 1:
        ap.error(f"--epochs {args.epochs}: give at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()
    args = parse(argv)
    import torch

    if args.quick:
        args.preset, args.epochs = "tiny", 1
    repeats = check_repeats(args.repeats, args.quick)
    torch.set_num_threads(1)
    settings = {"preset": args.preset, "epochs": args.epochs, "repeats": repeats,
                "threads": 1, "quick": args.quick}
    banner("per-block diagnostics cost", settings)
    load = check_load(args.allow_load, args.quick)
    runs = interleave({"off": lambda _i: one_repeat(args.preset, False, args.epochs),
                       "on": lambda _i: one_repeat(args.preset, True, args.epochs)},
                      repeats, [("on", "off")])
    ratios = runs.ratios("on", "off", "s_per_epoch")
    print(f"\npreset {args.preset}, 1 thread, {args.epochs} epoch(s) per repeat; cost per "
          f"repeat pair: " + ", ".join(f"{100 * (x - 1):+.2f}%" for x in ratios))
    figures = [
        figure("diagnostics cost ratio (on / off, s per epoch)", ratios, target=TARGET),
        figure("epoch without diagnostics", runs.values("off", "s_per_epoch"), unit="s"),
        figure("epoch with diagnostics", runs.values("on", "s_per_epoch"), unit="s"),
    ]
    publish(SCRIPT, MODULES, settings, figures, load_start=load, started=started,
            quick=args.quick, out_dir=_common.result_dir(args.out_dir, args.quick))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
