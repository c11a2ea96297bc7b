"""Driver and trial start-up: time from ``tune-ptycho run`` to the first trial's first epoch.

Issue: "Driver and trial start-up: time from `tune-ptycho run` to the first trial's first epoch."

``tune-ptycho run --preset tiny --space seeds --num-samples 1`` as a subprocess in its own session
(its own embedded Ray, sockets under a short RAY_TMPDIR, a private dataset cache filled
beforehand), with the dashboard on and off. ``t0`` is taken just before ``Popen``. From the
child's stdout (timestamped as lines arrive) and its trial's result.json:

* experiment line: the driver has imported, started Ray (and the dashboard), loaded the dataset
  and written the experiment — it prints ``experiment ...`` just before building the Tuner;
* trial start: ``trial_start_ts`` (the trainable has built its Trainer, before epoch 1);
* first epoch: ``report_ts`` of epoch 1 (a tiny epoch is ~0.3 s);
* exit: the process ended (Tune and Ray shut down).

An untimed ``python -c "import tune_ptycho.cli, ray, torch"`` first warms the page cache.
Whatever the child leaves running in its session is killed afterwards, by process id.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import _common  # noqa: F401  (puts the repo on sys.path)
from _common import RAY_ENV, REPO, banner, median, read_trials, short_tmp, table

from tests.procs import kill_session  # the tests' own: by session id, never `ray stop`


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--modes", default="on,off", help="dashboard modes to run (default on,off)")
    p.add_argument("--repeats", type=int, default=2, help="runs per mode (default 2)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--timeout", type=float, default=240.0, help="seconds per run before a kill")
    p.add_argument("--keep", action="store_true")
    p.add_argument("--quick", action="store_true", help="smoke run: one run per mode, 1 epoch")
    return p.parse_args()


def one_run(mode: str, i: int, root: Path, cache: Path, epochs: int, timeout: float) -> dict:
    ray_tmp = short_tmp("tpbs")
    name = f"startup-{mode}-{i}"
    env = dict(os.environ, **RAY_ENV, RAY_TMPDIR=ray_tmp, TUNE_PTYCHO_CACHE=str(cache),
               PYTHONUNBUFFERED="1")
    env.pop("RAY_ADDRESS", None)
    cmd = [sys.executable, "-m", "tune_ptycho.cli", "run", "--preset", "tiny", "--space", "seeds",
           "--num-samples", "1", "--max-epochs", str(epochs), "--no-progress",
           "--storage", str(root / "runs"), "--name", name]
    if mode == "off":
        cmd.append("--no-dashboard")
    lines: list[tuple[float, str]] = []
    t0 = time.time()
    proc = subprocess.Popen(cmd, env=env, cwd=str(REPO), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)

    def reader() -> None:
        for line in proc.stdout:
            lines.append((time.time(), line.rstrip()))

    th = threading.Thread(target=reader, daemon=True)
    th.start()
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        code = None
    t_exit = time.time()
    th.join(timeout=5)
    leftover = kill_session(proc.pid)  # the session id is the child's pid
    shutil.rmtree(ray_tmp, ignore_errors=True)

    t_exp = next((t for t, s in lines if s.startswith("experiment ")), None)
    t_dash = next((t for t, s in lines if s.startswith("Ray dashboard:")), None)
    trials = read_trials(root / "runs" / name)
    first = next((r[0] for r in trials.values() if r), {})
    out = {"mode": mode, "exit": code, "leftover": leftover,
           "dashboard": t_dash - t0 if t_dash else None,
           "experiment": t_exp - t0 if t_exp else None,
           "trial_start": first["trial_start_ts"] - t0 if first else None,
           "first_epoch": first["report_ts"] - t0 if first else None,
           "exit_s": t_exit - t0}
    if code != 0 or not first:
        tail = "\n".join(s for _, s in lines[-30:])
        print(f"run {name} exit {code}; last output:\n{tail}", file=sys.stderr)
    return out


def main() -> None:
    args = parse()
    if args.quick:
        args.repeats, args.epochs = 1, 1
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    banner("startup: `tune-ptycho run` to the first trial's first epoch (subprocess, own Ray)",
           {"modes (dashboard)": modes, "repeats": args.repeats, "epochs": args.epochs,
            "quick": args.quick})
    root = Path(short_tmp("tpbs"))
    cache = root / "cache"
    try:
        from ptycho_model.presets import preset_config
        from tune_ptycho.storage.dataset_cache import get_datasets

        get_datasets(preset_config("tiny").data, cache, log=lambda s: None)
        subprocess.run([sys.executable, "-c", "import tune_ptycho.cli, ray, torch"],
                       cwd=str(REPO), check=False)
        results = []
        for i in range(args.repeats):
            for mode in (modes if i % 2 == 0 else modes[::-1]):  # alternate the order
                print(f"run {i + 1}/{args.repeats}, dashboard {mode} ...", flush=True)
                results.append(one_run(mode, i, root, cache, args.epochs, args.timeout))
    finally:
        if args.keep:
            print(f"(kept {root})")
        else:
            shutil.rmtree(root, ignore_errors=True)

    print()
    print("seconds after Popen (t0)")
    print(table(["dashboard", "exit", "'Ray dashboard' line", "'experiment' line", "trial start",
                 "first epoch end", "process exit", "leftover pids killed"],
                [[r["mode"], r["exit"], r["dashboard"], r["experiment"], r["trial_start"],
                  r["first_epoch"], r["exit_s"], r["leftover"]] for r in results]))
    print()
    summary = []
    for mode in modes:
        rs = [r for r in results if r["mode"] == mode and r["first_epoch"] is not None]
        if rs:
            summary.append([mode, len(rs), median([r["experiment"] for r in rs if r["experiment"]]),
                            median([r["trial_start"] for r in rs]),
                            median([r["first_epoch"] for r in rs]),
                            median([r["exit_s"] for r in rs])])
    print("medians")
    print(table(["dashboard", "runs", "'experiment' line", "trial start", "first epoch end",
                 "process exit"], summary))
    for row in summary:
        print(f"RESULT dashboard {row[0]}: t(first epoch end) - t0 = {row[4]:.1f} s, "
              f"t(trial start) - t0 = {row[3]:.1f} s (no target: reported)")
    if len(summary) == 2:
        print(f"RESULT dashboard on - off, to first epoch: {summary[0][4] - summary[1][4]:+.1f} s")


if __name__ == "__main__":
    main()
