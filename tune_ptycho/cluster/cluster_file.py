"""Offline checks of a ``ray up`` cluster file: Ray's own validator plus this project's rules.

``validate_cluster_file(path)`` runs what ``ray up`` runs before it touches a machine —
``prepare_config`` (provider defaults merged in; a local provider becomes its single node type)
then ``validate_config`` (Ray's JSON schema and cross-field checks) — with no cloud, SSH or boto3.
Both functions are private to Ray, so if they move the check falls back to ``fillout_defaults``
plus ``jsonschema`` against the ``ray-schema.json`` shipped in the wheel.

On top of Ray's rules:

* errors: a ``ray==X`` in any command that is not the Ray this package pins (the cluster must run
  the Ray version of the laptop and of the driver); a dashboard bound to anything but loopback
  (``--dashboard-host=0.0.0.0`` or a host address, also inside a ``bash -c '...'``: the
  dashboard runs code for whoever reaches it; use ``ray dashboard cluster.yaml``, an SSH
  tunnel); ``RAY_AUTH_MODE=disabled`` anywhere in the file; a local provider without
  ``head_ip`` and ``worker_ips`` (or ``coordinator_address``);
* errors on AWS (least privilege, SECURITY.md): a security-group rule open to ``0.0.0.0/0`` or
  ``::/0``; a node type without its own security group (Ray's default group opens SSH to the
  world); a node without IMDSv2 (``MetadataOptions: {HttpTokens: required}``); a worker with a
  public IP (it needs ``NetworkInterfaces`` with ``AssociatePublicIpAddress: false`` and
  ``provider.use_internal_ips``); a worker without an ``IamInstanceProfile`` or with Ray's
  ``ray-autoscaler-v1`` (EC2 and S3 full access);
* warnings: a head that would run trials (no ``--num-cpus=0``, or on a cloud provider head
  resources that do not say ``CPU: 0``: the autoscaler's ``RAY_OVERRIDE_RESOURCES`` wins over the
  flag); setup commands that install neither this package nor Ray.

Every problem is a :class:`ClusterConfigError` naming the file and the offending key.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import os
import re
import shlex
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from ptycho_model.errors import InputError, closest

COMMAND_KEYS = ("initialization_commands", "setup_commands", "head_setup_commands",
                "worker_setup_commands", "head_start_ray_commands", "worker_start_ray_commands")
NODE_COMMAND_KEYS = ("initialization_commands", "worker_setup_commands")
_RAY_PIN = re.compile(r"""(?<![\w.-])ray(?:\[[^\]]*\])?\s*==\s*([0-9][\w.+-]*)""")
_OPEN_HOSTS = {"0.0.0.0", "::", "[::]", "*"}
_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}
# --dashboard-host VALUE / --dashboard-host=VALUE anywhere, also inside a quoted ``bash -c``.
_DASHBOARD_HOST = re.compile(r"""--dashboard-host(?:=|\s+)\\?['"]?([^\s'"\\;)&|]+)""")
_AUTH_DISABLED = re.compile(r"""RAY_AUTH_MODE\s*=\s*\\?['"]?disabled""", re.I)
_WORLD = {"0.0.0.0/0", "::/0"}
_RAY_PORTS = {22: "SSH", 6379: "the GCS", 8265: "the dashboard and job API",
              10001: "the Ray client server", 52365: "the dashboard agent",
              8076: "the object manager", 8080: "Ray's metrics"}
_DEFAULT_PROFILE = "ray-autoscaler-v1"


class ClusterConfigError(InputError):
    """A cluster file that Ray (or this project) would refuse: exit code 2."""


class ClusterConfigWarning(UserWarning):
    """Legal, but probably not what you want (printed by ``validate-cluster``)."""


def pinned_ray_version() -> str:
    """The Ray version this package pins (pyproject's ``ray[...]==X``), else the installed one."""
    try:
        for req in metadata.requires("tune-ptycho") or []:
            m = _RAY_PIN.search(req.split(";")[0])
            if m:
                return m.group(1)
    except metadata.PackageNotFoundError:
        pass
    import ray

    return ray.__version__


# --- Ray's validator, and the fallback ------------------------------------------------------

def _ray_validators():
    """``(prepare_config, validate_config)`` from Ray, or None when they moved."""
    try:
        from ray.autoscaler._private.util import prepare_config, validate_config
    except (ImportError, AttributeError):
        return None
    return prepare_config, validate_config


@contextlib.contextmanager
def _quiet_ray():
    """Ray's config helpers log INFO lines and print a PANIC line before raising: keep the
    terminal for our own message."""
    loggers = [logging.getLogger(n) for n in ("ray.autoscaler", "ray")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL + 1)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        for lg, lv in zip(loggers, levels, strict=True):
            lg.setLevel(lv)


def _schema() -> dict[str, Any]:
    import ray.autoscaler

    with open(os.path.join(os.path.dirname(ray.autoscaler.__file__), "ray-schema.json")) as f:
        return json.load(f)


def _fallback_prepare(config: dict[str, Any]) -> dict[str, Any]:
    try:
        from ray.autoscaler._private.util import fillout_defaults
    except (ImportError, AttributeError):
        return copy.deepcopy(config)
    if config.get("provider", {}).get("type") == "local":
        return copy.deepcopy(config)  # local defaults add node types a local provider refuses
    return fillout_defaults(config)


def _fallback_validate(config: dict[str, Any]) -> None:
    import jsonschema

    jsonschema.validate(config, _schema())


def _where(err) -> str:
    """The jsonschema error's location as a key path: ``available_node_types.gpu_worker``."""
    parts = [str(p) for p in getattr(err, "absolute_path", err.path)]
    return ".".join(parts) if parts else "(top level)"


def _hint(err) -> str:
    """For an unknown key, the closest known one."""
    if getattr(err, "validator", None) != "additionalProperties":
        return ""
    m = re.search(r"\('([^']+)'", err.message)
    allowed = list((err.schema or {}).get("properties", {}))
    if not m or not allowed:
        return ""
    extra = closest(m.group(1), allowed)
    return extra or f" (allowed: {', '.join(allowed)})"


def _ray_check(path: str, raw: dict[str, Any]) -> dict[str, Any]:
    import jsonschema

    fns = _ray_validators()
    prepare, validate = fns if fns else (_fallback_prepare, _fallback_validate)
    try:
        with _quiet_ray():
            prepared = prepare(copy.deepcopy(raw))
            validate(prepared)
    except jsonschema.ValidationError as e:
        raise ClusterConfigError(f"{path}: {_where(e)}: {e.message}{_hint(e)}") from None
    except ClusterConfigError:
        raise
    except KeyError as e:
        raise ClusterConfigError(f"{path}: missing key {e} (Ray's validator needs it)") from None
    except Exception as e:  # noqa: BLE001 - ValueError, RuntimeError, click's ClickException
        msg = getattr(e, "message", None) or str(e) or type(e).__name__
        raise ClusterConfigError(f"{path}: {msg}") from None
    return prepared


# --- this project's rules --------------------------------------------------------------------

def _commands(cfg: dict[str, Any]):
    """``(key, command)`` for every shell command of the config, keys as ``setup_commands[2]``."""
    for key in COMMAND_KEYS:
        for i, cmd in enumerate(cfg.get(key) or []):
            yield f"{key}[{i}]", str(cmd)
    for name, node in (cfg.get("available_node_types") or {}).items():
        for key in NODE_COMMAND_KEYS:
            for i, cmd in enumerate((node or {}).get(key) or []):
                yield f"available_node_types.{name}.{key}[{i}]", str(cmd)


def _flag_values(cmd: str, flag: str) -> list[str]:
    try:
        words = shlex.split(cmd, comments=False)
    except ValueError:
        words = cmd.split()
    out = []
    for i, w in enumerate(words):
        w = w.rstrip(";")
        if w == flag and i + 1 < len(words):
            out.append(words[i + 1].rstrip(";"))
        elif w.startswith(flag + "="):
            out.append(w.split("=", 1)[1])
    return out


def _dashboard_hosts(cmd: str) -> list[str]:
    """Every ``--dashboard-host`` value of a command, also one nested in a quoted string."""
    hosts = [h.strip("'\"") for h in _flag_values(cmd, "--dashboard-host")]
    hosts += _DASHBOARD_HOST.findall(cmd)
    return list(dict.fromkeys(h for h in hosts if h))


def _is_loopback_host(host: str) -> bool:
    host = host.strip("'\"").lower()
    return host in _LOOPBACK_HOSTS or re.fullmatch(r"127(?:\.\d{1,3}){3}", host) is not None


def _strings(node: Any, key: str = ""):
    """``(key path, text)`` for every string of a parsed YAML (keys as ``a.b[2].c``)."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _strings(v, f"{key}.{k}" if key else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _strings(v, f"{key}[{i}]")
    elif isinstance(node, str):
        yield key or "(top level)", node


def _ports(rule: dict[str, Any]) -> str:
    proto = str(rule.get("IpProtocol", "tcp"))
    lo, hi = rule.get("FromPort", -1), rule.get("ToPort", rule.get("FromPort", -1))
    if proto == "-1" or lo in (-1, None):
        return "every port (" + ", ".join(f"{p}: {n}" for p, n in _RAY_PORTS.items()) + ")"
    named = [f"{p}: {n}" for p, n in _RAY_PORTS.items() if int(lo) <= p <= int(hi)]
    span = f"port {lo}" if lo == hi else f"ports {lo}-{hi}"
    return span + (f" ({', '.join(named)})" if named else "")


def _aws_check(path: str, cfg: dict[str, Any]) -> None:
    """Least privilege on AWS: no port open to the world, IMDSv2, private workers with a scoped
    instance profile."""
    provider = cfg.get("provider") or {}
    rules = (provider.get("security_group") or {}).get("IpPermissions") or []
    for i, rule in enumerate(rules):
        ranges = [r.get("CidrIp") for r in rule.get("IpRanges") or []]
        ranges += [r.get("CidrIpv6") for r in rule.get("Ipv6Ranges") or []]
        for cidr in ranges:
            if cidr in _WORLD:
                raise ClusterConfigError(
                    f"{path}: provider.security_group.IpPermissions[{i}]: opens {_ports(rule)} "
                    f"to {cidr}; allow your admin CIDR for SSH only and reach Ray through SSH "
                    "tunnels")
    head = cfg.get("head_node_type")
    for name, node in (cfg.get("available_node_types") or {}).items():
        nc = (node or {}).get("node_config") or {}
        where = f"available_node_types.{name}.node_config"
        if "LaunchTemplate" in nc:
            continue  # the template holds these settings; not readable offline
        nics = nc.get("NetworkInterfaces") or []
        if not nc.get("SecurityGroupIds") and not any(n.get("Groups") for n in nics):
            raise ClusterConfigError(
                f"{path}: {where}: no SecurityGroupIds: Ray then creates its default group, "
                "which opens SSH (22) to 0.0.0.0/0; name a group whose SSH rule allows only your "
                "admin CIDR (see cluster.yaml)")
        if str((nc.get("MetadataOptions") or {}).get("HttpTokens", "")).lower() != "required":
            raise ClusterConfigError(
                f"{path}: {where}.MetadataOptions: IMDSv2 is not required; set "
                "MetadataOptions: {HttpTokens: required} (IMDSv1 hands the instance's "
                "credentials to any request forged through the node)")
        if name == head:
            continue
        if not nics or any(n.get("AssociatePublicIpAddress", True) is not False for n in nics):
            raise ClusterConfigError(
                f"{path}: {where}: workers get public IPs; give them NetworkInterfaces with "
                "AssociatePublicIpAddress: false (and provider.use_internal_ips: true)")
        if not provider.get("use_internal_ips"):
            raise ClusterConfigError(
                f"{path}: provider.use_internal_ips: not true, so the head reaches the workers "
                "on public IPs; set it (and use_external_head_ip: true for your laptop)")
        profile = nc.get("IamInstanceProfile") or {}
        ident = str(profile.get("Arn") or profile.get("Name") or "")
        if not ident:
            raise ClusterConfigError(
                f"{path}: {where}.IamInstanceProfile: missing; workers need a profile limited "
                "to the results prefix (docs/iam-worker-policy.json)")
        if ident.rsplit("/", 1)[-1] == _DEFAULT_PROFILE:
            raise ClusterConfigError(
                f"{path}: {where}.IamInstanceProfile: {_DEFAULT_PROFILE} is Ray's head profile "
                "(EC2 and S3 full access); give workers one limited to the results prefix "
                "(docs/iam-worker-policy.json)")


def _is_head_start(cmd: str) -> bool:
    return re.search(r"\bray\s+start\b", cmd) is not None and "--head" in cmd


def _local_provider_check(path: str, provider: dict[str, Any]) -> None:
    """Ray's prepare_config aborts on these with a message that names no key: check first."""
    if provider.get("type") != "local":
        return
    if "coordinator_address" not in provider:
        for key in ("head_ip", "worker_ips"):
            if key not in provider:
                raise ClusterConfigError(
                    f"{path}: provider.{key}: missing; a local provider needs head_ip and "
                    "worker_ips (or a coordinator_address)")


def _project_check(path: str, raw: dict[str, Any], cfg: dict[str, Any]) -> None:
    provider = cfg.get("provider") or {}
    pin = pinned_ray_version()
    for key, cmd in _commands(cfg):
        for version in _RAY_PIN.findall(cmd):
            if version != pin:
                raise ClusterConfigError(
                    f"{path}: {key}: installs ray=={version}, but tune-ptycho pins "
                    f"ray=={pin}: the cluster, the driver and your laptop must run the same Ray")
        for host in _dashboard_hosts(cmd):
            if not _is_loopback_host(host):
                where = key if key in _keys_written(raw) else f"{key} (Ray's default)"
                reach = ("every network" if host in _OPEN_HOSTS
                         else f"every host that reaches {host}")
                raise ClusterConfigError(
                    f"{path}: {where}: --dashboard-host={host} opens the dashboard (which runs "
                    f"jobs for whoever reaches it) to {reach}; keep it on 127.0.0.1 and use "
                    "`ray dashboard CLUSTER.yaml`, an SSH tunnel")
    for key, text in _strings(raw):
        if _AUTH_DISABLED.search(text):
            raise ClusterConfigError(
                f"{path}: {key}: RAY_AUTH_MODE=disabled lets every client that reaches the "
                "cluster run code without a token; keep RAY_AUTH_MODE=token")
    if provider.get("type") == "aws":
        _aws_check(path, cfg)

    head_cmds = [c for k, c in _commands(cfg) if k.startswith("head_start_ray_commands")]
    starts = [c for c in head_cmds if _is_head_start(c)]
    if starts and not any("0" in _flag_values(c, "--num-cpus") for c in starts):
        _warn(f"{path}: head_start_ray_commands: `ray start --head` has no --num-cpus=0, so "
              "trials may run on the head, beside the driver and the GCS")
    head_type = cfg.get("head_node_type")
    if provider.get("type") not in ("local", None) and head_type:
        res = ((cfg.get("available_node_types") or {}).get(head_type) or {}).get("resources")
        if not res or res.get("CPU", None) != 0:
            _warn(f"{path}: available_node_types.{head_type}.resources: no \"CPU\": 0; the "
                  "autoscaler sets the head's resources from it (RAY_OVERRIDE_RESOURCES), which "
                  "overrides --num-cpus=0, so trials may run on the head")

    setup = " ".join(c for k, c in _commands(cfg) if "setup_commands" in k
                     or k.startswith("initialization_commands"))
    if "tune-ptycho" not in setup and "tune_ptycho" not in setup and not _RAY_PIN.search(setup):
        _warn(f"{path}: setup_commands: install neither tune-ptycho nor ray=={pin}; the nodes "
              "will run whatever their image holds")


def _keys_written(raw: dict[str, Any]) -> set[str]:
    return {k for k, _ in _commands(raw)}


def _warn(msg: str) -> None:
    warnings.warn(msg, ClusterConfigWarning, stacklevel=3)


# --- entry point -----------------------------------------------------------------------------

def validate_cluster_file(path: str | Path) -> dict[str, Any]:
    """Check a cluster YAML as ``ray up`` would (offline) plus this project's rules.

    Returns the prepared config (defaults filled in). Raises :class:`ClusterConfigError`;
    issues :class:`ClusterConfigWarning` for legal but doubtful settings."""
    p = Path(path)
    name = str(path)
    if not p.is_file():
        what = "a directory, not a cluster file" if p.is_dir() else "no such file"
        raise ClusterConfigError(f"{name}: {what}")
    try:
        raw = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise ClusterConfigError(f"{name}: not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise ClusterConfigError(f"{name}: must hold a mapping (cluster_name, provider, ...)")
    for key in ("cluster_name", "provider"):
        if key not in raw:
            raise ClusterConfigError(f"{name}: {key}: missing (required by Ray)")
    if not isinstance(raw["provider"], dict) or "type" not in raw["provider"]:
        raise ClusterConfigError(f"{name}: provider.type: missing (aws, gcp, azure, local, ...)")
    _local_provider_check(name, raw["provider"])
    cfg = _ray_check(name, raw)
    _project_check(name, raw, cfg)
    return cfg


def summary(path: str | Path, cfg: dict[str, Any]) -> str:
    """One line: ``ok: cluster.yaml: 2 node types (head: m5.2xlarge, ...), max_workers 4``."""
    types = cfg.get("available_node_types") or {}
    head = cfg.get("head_node_type")
    provider = cfg.get("provider") or {}
    if provider.get("type") == "local" and "worker_ips" in provider:
        return (f"ok: {path}: provider local, head {provider.get('head_ip')} + "
                f"{len(provider['worker_ips'])} worker ips, 1 node type, max_workers "
                f"{cfg.get('max_workers', '?')}, ray=={pinned_ray_version()}")
    parts = []
    for name, node in types.items():
        node = node or {}
        inst = (node.get("node_config") or {}).get("InstanceType")
        role = ("head node" if name == head
                else f"{node.get('min_workers', 0)}-{node.get('max_workers', '?')} workers")
        parts.append(f"{name}: {role}" + (f", {inst}" if inst else ""))
    return (f"ok: {path}: provider {provider.get('type', '?')}, {len(types)} node types "
            f"({'; '.join(parts)}), max_workers {cfg.get('max_workers', '?')}, "
            f"ray=={pinned_ray_version()}")


__all__ = [
    "ClusterConfigError",
    "ClusterConfigWarning",
    "pinned_ray_version",
    "summary",
    "validate_cluster_file",
]
