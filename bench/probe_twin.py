"""Is amp SSIM consistent across equally good fits? Ideal disk vs the built-in asymmetric probe.

With gridsize 1 and a centrosymmetric probe (the ideal disk) a diffraction pattern cannot tell an
exit wave from its twin conj(psi(-r)), so equally good fits may score very different amp SSIMs
(docs/calibration.md, "Metric trap: the twin image"). A probe whose amplitude is not
centrosymmetric removes the ambiguity. This trains
the `cpu` preset with each probe over several seeds (through `fit`, no Ray) and prints val_loss,
amp SSIM and twin SSIM per run, and the spread of amp SSIM per probe.

    python bench/probe_twin.py            # 3 seeds x 2 probes, 25 epochs: ~5 min on 2 cores
    python bench/probe_twin.py --quick    # smoke: tiny preset, 1 seed, 2 epochs, in this process
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor


def one_run(probe: str, seed: int, epochs: int, preset: str = "cpu") -> dict:
    """One fit of ``preset`` with ``probe``: its best weights' val_loss, amp and twin SSIM."""
    import torch

    torch.set_num_threads(1)
    from ptycho_model import names
    from ptycho_model.data import simulate
    from ptycho_model.presets import preset_config
    from ptycho_model.train import fit

    cfg = preset_config(preset, {"data/probe": probe, "train/seed": seed, "collapse/stop": False,
                                "train/max_epochs": epochs, "train/eval_every": 0})
    t0 = time.perf_counter()
    final = fit(cfg, simulate(cfg.data)).final
    p = names.BEST_CKPT_PREFIX
    return {"probe": probe, "seed": seed, "best_val_loss": final[names.BEST_VAL_LOSS],
            "amp_ssim": final[p + names.AMP_SSIM], "twin": final[p + names.AMP_SSIM_TWIN],
            "constant": final[p + names.AMP_SSIM_CONSTANT], "s": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> int:
    """Fit each probe over the seeds and print the spread of amp SSIM; 0."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=25)
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                    help="worker processes (0: run in this process)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: tiny preset, 1 seed, 2 epochs, in this process")
    a = ap.parse_args(argv)
    if a.quick:
        a.preset, a.seeds, a.epochs, a.workers = "tiny", 1, 2, 0
    jobs = [(p, s, a.epochs, a.preset) for p in ("ideal_disk", "asymmetric")
            for s in range(a.seeds)]
    if a.workers <= 0:
        rows = [one_run(*job) for job in jobs]
    else:
        with ProcessPoolExecutor(a.workers) as ex:
            rows = list(ex.map(one_run, *zip(*jobs, strict=True)))
    print(f"{a.preset} preset, {a.epochs} epochs, seeds 0..{a.seeds - 1}, best-val_loss weights")
    print(f"{'probe':11s} {'seed':>4s} {'best_val':>9s} {'amp_ssim':>9s} {'twin':>7s} "
          f"{'const':>6s} {'s':>6s}")
    for r in rows:
        print(f"{r['probe']:11s} {r['seed']:4d} {r['best_val_loss']:9.4f} {r['amp_ssim']:9.3f} "
              f"{r['twin']:7.3f} {r['constant']:6.3f} {r['s']:6.1f}")
    for probe in ("ideal_disk", "asymmetric"):
        ss = [r["amp_ssim"] for r in rows if r["probe"] == probe]
        tw = [r["twin"] for r in rows if r["probe"] == probe]
        vl = [r["best_val_loss"] for r in rows if r["probe"] == probe]
        spread = max(ss) - min(ss)
        print(f"{probe}: amp SSIM {min(ss):.3f}-{max(ss):.3f} (spread {spread:.3f}), "
              f"twin higher in {sum(t > s for s, t in zip(ss, tw, strict=True))}/{len(ss)} runs, "
              f"val_loss {statistics.mean(vl):.4f} mean")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
