"""The shipped cluster files pass Ray's own offline validator; `validate-cluster` names the bad
key."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import pytest
import yaml

from tune_ptycho.cli import main
from tune_ptycho.cluster import cluster_file
from tune_ptycho.cluster.cluster_file import ClusterConfigError, validate_cluster_file

ROOT = Path(__file__).resolve().parents[1]
AWS = ROOT / "cluster.yaml"
ONPREM = ROOT / "cluster-onprem.yaml"


def _load(p: Path) -> dict:
    return yaml.safe_load(p.read_text())


def _write(tmp_path: Path, name: str, cfg: dict) -> str:
    f = tmp_path / f"{name}.yaml"
    f.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return str(f)


@pytest.mark.parametrize("path", [AWS, ONPREM], ids=["aws", "onprem"])
def test_shipped_cluster_files_pass_rays_validator(path):
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(_load(path)))  # Ray's own check, exactly as `ray up` runs it
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and ours, without a single warning
        validate_cluster_file(path)


def test_aws_cluster_shape():
    cfg = validate_cluster_file(AWS)
    head = cfg["available_node_types"][cfg["head_node_type"]]
    assert head["resources"] == {"CPU": 0, "GPU": 0}
    start = " ".join(cfg["head_start_ray_commands"])
    assert "--num-cpus=0" in start and "--num-gpus=0" in start
    assert "--dashboard-host=127.0.0.1" in start
    workers = [n for k, n in cfg["available_node_types"].items() if k != cfg["head_node_type"]]
    assert workers and all(n["min_workers"] == 0 and n["max_workers"] >= 1 for n in workers)
    assert cfg["idle_timeout_minutes"] > 0
    assert any("ray[default,tune]==2.60.0" in c and "tune-ptycho" in c
               for c in cfg["setup_commands"])


def test_cli_ok_line(capsys):
    assert main(["validate-cluster", str(AWS)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"ok: {AWS}: provider aws, 2 node types") and "max_workers 4" in out
    assert main(["validate-cluster", str(ONPREM)]) == 0
    assert "provider local" in capsys.readouterr().out


def _typo(cfg):
    cfg["setup_comands"] = cfg.pop("setup_commands")


def _node_key(cfg):
    cfg["available_node_types"]["gpu_worker"]["min_worker"] = 1


def _wrong_ray(cfg):
    cfg["setup_commands"] = [c.replace("ray[default,tune]==2.60.0", "ray[default,tune]==2.59.0")
                             for c in cfg["setup_commands"]]


def _open_dashboard(cfg):
    cfg["head_start_ray_commands"] = [c.replace("--dashboard-host=127.0.0.1",
                                                "--dashboard-host=0.0.0.0")
                                      for c in cfg["head_start_ray_commands"]]


def _no_worker_ips(cfg):
    del cfg["provider"]["worker_ips"]


def _node_types_on_local(cfg):
    cfg["available_node_types"] = {"gpu": {"resources": {}, "node_config": {}}}


CASES = [  # (base file, break it, what the message must name)
    (AWS, _typo, ["setup_comands", "did you mean 'setup_commands'"]),
    (AWS, _node_key, ["available_node_types.gpu_worker", "min_worker"]),
    (AWS, _wrong_ray, ["setup_commands[", "ray==2.59.0", "2.60.0"]),
    (AWS, _open_dashboard, ["head_start_ray_commands[", "0.0.0.0"]),
    (ONPREM, _no_worker_ips, ["provider.worker_ips"]),
    (ONPREM, _node_types_on_local, ["available_node_types"]),
]


@pytest.mark.parametrize("base, breaker, named", CASES,
                         ids=[c[1].__name__.strip("_") for c in CASES])
def test_bad_cluster_file_exits_2_naming_the_key(tmp_path, capsys, base, breaker, named):
    cfg = _load(base)
    breaker(cfg)
    f = _write(tmp_path, breaker.__name__.strip("_"), cfg)
    assert main(["validate-cluster", f]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"tune-ptycho: error: {f}: "), err
    for word in named:
        assert word in err, (word, err)
    assert "PANIC" not in err  # Ray's own log line is swallowed; our message stands alone


def test_rays_default_start_command_opens_the_dashboard(tmp_path):
    """Leaving head_start_ray_commands out gives Ray's AWS default, which binds 0.0.0.0."""
    cfg = _load(AWS)
    del cfg["head_start_ray_commands"]
    with pytest.raises(ClusterConfigError, match=r"head_start_ray_commands\[1\] \(Ray's default\)"):
        validate_cluster_file(_write(tmp_path, "default", cfg))


def test_head_that_runs_trials_warns_not_errors(tmp_path, capsys):
    cfg = _load(AWS)
    cfg["head_start_ray_commands"] = [c.replace("--num-cpus=0 ", "")
                                      for c in cfg["head_start_ray_commands"]]
    cfg["available_node_types"]["head"]["resources"] = {}
    f = _write(tmp_path, "busy_head", cfg)
    assert main(["validate-cluster", f]) == 0
    err = capsys.readouterr().err
    assert "warning:" in err and "--num-cpus=0" in err and "RAY_OVERRIDE_RESOURCES" in err


def test_missing_file_and_bad_yaml(tmp_path, capsys):
    assert main(["validate-cluster", str(tmp_path / "nope.yaml")]) == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("cluster_name: [unclosed\n")
    assert main(["validate-cluster", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "no such file" in err and "not valid YAML" in err


def test_fallback_when_rays_private_validator_moves(tmp_path, monkeypatch):
    """Without prepare_config/validate_config: fillout_defaults + jsonschema on ray-schema.json."""
    monkeypatch.setattr(cluster_file, "_ray_validators", lambda: None)
    validate_cluster_file(AWS)
    validate_cluster_file(ONPREM)
    cfg = _load(AWS)
    _typo(cfg)
    with pytest.raises(ClusterConfigError, match="setup_comands"):
        validate_cluster_file(_write(tmp_path, "typo", cfg))
    cfg = _load(ONPREM)
    _no_worker_ips(cfg)
    with pytest.raises(ClusterConfigError, match=r"provider\.worker_ips"):
        validate_cluster_file(_write(tmp_path, "noips", copy.deepcopy(cfg)))


# --- least privilege (SECURITY.md): each unsafe variant is refused with one line ------------

_LOOP = "--dashboard-host=127.0.0.1"


def _cmds(cfg, key, old, new):
    cfg[key] = [c.replace(old, new) for c in cfg[key]]


def _worker(cfg):
    return cfg["available_node_types"]["gpu_worker"]["node_config"]


def _sg_rule(port, cidr="0.0.0.0/0", to=None, proto="tcp"):
    key, item = (("Ipv6Ranges", {"CidrIpv6": cidr}) if ":" in cidr
                 else ("IpRanges", {"CidrIp": cidr}))
    return lambda cfg: cfg["provider"].update(security_group={
        "GroupName": "tune-ptycho",
        "IpPermissions": [{"IpProtocol": proto, "FromPort": port, "ToPort": to or port,
                           key: [item]}]})


def _no_nics(cfg):
    w = _worker(cfg)
    nic = w.pop("NetworkInterfaces")[0]
    w.update(SubnetIds=[nic["SubnetId"]], SecurityGroupIds=nic["Groups"])


UNSAFE = [  # (id, base file, make it unsafe, what the one line must name)
    ("dashboard_all", AWS, lambda c: _cmds(c, "head_start_ray_commands", _LOOP,
                                           "--dashboard-host=0.0.0.0"), ["0.0.0.0", "dashboard"]),
    ("dashboard_lan", AWS, lambda c: _cmds(c, "head_start_ray_commands", _LOOP,
                                           "--dashboard-host=10.0.0.10"), ["10.0.0.10"]),
    ("dashboard_lan_onprem", ONPREM, lambda c: _cmds(
        c, "head_start_ray_commands", _LOOP, "--dashboard-host 10.0.0.10"),
     ["head_start_ray_commands[1]", "10.0.0.10"]),
    ("dashboard_in_bash_c", AWS, lambda c: c["head_start_ray_commands"].append(
        "bash -c 'ray stop; ray start --head --port=6379 --dashboard-host=0.0.0.0'"),
     ["head_start_ray_commands[2]", "0.0.0.0"]),
    ("auth_disabled_start", AWS, lambda c: _cmds(c, "worker_start_ray_commands",
                                                 "RAY_AUTH_MODE=token", "RAY_AUTH_MODE=disabled"),
     ["worker_start_ray_commands[1]", "RAY_AUTH_MODE=disabled"]),
    ("auth_disabled_bashrc", ONPREM, lambda c: _cmds(c, "setup_commands", "RAY_AUTH_MODE=token",
                                                     "RAY_AUTH_MODE=disabled"),
     ["setup_commands[1]", "RAY_AUTH_MODE=disabled"]),
    ("auth_disabled_export", AWS, lambda c: c["setup_commands"].append(
        "export RAY_AUTH_MODE='disabled'"), ["setup_commands[", "RAY_AUTH_MODE=disabled"]),
    ("sg_dashboard_world", AWS, _sg_rule(8265), ["security_group.IpPermissions[0]", "8265",
                                                 "0.0.0.0/0"]),
    ("sg_gcs_world_v6", AWS, _sg_rule(6379, "::/0"), ["6379", "::/0"]),
    ("sg_client_range", AWS, _sg_rule(10000, to=11000), ["10001", "0.0.0.0/0"]),
    ("sg_agent", AWS, _sg_rule(52365), ["52365", "0.0.0.0/0"]),
    ("sg_all_traffic", AWS, _sg_rule(-1, proto="-1"), ["every port", "0.0.0.0/0"]),
    ("sg_ssh_world", AWS, _sg_rule(22), ["port 22 (22: SSH)", "0.0.0.0/0"]),
    ("rays_default_group", AWS, lambda c: c["available_node_types"]["head"]["node_config"].pop(
        "SecurityGroupIds"), ["available_node_types.head.node_config", "SSH (22) to 0.0.0.0/0"]),
    ("no_imdsv2", AWS, lambda c: _worker(c).pop("MetadataOptions"),
     ["gpu_worker.node_config.MetadataOptions", "IMDSv2"]),
    ("imdsv1_head", AWS, lambda c: c["available_node_types"]["head"]["node_config"].update(
        MetadataOptions={"HttpTokens": "optional"}), ["head.node_config.MetadataOptions"]),
    ("worker_public_ip", AWS, lambda c: _worker(c)["NetworkInterfaces"][0].update(
        AssociatePublicIpAddress=True), ["gpu_worker.node_config", "public IPs"]),
    ("worker_subnet_maps_public", AWS, _no_nics, ["gpu_worker.node_config", "public IPs"]),
    ("no_internal_ips", AWS, lambda c: c["provider"].pop("use_internal_ips"),
     ["provider.use_internal_ips"]),
    ("default_profile", AWS, lambda c: _worker(c).update(IamInstanceProfile={
        "Arn": "arn:aws:iam::123456789012:instance-profile/ray-autoscaler-v1"}),
     ["gpu_worker.node_config.IamInstanceProfile", "ray-autoscaler-v1"]),
    ("default_profile_by_name", AWS, lambda c: _worker(c).update(
        IamInstanceProfile={"Name": "ray-autoscaler-v1"}), ["ray-autoscaler-v1"]),
    ("no_worker_profile", AWS, lambda c: _worker(c).pop("IamInstanceProfile"),
     ["gpu_worker.node_config.IamInstanceProfile", "missing"]),
]


@pytest.mark.parametrize("base, breaker, named", [u[1:] for u in UNSAFE],
                         ids=[u[0] for u in UNSAFE])
def test_unsafe_cluster_file_is_refused_in_one_line(tmp_path, capsys, base, breaker, named):
    cfg = _load(base)
    breaker(cfg)
    f = _write(tmp_path, "unsafe", cfg)
    assert main(["validate-cluster", f]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"tune-ptycho: error: {f}: "), err
    assert len(err.strip().splitlines()) == 1, err
    for word in named:
        assert word in err, (word, err)


def test_shipped_aws_file_is_least_privilege():
    import json

    cfg = _load(AWS)
    assert cfg["provider"]["use_internal_ips"] is True
    w = _worker(cfg)
    assert "ray-autoscaler-v1" not in w["IamInstanceProfile"]["Arn"]
    assert all(n["AssociatePublicIpAddress"] is False for n in w["NetworkInterfaces"])
    for node in cfg["available_node_types"].values():
        assert node["node_config"]["MetadataOptions"] == {"HttpTokens": "required"}
    text = AWS.read_text()
    assert "docs/iam-worker-policy.json" in text and "<ADMIN_CIDR>" in text
    policy = json.loads((ROOT / "docs" / "iam-worker-policy.json").read_text())
    for st in policy["Statement"]:
        actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        assert all(a.startswith("s3:") and "*" not in a for a in actions), st
        res = st["Resource"]
        assert res.endswith("/tune-ptycho-runs/*") or st["Condition"]["StringLike"]["s3:prefix"]


@pytest.mark.parametrize("path", [AWS, ONPREM], ids=["aws", "onprem"])
def test_shipped_commands_parse_whole(path):
    """A `` # `` inside an unquoted YAML command starts a YAML comment and cuts the command."""
    import subprocess

    cfg = _load(path)
    assert any("export RAY_AUTH_MODE=token' >> ~/.bashrc" in c for c in cfg["setup_commands"])
    for key in cluster_file.COMMAND_KEYS:
        for cmd in cfg.get(key) or []:
            subprocess.run(["bash", "-n", "-c", cmd], check=True)
