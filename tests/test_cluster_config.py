"""The shipped cluster files pass Ray's own offline validator; `validate-cluster` names the bad
key."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import pytest
import yaml

from tune_ptycho.cluster import cluster_file
from tune_ptycho.cli import main
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
