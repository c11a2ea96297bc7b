"""The measured cliff map at the cpu preset: ``tune-ptycho cliff`` with its defaults (the cliff
arm, its AGC 0.01 twin and stable_hybrid with LayerScale; peak LR 5e-3 to 5e-2 at 6 log-spaced
points; rounds of 4 paired seeds), timed, its report copied to ``docs/bench/cliff/``.

It resumes: run it again with the same ``--storage`` and it continues the map where it stopped.

    python bench/cliff_map.py --storage /tmp/cliff-bench          # about an hour on 2 cores
    python bench/cliff_map.py --storage /tmp/cliff-bench --max-seeds 4 --points 5   # shorter
    python bench/cliff_map.py --quick     # smoke: tiny preset, plain arm, 2 points x 1 seed x
                                          # 1 epoch, in temp dirs (nothing written to docs/)
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import _common

OUT = _common.REPO / "docs" / "bench" / "cliff"


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--storage", default="/tmp/tune-ptycho-cliff-bench")
    ap.add_argument("--name", default="cliff_cpu")
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--points", type=int, default=6)
    ap.add_argument("--low", type=float, default=5e-3)
    ap.add_argument("--high", type=float, default=5e-2)
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--max-seeds", type=int, default=8)
    ap.add_argument("--halfwidth", type=float, default=0.25)
    ap.add_argument("--arms", default="cliff,cliff_agc,stable_layerscale")
    ap.add_argument("--set", action="append", default=[], metavar="PATH=VALUE",
                    help="passed on to tune-ptycho cliff (repeatable)")
    ap.add_argument("--out", type=Path, default=None,
                    help=f"where the report is copied (default {OUT}; --quick: a temp dir)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: tiny preset, the plain arm, 2 points x 1 seed x 1 epoch, "
                         "storage and report in temp dirs")
    args = ap.parse_args(argv)
    if args.quick:
        tmp = Path(tempfile.mkdtemp(prefix="tp-cliff-quick-"))
        args.preset, args.arms, args.points, args.seeds, args.max_seeds = "tiny", "plain", 2, 1, 1
        args.halfwidth, args.storage, args.name = 0.5, str(tmp / "runs"), "cliff_quick"
        args.set = [*args.set, "train/max_epochs=1"]
        args.out = args.out or tmp / "report"
    args.out = args.out or OUT
    return args


def main(argv: list[str] | None = None) -> int:
    """Run (or continue) the map, copy its report; tune-ptycho cliff's exit code."""
    args = parse(argv)
    _common.set_ray_env()
    _common.banner(f"cliff map ({args.preset} preset)", vars(args))
    from tune_ptycho.cli import main as cli

    t0 = time.perf_counter()
    code = cli(["cliff", "--preset", args.preset, "--arms", args.arms, "--points",
                str(args.points), "--low", str(args.low), "--high", str(args.high), "--seeds",
                str(args.seeds), "--max-seeds", str(args.max_seeds), "--halfwidth",
                str(args.halfwidth), "--storage", args.storage, "--name", args.name,
                "--no-dashboard", "--no-progress", *(f"--set={s}" for s in args.set)])
    took = time.perf_counter() - t0
    report = Path(args.storage).resolve() / args.name / "report"
    args.out.mkdir(parents=True, exist_ok=True)
    for f in ("cliff.csv", "cliff.png", "report.md"):
        shutil.copy2(report / f, args.out / f)
    print((report / "report.md").read_text())
    print(f"exit {code}; this invocation took {took / 60:.1f} min; copied to {args.out}")
    if args.quick:  # the smoke's temp storage (and its temp dir, unless the report is in it)
        tmp = Path(args.storage).parent
        shutil.rmtree(tmp if not args.out.resolve().is_relative_to(tmp.resolve())
                      else Path(args.storage), ignore_errors=True)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
