"""The measured cliff map at the cpu preset: ``tune-ptycho cliff`` with its defaults (the cliff
arm, its AGC 0.01 twin and stable_hybrid with LayerScale; peak LR 5e-3 to 5e-2 at 6 log-spaced
points; rounds of 4 paired seeds), timed, its report copied to ``docs/bench/cliff/``.

It resumes: run it again with the same ``--storage`` and it continues the map where it stopped.

    python bench/cliff_map.py --storage /tmp/cliff-bench          # about an hour on 2 cores
    python bench/cliff_map.py --storage /tmp/cliff-bench --max-seeds 4 --points 5   # shorter
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import _common

OUT = _common.REPO / "docs" / "bench" / "cliff"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--storage", default="/tmp/tune-ptycho-cliff-bench")
    ap.add_argument("--name", default="cliff_cpu")
    ap.add_argument("--points", type=int, default=6)
    ap.add_argument("--low", type=float, default=5e-3)
    ap.add_argument("--high", type=float, default=5e-2)
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--max-seeds", type=int, default=8)
    ap.add_argument("--halfwidth", type=float, default=0.25)
    ap.add_argument("--arms", default="cliff,cliff_agc,stable_layerscale")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    _common.set_ray_env()
    _common.banner("cliff map (cpu preset)", vars(args))
    from tune_ptycho.cli import main as cli

    t0 = time.perf_counter()
    code = cli(["cliff", "--preset", "cpu", "--arms", args.arms, "--points", str(args.points),
                "--low", str(args.low), "--high", str(args.high), "--seeds", str(args.seeds),
                "--max-seeds", str(args.max_seeds), "--halfwidth", str(args.halfwidth),
                "--storage", args.storage, "--name", args.name, "--no-dashboard",
                "--no-progress"])
    took = time.perf_counter() - t0
    report = Path(args.storage).resolve() / args.name / "report"
    args.out.mkdir(parents=True, exist_ok=True)
    for f in ("cliff.csv", "cliff.png", "report.md"):
        shutil.copy2(report / f, args.out / f)
    print((report / "report.md").read_text())
    print(f"exit {code}; this invocation took {took / 60:.1f} min; copied to {args.out}")


if __name__ == "__main__":
    main()
