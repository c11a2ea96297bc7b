"""Joining Ray, and refusing per-trial requests no node can satisfy (Tune would wait forever)."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

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


# Ray's own switch for a one-machine Ray: with it off, the node IP is loopback, and the GCS, the
# raylet, the agents, the metrics endpoints and every worker bind to 127.0.0.1 instead of
# 0.0.0.0 / the host's address (Ray's default on macOS and Windows). Read by the driver
# (ray_constants.ENABLE_RAY_CLUSTER, evaluated at import) and by every process Ray starts (env).
_LOCAL_ONLY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
AUTH_DISABLED_WARNING = ("warning: RAY_AUTH_MODE=disabled: the local Ray accepts clients without "
                         "a token")


@contextlib.contextmanager
def _loopback_only():
    """Start the embedded Ray on loopback only; restored afterwards, so that a later
    ``ray.init(address=...)`` in this process still finds its own routable address."""
    from ray._private import ray_constants

    saved_env = os.environ.get(_LOCAL_ONLY_ENV)
    saved_const = ray_constants.ENABLE_RAY_CLUSTER
    os.environ[_LOCAL_ONLY_ENV] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved_const
        if saved_env is None:
            os.environ.pop(_LOCAL_ONLY_ENV, None)
        else:
            os.environ[_LOCAL_ONLY_ENV] = saved_env


def token_paths() -> list[Path]:
    """Ray's token file (``~/.ray/auth_token``, created 0644 by ``ray.init`` when token auth is
    on) and ``RAY_AUTH_TOKEN_PATH`` if set."""
    paths = [Path.home() / ".ray" / "auth_token"]
    custom = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if custom:
        paths.append(Path(custom).expanduser())
    return paths


def protect_token() -> None:
    """Token file 0600; ``~/.ray`` 0700 (only the default folder: a custom path's folder is the
    user's)."""
    default = Path.home() / ".ray"
    for path in token_paths():
        try:
            if path.is_file():
                os.chmod(path, 0o600)
            if path.parent == default and default.is_dir():
                os.chmod(default, 0o700)
        except OSError as e:  # not ours (a shared HOME): say so, never fail the study for it
            print(f"warning: cannot restrict {path}: {e.strerror}", file=sys.stderr, flush=True)


def connect(address: str | None, dashboard: bool, num_cpus: int | None = None,
            num_gpus: int | None = None) -> str | None:
    """Join the cluster at ``address`` (or ``RAY_ADDRESS``, as under ``ray job submit``), else start
    an embedded local Ray bound to loopback only, with the dashboard on 127.0.0.1 and Ray's token
    auth (its default). Returns the dashboard URL if known."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    if ray.is_initialized():
        return None
    if address and address != "local":  # "local": start one, as ray.init does
        ctx = ray.init(address=address, log_to_driver=False)
    else:
        kwargs = dict(address="local", num_cpus=num_cpus, num_gpus=num_gpus, log_to_driver=False)
        if dashboard:
            kwargs.update(include_dashboard=True, dashboard_host="127.0.0.1")
        else:
            kwargs.update(include_dashboard=False)
        if os.environ.get("RAY_AUTH_MODE", "").strip().lower() == "disabled":
            print(AUTH_DISABLED_WARNING, file=sys.stderr, flush=True)
        with _loopback_only():
            ctx = ray.init(**kwargs)
        protect_token()
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
