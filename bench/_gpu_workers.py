"""The worker processes of ``bench/gpu_stage_a.py`` and the timing of the real training step.

Each packed trial and each arm runs in its own process (``gpu_stage_a.py worker SPEC.json``), as
Ray runs trials, so that the GPU sees what it would see under ``--gpus-per-trial 0.25``: separate
CUDA contexts sharing one device. :func:`run_workers` starts them, releases them together through
a file barrier once all are ready (imports, data loading and the warm-up batch stay out of the
timing), collects their result files and kills any that outlive their time or the run's deadline.
Like the script, this module needs torch, numpy and scikit-image only.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import _common

SCRIPT = Path(__file__).resolve().with_name("gpu_stage_a.py")


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def free(device) -> None:
    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def write_json(path: Path, obj: Any) -> None:
    from ptycho_model.train import json_safe

    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(json_safe(obj), indent=1, allow_nan=False, default=str))
    tmp.replace(path)


def time_train(tr, x_train, device, *, max_batches: int, max_s: float, chunk: int
               ) -> tuple[int, float, float]:
    """(samples, seconds, last loss) of ``Trainer._train_epoch`` over chunks of ``chunk``
    batches of ``x_train``, until ``max_batches`` batches or ``max_s`` seconds (checked between
    chunks, after a CUDA sync)."""
    bs = tr.cfg.train.batch_size
    n_all = x_train.shape[0]
    done, pos, loss = 0, 0, math.nan
    sync(device)
    t0 = time.perf_counter()
    while done < max_batches * bs and time.perf_counter() - t0 < max_s:
        k = min(chunk * bs, max_batches * bs - done, n_all)
        if pos + k > n_all:
            pos = 0
        tr.x_train = x_train[pos:pos + k]
        pos += k
        loss, _, _ = tr._train_epoch(2)
        sync(device)
        done += k
    return done, time.perf_counter() - t0, loss


def warm_up(tr, x_train, x_val, device) -> None:
    """One train batch and one val batch, untimed: allocator, cuDNN and cuFFT plans."""
    bs = tr.cfg.train.batch_size
    tr.x_train = x_train[:bs]
    tr._train_epoch(1)
    tr.x_val = x_val[:max(bs, 64)]
    tr._validate()
    sync(device)


def run_workers(specs: list[dict[str, Any]], tmp: Path, out: Path, tag: str, *,
                ready_s: float, run_s: float, hard_end: float, threads: int
                ) -> list[dict[str, Any]]:
    """Start one ``worker`` process per spec, release them together once all are ready (or
    ``ready_s`` has passed), and return their result dicts (``{"ok": False, "error": ...}`` for
    one that failed or was killed). A worker may run ``run_s`` past the release or past its own
    readiness, whichever is later (a slow start is not cut short), and never past ``hard_end``,
    a ``time.perf_counter()`` value: the run's deadline. Logs are copied to ``out/workers/``."""
    go = tmp / f"{tag}.go"
    procs, paths = [], []
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    (out / "workers").mkdir(exist_ok=True)
    for i, spec in enumerate(specs):
        p = {k: tmp / f"{tag}_{i}.{k}" for k in ("spec", "ready", "result", "log")}
        p["spec"].write_text(json.dumps({**spec, "ready": str(p["ready"]), "go": str(go),
                                         "result": str(p["result"]), "threads": threads,
                                         "wait_s": ready_s}))
        log = open(p["log"], "w")  # noqa: SIM115
        procs.append((subprocess.Popen([sys.executable, str(SCRIPT), "worker",
                                        str(p["spec"])], stdout=log, stderr=subprocess.STDOUT,
                                       cwd=str(_common.REPO), env=env), log))
        paths.append(p)
    ready_at: list[float | None] = [None] * len(procs)

    def poll_ready() -> None:
        for i, p in enumerate(paths):
            if ready_at[i] is None and p["ready"].exists():
                ready_at[i] = time.perf_counter()

    t0 = time.perf_counter()
    while time.perf_counter() - t0 < ready_s:
        poll_ready()
        if all(r is not None or pr.poll() is not None
               for r, (pr, _) in zip(ready_at, procs, strict=True)):
            break
        time.sleep(0.02)
    go.touch()  # late ones see it too; their result says they were late
    t_go = time.perf_counter()
    killed = [False] * len(procs)
    while any(pr.poll() is None for pr, _ in procs):
        poll_ready()
        now = time.perf_counter()
        for i, (pr, _) in enumerate(procs):
            end = hard_end if ready_at[i] is None else min(
                hard_end, max(t_go, ready_at[i]) + max(1.0, run_s))
            if pr.poll() is None and now > end:
                pr.kill()
                killed[i] = True
        time.sleep(0.05)
    results = []
    for i, ((pr, log), p) in enumerate(zip(procs, paths, strict=True)):
        pr.wait()
        log.close()
        shutil.copy(p["log"], out / "workers" / f"{tag}_{i}.log")
        try:
            r = json.loads(p["result"].read_text())
        except (OSError, ValueError):
            r = {"ok": False}
        if killed[i]:
            r.update(ok=False, error="killed: past its time or the run's deadline")
        elif pr.returncode != 0 and r.get("ok"):
            r.update(ok=False, error=f"exit code {pr.returncode}")
        if not r.get("ok"):
            r.setdefault("error", f"exit code {pr.returncode}, no result")
            tail = p["log"].read_text()[-1500:]
            print(f"[{tag} {i}] FAILED: {r['error']}\n{tail}", flush=True)
            r["log_tail"] = tail
        results.append(r)
    return results


def worker_main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text())
    result = Path(spec["result"])
    out: dict[str, Any] = {"ok": False, "role": spec["role"], "pid": os.getpid()}
    try:
        out.update(_worker(spec, result))
        out["ok"] = True
        return 0
    except Exception as e:  # noqa: BLE001 — the parent reads the error from the result file
        out["error"] = f"{type(e).__name__}: {e}"
        raise
    finally:
        result.write_text(json.dumps(_json_ready(out), default=str))


def _json_ready(obj: Any) -> Any:
    from ptycho_model.train import json_safe

    return json_safe(obj)


def _worker(spec: dict[str, Any], result: Path) -> dict[str, Any]:
    import torch

    from ptycho_model.npz_io import load_datasets
    from ptycho_model.presets import preset_config
    from ptycho_model.train import Trainer

    torch.set_num_threads(int(spec["threads"]))
    device = torch.device(spec["device"])
    # collapse/stop false: an arm trains on past a collapse flag (its curve is the result)
    cfg = preset_config(spec["preset"], {"collapse/stop": False, **spec["updates"],
                                         "train/device": spec["device"]})
    data = load_datasets(spec["data"], val_is_test=cfg.data.val_is_test)
    if spec.get("train_fraction", 1.0) < 1.0:
        data = _train_subset(data, spec["train_fraction"], cfg.train.seed)
    if spec["role"] == "arm":
        return _arm(spec, cfg, data, device)
    tr = Trainer(cfg, data, device=device)
    x_train = tr.x_train
    warm_up(tr, x_train, tr.x_val, device)
    late = _barrier(spec)
    t_start = time.time()
    n, dt, loss = time_train(tr, x_train, device, max_batches=10**9, max_s=spec["window_s"],
                             chunk=50 if device.type == "cuda" else 5)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else 0.0
    return {"samples": n, "seconds": dt, "t_start": t_start, "t_end": t_start + dt,
            "final_train_loss": loss, "late_s": late, "peak_gib": peak}


def _barrier(spec: dict[str, Any]) -> float:
    """Say ready, wait for the parent's go; -> seconds this worker was late (0: on time)."""
    Path(spec["ready"]).touch()
    go, t0 = Path(spec["go"]), time.perf_counter()
    while not go.exists():
        if time.perf_counter() - t0 > spec["wait_s"] + 5:
            raise TimeoutError(f"no go signal within {spec['wait_s']:.0f} s")
        time.sleep(0.002)
    return max(0.0, time.time() - go.stat().st_mtime - 0.05)


def _train_subset(data, fraction: float, seed: int):
    """The datasets with a seeded random ``fraction`` of the train patches (val and test whole)."""
    import numpy as np

    tr = data.train
    k = max(1, round(fraction * tr.n))
    idx = np.sort(np.random.default_rng(seed).choice(tr.n, size=k, replace=False))
    sub = dataclasses.replace(tr, diffraction=tr.diffraction[idx], Y_I=tr.Y_I[idx],
                              Y_phi=tr.Y_phi[idx], coords_nominal=tr.coords_nominal[idx],
                              coords_true=tr.coords_true[idx])
    val = data.test if data.val_is_test else data.val
    return type(data)(train=sub, val=val, test=data.test)


class _OutOfTime(Exception):
    """Raised from fit's on_epoch when the next epoch would overrun the arm's budget."""


def _arm(spec, cfg, data, device) -> dict[str, Any]:
    from ptycho_model.train import fit

    rows: list[dict[str, Any]] = []
    hist = Path(spec["history"])
    late = _barrier(spec)
    t0 = time.perf_counter()
    budget = min(float(spec["budget_s"]), spec["end_time"] - time.time())

    def on_epoch(m: dict[str, Any]) -> None:
        rows.append(m)
        write_json(hist, rows)
        el = time.perf_counter() - t0
        if m["epoch"] < cfg.train.max_epochs and el + 1.1 * m["epoch_time_s"] > budget:
            raise _OutOfTime

    stopped = "max_epochs"
    try:
        res = fit(cfg, data, on_epoch=on_epoch, device=device)
        if res.diverged:
            stopped = "diverged"
    except _OutOfTime:
        stopped = "budget"
    return {"epochs": len(rows), "stopped": stopped, "train_s": time.perf_counter() - t0,
            "late_s": late, "n_train": data.train.n}
