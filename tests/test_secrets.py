"""No secret in a URL the service takes (``storage/study_storage``, ``storage/mlflow_uri``, an
``s3://`` ``storage/path``): refused with exit 2 before Ray starts, the message naming the field
and where the secret goes instead, never the secret itself."""

from __future__ import annotations

import pytest

from tune_ptycho.cli import main
from tune_ptycho.exits import EXIT_BAD_INPUT
from tune_ptycho.secrets import redact, secret_in
from tune_ptycho.spec import build_spec

RUN = ["run", "--no-dashboard", "--no-progress", "--preset", "tiny", "--space", "stage_a"]
JOURNAL = ["--study-storage", "journal:///tmp/tp-never-written/study.log"]

PG = ("~/.pgpass", "PGPASSWORD")
MLFLOW = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
AWS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE")


@pytest.mark.parametrize("flags, field, secret, where", [
    (["--study-storage", "postgresql://optuna:Zq1-userinfo@db.example/optuna"],
     "storage/study_storage", "Zq1-userinfo", PG),
    (["--study-storage", "postgresql+psycopg2://optuna:Zq2/odd?pw@db:5432/optuna?sslmode=require"],
     "storage/study_storage", "Zq2/odd?pw", PG),
    (["--study-storage", "postgresql://optuna@db/optuna?password=Zq3-query"],
     "storage/study_storage", "Zq3-query", PG),
    (["--study-storage", "postgresql://optuna@db/optuna?sslmode=require&SSLPassword=Zq4-ssl"],
     "storage/study_storage", "Zq4-ssl", PG),
    (["--study-storage", "mysql://optuna@db/optuna?PWD=Zq5-upper"],
     "storage/study_storage", "Zq5-upper", ()),
    (["--mlflow-uri", "http://alice:Zq6-mlflow@mlflow.example:5000"],
     "storage/mlflow_uri", "Zq6-mlflow", MLFLOW),
    (["--mlflow-uri", "https://mlflow.example/?token=Zq7-token"],
     "storage/mlflow_uri", "Zq7-token", MLFLOW),
    (["--mlflow-uri", "https://mlflow.example/?Authorization=Zq8-bearer"],
     "storage/mlflow_uri", "Zq8-bearer", MLFLOW),
    (["--mlflow-uri", "postgresql://mlflow:Zq9-pg@db/mlflow"], "storage/mlflow_uri",
     "Zq9-pg", PG),
    (["--storage", "s3://AKIAFAKE:Zq10-s3@bucket/runs", *JOURNAL], "storage/path", "Zq10-s3", AWS),
    (["--storage", "s3://bucket/runs?access_key=AKIAFAKE&secret_key=Zq11-s3", *JOURNAL],
     "storage/path", "Zq11-s3", AWS),
    (["--storage", "s3://bucket/runs?api_key=Zq12-s3"], "storage/path", "Zq12-s3", AWS),
    (["--set", "storage/study_storage=postgresql://o@db/o?secret=Zq13-set"],
     "storage/study_storage", "Zq13-set", PG),
])
def test_a_url_with_a_secret_exits_2_before_ray_without_echoing_it(
        flags, field, secret, where, tmp_path, monkeypatch, capsys):
    import ray

    def no_ray(*a, **k):
        raise AssertionError("Ray started before the URL was refused")

    monkeypatch.setattr(ray, "init", no_ray)
    storage = [] if "--storage" in flags else ["--storage", str(tmp_path)]
    assert main([*RUN, *storage, *flags]) == EXIT_BAD_INPUT
    cap = capsys.readouterr()
    assert secret not in cap.err + cap.out
    assert f"{field}=" in cap.err and "***" in cap.err
    assert "leave it out of the URL" in cap.err
    for word in where:
        assert word in cap.err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("flags", [
    ["--study-storage", "postgresql://optuna@db.example:5432/optuna"],
    ["--study-storage", "postgresql://optuna@db/optuna?sslmode=verify-full&sslkey=/k/client.key"
                        "&sslrootcert=/k/root.crt"],
    ["--study-storage", "postgresql://optuna:@db/optuna"],  # an empty password
    ["--study-storage", "sqlite:////tmp/tp-study.db"],
    ["--study-storage", "journal:///tmp/tp-never-written/study.log"],
    ["--mlflow-uri", "http://mlflow.example:5000"],
    ["--mlflow-uri", "http://mlflow.example:5000/a@b"],  # an '@' in the path, after a port
    ["--mlflow-uri", "databricks"],
    ["--storage", "s3://bucket/runs?region=us-east-1&endpoint_override=localhost:9000", *JOURNAL],
])
def test_urls_without_a_secret_pass(flags):
    pairs = dict(zip(flags[::2], flags[1::2], strict=True))
    path = {"--study-storage": "storage/study_storage", "--mlflow-uri": "storage/mlflow_uri",
            "--storage": "storage/path"}
    spec = build_spec(flags={path[k]: v for k, v in pairs.items()})
    assert spec.storage.study_storage == pairs.get("--study-storage", "")
    for url in pairs.values():
        assert secret_in(url) == [] and redact(url) == url


def test_redact_masks_every_secret_and_keeps_the_rest():
    assert redact("postgresql://optuna:s3cret@host/db") == "postgresql://optuna:***@host/db"
    assert redact("http://u:p@h:5000/x?token=t&run=3#f") == "http://u:***@h:5000/x?token=***&run=3#f"
    assert redact("mysql://u@h/db?pwd=x;charset=utf8") == "mysql://u@h/db?pwd=***;charset=utf8"
    assert redact("s3://A:B@bucket/p") == "s3://A:***@bucket/p"
    assert redact("") == ""


def test_a_study_storage_that_is_not_a_url_is_shown_redacted(tmp_path, capsys):
    assert main([*RUN, "--storage", str(tmp_path), "--study-storage", "not a url"]) == 2
    assert "storage/study_storage='not a url' is not a database URL" in capsys.readouterr().err


def test_aws_keys_are_kept_from_the_trials_of_a_local_experiment_only(tmp_path):
    from ray.tune.execution import class_cache

    from tune_ptycho.secrets import AWS_KEYS, aws_keys_kept_from_trials

    before = set(class_cache.ENV_VARS_TO_PROPAGATE)
    assert set(AWS_KEYS) <= before  # what Tune 2.60 hands its trials
    with aws_keys_kept_from_trials(str(tmp_path / "exp")):
        assert not set(AWS_KEYS) & class_cache.ENV_VARS_TO_PROPAGATE
        assert class_cache.ENV_VARS_TO_PROPAGATE == before - set(AWS_KEYS)
    assert class_cache.ENV_VARS_TO_PROPAGATE == before
    with pytest.raises(KeyboardInterrupt), aws_keys_kept_from_trials(str(tmp_path)):
        raise KeyboardInterrupt
    assert class_cache.ENV_VARS_TO_PROPAGATE == before
    with aws_keys_kept_from_trials("s3://bucket/runs/exp"):  # its trials upload checkpoints
        assert class_cache.ENV_VARS_TO_PROPAGATE == before
