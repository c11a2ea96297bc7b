"""Joining Ray, and refusing per-trial requests no node can satisfy (Tune would wait forever)."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass

import ray

from ptycho_model.errors import InputError


class ResourceError(InputError):
    """The per-trial request fits no live node: exit 2 before any trial starts."""


@dataclass(frozen=True)
class NodeResources:
    node_id: str
    address: str
    cpus: float
    gpus: float


def connect(address: str | None, dashboard: bool, num_cpus: int | None = None,
            num_gpus: int | None = None) -> str | None:
    """Join the cluster at ``address`` (or ``RAY_ADDRESS``, as under ``ray job submit``), else start
    an embedded local Ray with the dashboard on 127.0.0.1. Returns the dashboard URL if known."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    if ray.is_initialized():
        return None
    if address:
        ctx = ray.init(address=address, log_to_driver=False)
    else:
        kwargs = dict(address="local", num_cpus=num_cpus, num_gpus=num_gpus, log_to_driver=False)
        if dashboard:
            kwargs.update(include_dashboard=True, dashboard_host="127.0.0.1")
        else:
            kwargs.update(include_dashboard=False)
        ctx = ray.init(**kwargs)
    url = getattr(ctx, "dashboard_url", None) or None
    if url and not url.startswith("http"):
        url = f"http://{url}"
    return url


def live_nodes() -> list[NodeResources]:
    out = []
    for n in ray.nodes():
        if not n.get("Alive"):
            continue
        r = n.get("Resources", {})
        out.append(NodeResources(n["NodeID"], n.get("NodeManagerAddress", "?"),
                                 float(r.get("CPU", 0)), float(r.get("GPU", 0))))
    return out


def describe(nodes: list[NodeResources]) -> str:
    if not nodes:
        return "no live nodes"
    return "; ".join(f"node {n.node_id[:8]} ({n.address}): {n.cpus:g} CPU, {n.gpus:g} GPU"
                     for n in nodes)


def _ask_autoscaler(bundle: dict[str, float] | None) -> bool:
    """Ask the cluster's autoscaler for room for ``bundle`` (None withdraws the request).

    Polling alone never grows a cluster: an autoscaler adds nodes for *pending* demand, and none
    exists before Tune places its first trial. False when there is nothing to ask."""
    try:
        from ray.autoscaler.sdk import request_resources

        request_resources(bundles=[bundle] if bundle else [])
        return True
    except Exception:  # noqa: BLE001 - no autoscaler API: waiting still sees nodes others add
        return False


def check_request(cpus: float, gpus: float, wait_s: float = 0.0, poll_s: float = 2.0) -> None:
    """Raise ResourceError unless one live node can hold a whole trial (not only the cluster
    total). With ``wait_s`` > 0 an autoscaling cluster is asked for such a node (the request is
    withdrawn once one is there, or at the deadline) and gets that long to add it."""
    deadline = time.monotonic() + wait_s
    asked = False
    try:
        while True:
            nodes = live_nodes()
            if any(n.cpus >= cpus and n.gpus >= gpus for n in nodes):
                return
            if time.monotonic() >= deadline:
                break
            if not asked:
                bundle = {k: v for k, v in (("CPU", cpus), ("GPU", gpus)) if v > 0}
                asked = _ask_autoscaler(bundle)
                print(f"no node fits a trial ({cpus:g} CPU, {gpus:g} GPU) yet; "
                      f"{'asked the autoscaler for one, ' if asked else ''}waiting up to "
                      f"{wait_s:g} s (--wait-for-nodes)", file=sys.stderr, flush=True)
            time.sleep(poll_s)
    finally:
        if asked:
            _ask_autoscaler(None)
    total_gpu = sum(n.gpus for n in nodes)
    hint = (" (pass --wait-for-nodes SECONDS to let an autoscaling cluster grow)" if not wait_s
            else "")
    raise ResourceError(
        f"no node can run a trial needing {cpus:g} CPU and {gpus:g} GPU; the cluster has "
        f"{total_gpu:g} GPU in all — {describe(nodes)}{hint}")
