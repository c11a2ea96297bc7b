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

The modes run interleaved (on off on off ..., ``--repeats`` each, default 5); each time's min /
median / max, and the dashboard's cost (on - off, per repeat pair), go to
``docs/bench/results/startup.json`` (reported, no target). Refused on a loaded machine unless
``--allow-load``. ``--ray-address`` makes each child join a running Ray instead of starting one
(a smoke of the code path: Ray's start-up is then not in the times).

    python bench/startup.py                  # dashboard on and off, 5 runs each
    python bench/startup.py --quick          # smoke: 1 run per mode, 1 epoch, temp JSON
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
from _common import (
    RAY_ENV,
    REPO,
    Measure,
    add_timing_args,
    banner,
    check_load,
    check_repeats,
    interleave,
    read_trials,
    result_dir,
    short_tmp,
    table,
)
from _results import figure, publish

from tests.procs import kill_session  # the tests' own: by session id, never `ray stop`

SCRIPT = "bench/startup.py"
MODULES = ["tune_ptycho", "trainables", "ptycho_model"]  # what the driver imports and runs
TIMES = ("experiment", "trial_start", "first_epoch", "exit_s")  # seconds after Popen


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--modes", default="on,off",
                   help="dashboard modes, the arms (default on,off)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--timeout", type=float, default=240.0, help="seconds per run before a kill")
    p.add_argument("--ray-address", default=None,
                   help="the children join this Ray instead of starting their own (a smoke: "
                        "Ray's start-up is then not measured)")
    p.add_argument("--keep", action="store_true")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: one run per mode, 1 epoch, no page-cache warm-up, JSON to "
                        "a temp dir")
    add_timing_args(p)
    args = p.parse_args(argv)
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    bad = [m for m in args.modes if m not in ("on", "off")]
    if bad or not args.modes or len(set(args.modes)) != len(args.modes):
        p.error(f"--modes {','.join(args.modes)}: give on, off or both, once each")
    return args


def one_run(mode: str, i: int, root: Path, cache: Path, epochs: int, timeout: float,
            address: str | None = None) -> dict:
    ray_tmp = short_tmp("tpbs")
    name = f"startup-{mode}-{i}"
    env = dict(os.environ, **RAY_ENV, RAY_TMPDIR=ray_tmp, TUNE_PTYCHO_CACHE=str(cache),
               PYTHONUNBUFFERED="1")
    env.pop("RAY_ADDRESS", None)
    if address:
        env["RAY_ADDRESS"] = address
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


def measured(run: dict) -> Measure:
    """The times of one run; a run that never reached its first epoch ends the benchmark."""
    if run["exit"] != 0 or run["first_epoch"] is None or run["experiment"] is None:
        raise SystemExit(f"run with dashboard {run['mode']} failed (exit {run['exit']}); "
                         "see its output above")
    return {k: float(run[k]) for k in TIMES}


def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()
    args = parse(argv)
    if args.quick:
        args.epochs = 1
    repeats = check_repeats(args.repeats, args.quick)
    modes = args.modes
    settings = {"modes (dashboard)": modes, "repeats": repeats, "epochs": args.epochs,
                "joined Ray": bool(args.ray_address), "quick": args.quick}
    banner("startup: `tune-ptycho run` to the first trial's first epoch (subprocess, own Ray)",
           settings)
    load = check_load(args.allow_load, args.quick)
    root = Path(short_tmp("tpbs"))
    cache = root / "cache"
    results: list[dict] = []

    def arm(mode: str):
        def one(i: int) -> Measure:
            results.append(one_run(mode, i, root, cache, args.epochs, args.timeout,
                                   args.ray_address))
            return measured(results[-1])
        return one

    try:
        from ptycho_model.presets import preset_config
        from tune_ptycho.storage.dataset_cache import get_datasets

        get_datasets(preset_config("tiny").data, cache, log=lambda s: None)
        if not args.quick:  # a smoke skips the page-cache warm-up (one more fresh Python)
            subprocess.run([sys.executable, "-c", "import tune_ptycho.cli, ray, torch"],
                           cwd=str(REPO), check=False)
        runs = interleave({m: arm(m) for m in modes}, repeats,
                          [("on", "off")] if len(modes) == 2 else [])
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
    figures = []
    for mode in modes:
        figures += [figure(f"dashboard {mode}: t(first epoch end) - t0",
                           runs.values(mode, "first_epoch"), unit="s"),
                    figure(f"dashboard {mode}: t(trial start) - t0",
                           runs.values(mode, "trial_start"), unit="s")]
    if len(modes) == 2:
        on, off = runs.values("on", "first_epoch"), runs.values("off", "first_epoch")
        figures.append(figure("dashboard on - off, to first epoch (per repeat pair)",
                              [a - b for a, b in zip(on, off, strict=True)], unit="s"))
    publish(SCRIPT, MODULES, settings, figures, load_start=load, started=started,
            quick=args.quick, out_dir=result_dir(args.out_dir, args.quick))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
