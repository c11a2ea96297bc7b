"""Driver for test_multinode.py, run in its own process (one process joins one Ray cluster).

Starts a Ray cluster on this host with ``ray.cluster_utils.Cluster``: a head that offers no CPU
and no GPU (it holds the driver, like the head of cluster.yaml) and worker *nodes* that declare
GPUs this machine does not have. Trials given such a GPU fall back to the CPU with one warning
(``trainables.ptycho.trial_device``), which exists for exactly this test.

Then, through ``tune_ptycho.cli.main`` with ``--address``:

1. a per-trial request no single node can satisfy (``--gpus-per-trial 3``, each node declares 2,
   the cluster 4 in all): exit 2 before any trial;
2. a ``tiny`` study with ``--gpus-per-trial 0.5``: GPUs, not CPUs, bound the packing;
3. with ``--fault``: a study during which the worker node running a checkpointed trial is killed;
   its trials must resume on the other node from their checkpoints.

Usage: ``python multinode_driver.py ARGS.json``; writes its findings to ``ARGS["out"]`` (JSON).
Every Ray process it starts is ended by ``cluster.shutdown()``; the test also ends this process's
whole session, in case this script dies first.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import threading
import time
from pathlib import Path

from tune_ptycho.storage.tune_files import result_rows

WORKER = {"num_cpus": 4, "num_gpus": 2, "object_store_memory": 80 * 1024**2}
# --max-concurrent 8, not 0: with a searcher, Tune keeps as many trials pending as the concurrency
# limit (one without a limit), so on a busy host short trials would start one by one and barely
# overlap. With 8 pending, the resources alone decide how many share a node.
COMMON = ["--preset", "tiny", "--space", "seeds", "--cpus-per-trial", "0.5",
          "--max-concurrent", "8", "--no-asha", "--no-progress", "--no-dashboard",
          "--set", "train/eval_every=0", "--set", "faults/allowed=true"]


def run_cli(argv: list[str]) -> tuple[int, str]:
    """``tune-ptycho ARGV`` in this process; returns the exit code and what it wrote to stderr."""
    from tune_ptycho.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(argv)
    sys.stderr.write(err.getvalue())
    return code, err.getvalue()


def kill_node_of_a_checkpointed_trial(cluster, workers, exp: Path, max_epochs: int,
                                      found: dict, stop: threading.Event) -> None:
    """Once a trial has two checkpoints and is still running, kill the worker node it runs on
    (SIGKILL, no graceful drain): a node lost mid-experiment. Two, because the newest may be
    in storage before Tune has registered it; the one before it surely is."""
    by_id = {w.node_id: w for w in workers}
    while not stop.is_set():
        for d in sorted(exp.glob("trial_*")):
            r = result_rows(d)
            if r and len(list(d.glob("checkpoint_*"))) >= 2 and r[-1]["epoch"] < max_epochs \
                    and r[-1]["node_id"] in by_id:
                victim = r[-1]["node_id"]
                found["removed_node"] = victim
                found["removed_at"] = time.time()
                found["removed_while"] = d.name
                cluster.remove_node(by_id[victim], allow_graceful=False)
                return
        time.sleep(0.1)


def fallback_warnings(session_dir: str) -> int:
    n = 0
    for f in Path(session_dir, "logs").glob("worker-*.err"):
        try:
            n += f.read_text(errors="replace").count("torch sees no CUDA device")
        except OSError:
            pass
    return n


def main(args: dict) -> None:
    import ray
    from ray.cluster_utils import Cluster

    out: dict = {}
    temp_dir = Path(args["temp_dir"], "ray")  # = $RAY_TMPDIR/ray, where Ray writes its address
    temp_dir.mkdir(parents=True, exist_ok=True)
    head_args = {
        "num_cpus": 0, "num_gpus": 0, "include_dashboard": False,
        "object_store_memory": 80 * 1024**2, "temp_dir": str(temp_dir),
        "dashboard_agent_listen_port": None,  # a free port, not 52365: another Ray may hold it
        # notice a killed node within seconds, not half a minute
        "_system_config": {"health_check_initial_delay_ms": 0, "health_check_period_ms": 1000,
                           "health_check_failure_threshold": 3},
    }
    t0 = time.time()
    cluster = Cluster(initialize_head=True, head_node_args=head_args)
    try:
        workers = [cluster.add_node(**WORKER) for _ in range(args.get("workers", 2))]
        out["cluster_start_s"] = round(time.time() - t0, 1)
        out["head_node_id"] = cluster.head_node.node_id
        out["worker_node_ids"] = [w.node_id for w in workers]
        out["session_dir"] = cluster.head_node.get_session_dir_path()
        storage = args["storage"]
        addr = ["--address", cluster.address, "--storage", storage]

        # 1. no node has 3 GPUs (the cluster has 4): refused before any trial, never a wait
        t = time.time()
        out["too_big_code"], out["too_big_err"] = run_cli(
            ["run", *COMMON, *addr, "--name", "too-big", "--num-samples", "2",
             "--max-epochs", "2", "--gpus-per-trial", "3"])
        out["too_big_s"] = round(time.time() - t, 1)
        out["too_big_dir_exists"] = Path(storage, "too-big").exists()

        # 2. packing by GPUs: 0.5 GPU per trial and 2 GPUs per node -> at most 4 per node
        t = time.time()
        out["run_code"], _ = run_cli(
            ["run", *COMMON, *addr, "--name", "mn", "--num-samples", "8", "--max-epochs", "3",
             "--gpus-per-trial", "0.5", "--set", "faults/sleep_s=1.5"])
        out["run_s"] = round(time.time() - t, 1)

        # 3. a worker node killed mid-experiment: its trials resume elsewhere from checkpoints
        if args.get("fault"):
            max_epochs = 6
            exp = Path(storage, "mn-fault")
            stop = threading.Event()
            found: dict = {}
            th = threading.Thread(target=kill_node_of_a_checkpointed_trial, daemon=True,
                                  args=(cluster, workers, exp, max_epochs, found, stop))
            th.start()
            t = time.time()
            try:
                out["fault_code"], _ = run_cli(
                    ["run", *COMMON, *addr, "--name", "mn-fault", "--num-samples", "4",
                     "--max-epochs", str(max_epochs), "--gpus-per-trial", "1",
                     "--max-failures", "3", "--set", "faults/sleep_s=1.0"])
            finally:
                stop.set()
                th.join(timeout=10)
            out["fault_s"] = round(time.time() - t, 1)
            out.update(found)
        out["fallback_warnings"] = fallback_warnings(out["session_dir"])
    finally:
        Path(args["out"]).write_text(json.dumps(out, indent=1))
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    main(json.loads(Path(sys.argv[1]).read_text()))
