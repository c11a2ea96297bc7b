"""What the per-block diagnostics cost: cpu-preset epochs with ``train/layer_stats`` on and off.

The diagnostics read the block outputs of the val pass that already computes ``output_std``
(forward hooks, no extra forward) and one ``_foreach_norm`` of each block's gradients per step.
This times whole epochs of the same run both ways, interleaved, on one thread, and prints the
ratio (target: under 3% of an epoch).

    python bench/diagnostics_cost.py [--epochs 4] [--repeats 3] [--preset cpu] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import time

import _common  # noqa: F401 - puts the checkout on sys.path
import torch

from ptycho_model.presets import preset_config
from ptycho_model.train import Trainer
from tune_ptycho.storage.dataset_cache import get_datasets


def epoch_times(preset: str, layer_stats: bool, epochs: int) -> list[float]:
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="smoke run: tiny preset, 2 x 1 epochs")
    args = ap.parse_args()
    if args.quick:
        args.preset, args.epochs, args.repeats = "tiny", 2, 1
    torch.set_num_threads(1)
    _common.banner("per-block diagnostics cost", vars(args))
    on, off = [], []
    for _ in range(args.repeats):  # interleaved: drift of the host hits both alike
        off += epoch_times(args.preset, False, args.epochs)
        on += epoch_times(args.preset, True, args.epochs)
    m_on, m_off = statistics.median(on), statistics.median(off)
    print(f"preset {args.preset}, 1 thread, {len(on)} epochs each way (median)")
    print(f"  without diagnostics  {m_off:.3f} s/epoch")
    print(f"  with diagnostics     {m_on:.3f} s/epoch")
    ratio = m_on / m_off
    print(f"  {100 * (ratio - 1):+.2f}% of an epoch")
    _common.verdict("diagnostics cost ratio", ratio, "< 1.03", ratio < 1.03)


if __name__ == "__main__":
    main()
