"""A Ray cluster of several nodes on this host (head + workers declaring GPUs they do not have):
trials spread over nodes, GPUs bound the packing, a request no single node fits exits 2, and a
worker node lost mid-experiment costs nothing but time.

The cluster lives in a subprocess (tests/multinode_driver.py): one process joins one Ray cluster,
and the session fixture's Ray is another. That process and every Ray process it starts are ended
by their session id, also when the test fails — never with `ray stop`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from ptycho_model import names
from tune_ptycho.analysis import load_experiment

from conftest import short_tmp
from procs import free_ports, kill_session
from rows import assert_retries_continue, trial_rows

DRIVER = Path(__file__).with_name("multinode_driver.py")


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The largest number of intervals open at one instant (an end before a start at a tie)."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    best = cur = 0
    for _, step in events:
        cur += step
        best = max(best, cur)
    return best


def run_driver(tmp_path: Path, **args) -> dict:
    temp_dir = short_tmp("tpm")  # Ray's socket paths must stay under 107 bytes
    args = {"storage": str(tmp_path / "runs"), "temp_dir": temp_dir,
            "out": str(tmp_path / "driver.json"), **args}
    (tmp_path / "args.json").write_text(json.dumps(args))
    env = dict(os.environ, RAY_TMPDIR=temp_dir, RAY_AUTH_MODE="disabled", PYTHONUNBUFFERED="1")
    env.pop("RAY_ADDRESS", None)
    p = subprocess.Popen([sys.executable, str(DRIVER), str(tmp_path / "args.json")], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         start_new_session=True)
    try:
        output, _ = p.communicate(timeout=540)
    finally:
        kill_session(p.pid)
        p.wait()
        shutil.rmtree(temp_dir, ignore_errors=True)
    assert p.returncode == 0, output[-6000:]
    found = json.loads(Path(args["out"]).read_text())
    found["output"] = output
    return found


@pytest.mark.slow
def test_multinode_gpu_packing_request_check_and_lost_node(tmp_path):
    found = run_driver(tmp_path, fault=True)
    out = found["output"]
    workers = set(found["worker_node_ids"])
    runs = tmp_path / "runs"

    # 1. `--gpus-per-trial 3`: the cluster has 4 GPUs in all but no node has 3 -> exit 2 at once,
    #    naming every node and what it has; no experiment was created.
    assert found["too_big_code"] == 2, out[-4000:]
    err = found["too_big_err"]
    assert "no node can run a trial needing 0.5 CPU and 3 GPU" in err, err
    assert "4 GPU in all" in err and err.count("4 CPU, 2 GPU") == 2 and "0 CPU, 0 GPU" in err
    assert found["too_big_s"] < 30 and not found["too_big_dir_exists"]

    # 2. eight trials at 0.5 GPU on two nodes of 2 GPUs: more than one node, <= 4 at once per node
    assert found["run_code"] == 0, out[-4000:]
    rows = trial_rows(runs / "mn")
    assert len(rows) == 8 and all(len(r) == 3 for r in rows.values()), {
        k: len(v) for k, v in rows.items()}
    per_node: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for trial, r in rows.items():
        nodes = {x["node_id"] for x in r}
        assert len(nodes) == 1, (trial, nodes)  # no failure here: a trial stays on its node
        node = nodes.pop()
        assert node in workers, "a trial ran on the head, which offers no CPU or GPU"
        assert {x["device"] for x in r} == {"cpu"}  # declared GPUs, no CUDA: CPU fallback
        per_node[node].append((r[0]["trial_start_ts"], r[-1]["report_ts"]))
    assert len(per_node) > 1, per_node
    overlaps = {n: max_overlap(iv) for n, iv in per_node.items()}
    assert all(v <= 4 for v in overlaps.values()), overlaps
    assert max(overlaps.values()) >= 2, overlaps  # trials did share a node's GPUs
    assert found["fallback_warnings"] >= 1  # the one-line warning of each fallen-back trial

    # 3. a worker node killed while a checkpointed trial ran on it: the experiment still finishes,
    #    the trials it held resume on the other node from their checkpoints, none starts over.
    assert found["fault_code"] == 0, out[-4000:]
    lost = found["removed_node"]
    rows = trial_rows(runs / "mn-fault")
    assert len(rows) == 4
    moved = []
    for trial, r in rows.items():
        by_worker = assert_retries_continue(trial, r, last_epoch=6)  # finished, none lost
        if r[0]["node_id"] == lost:
            moved.append(trial)
            assert len(by_worker) >= 2 and by_worker[1][0]["resumed_from_epoch"] >= 1, (trial, r)
            assert all(x["node_id"] != lost for run in by_worker[1:] for x in run), (trial, r)
    analysed = {t.trial_id: [x[names.EPOCH] for x in t.rows]
                for t in load_experiment(runs / "mn-fault", with_study=False).trials}
    assert len(analysed) == 4, analysed
    assert all(e == list(range(1, 7)) for e in analysed.values()), analysed  # each epoch once
    assert found["removed_while"].removeprefix("trial_") in moved


def _fake_autoscaling_config(gcs_address: str) -> dict:
    """A complete `ray up`-style config for Ray's fake multi-node provider: the head offers
    nothing, one GPU node type starts at 0 workers (as in cluster.yaml) and may grow to 1."""
    return {
        "cluster_name": "tp-fake", "max_workers": 1, "idle_timeout_minutes": 1,
        "upscaling_speed": 1.0,
        "provider": {"type": "fake_multinode", "gcs_address": gcs_address},
        "auth": {}, "docker": {}, "file_mounts": {}, "cluster_synced_files": [],
        "file_mounts_sync_continuously": False, "rsync_exclude": [], "rsync_filter": [],
        "initialization_commands": [], "setup_commands": [], "head_setup_commands": [],
        "worker_setup_commands": [], "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
        "head_node_type": "ray.head.default",
        "available_node_types": {
            "ray.head.default": {"resources": {"CPU": 0}, "node_config": {}, "max_workers": 0},
            "gpu_worker": {"resources": {"CPU": 2, "GPU": 2}, "node_config": {},
                           "min_workers": 0, "max_workers": 1},
        },
    }


@pytest.mark.slow
def test_wait_for_nodes_lets_an_autoscaling_cluster_add_a_gpu_node(tmp_path):
    """GPU workers at min 0: without --wait-for-nodes the request exits 2 at once; with it the
    autoscaler is asked for a node, adds one, and the study runs there."""
    import ray

    from procs import cli

    temp_dir = short_tmp("tpa")
    gcs, agent, client = free_ports(3)
    address = f"{ray.util.get_node_ip_address()}:{gcs}"
    cfg = tmp_path / "autoscaling.json"
    cfg.write_text(json.dumps(_fake_autoscaling_config(address)))
    env = dict(os.environ, RAY_TMPDIR=temp_dir, RAY_AUTH_MODE="disabled", PYTHONUNBUFFERED="1")
    env.pop("RAY_ADDRESS", None)
    head_log = tmp_path / "head.log"
    head = subprocess.Popen(
        [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", f"--port={gcs}",
         f"--autoscaling-config={cfg}", "--num-cpus=0", "--num-gpus=0",
         "--include-dashboard=false", f"--dashboard-agent-listen-port={agent}",
         f"--ray-client-server-port={client}", f"--temp-dir={temp_dir}/ray",
         "--object-store-memory=100000000", "--disable-usage-stats"],
        env=dict(env, RAY_FAKE_CLUSTER="1", AUTOSCALER_UPDATE_INTERVAL_S="1"),
        stdout=head_log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    run = ["run", "--address", address, "--preset", "tiny", "--space", "seeds",
           "--num-samples", "2", "--max-epochs", "2", "--no-asha", "--no-progress",
           "--gpus-per-trial", "0.5", "--cpus-per-trial", "0.5", "--storage", str(tmp_path),
           "--set", "train/eval_every=0"]
    procs = []
    try:
        p = cli([*run, "--name", "no-wait"], env)
        procs.append(p)
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 2, out[-3000:]
        assert "no node can run a trial needing 0.5 CPU and 0.5 GPU" in out
        assert "--wait-for-nodes" in out

        p = cli([*run, "--name", "waited", "--wait-for-nodes", "120"], env)
        procs.append(p)
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0, out[-4000:] + head_log.read_text()[-2000:]
        assert "asked the autoscaler for one" in out
    finally:
        for q in procs:
            kill_session(q.pid)
        kill_session(head.pid)  # the fake provider's nodes are children of the head's monitor
        head.wait()
        shutil.rmtree(temp_dir, ignore_errors=True)
    rows = trial_rows(tmp_path / "waited")
    assert len(rows) == 2 and all([x["epoch"] for x in r] == [1, 2] for r in rows.values())
    assert all(r[0]["device"] == "cpu" for r in rows.values())  # a declared GPU, no CUDA
