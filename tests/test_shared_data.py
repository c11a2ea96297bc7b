"""A shared experiment is data, never code (issue 27, items 1, 3, 7 and 8).

Reading a copied or downloaded experiment runs nothing from it: upstream's pickled ``_metadata``
goes through an unpickler that admits only numpy's array reconstruction, a dataset entry or
cache the experiment names is read only inside the user's own cache, an S3 key never writes
outside its download folder, ``analyze`` opens only the experiment's own study (read-only), and
a bad file ends in exit 2 with one line, before Ray starts.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pathlib
import pickle
import shutil
import uuid
import zipfile
from pathlib import Path

import numpy as np
import pytest

from ptycho_model.npz_io import METADATA_KEY, _read_metadata, load_datasets
from ptycho_model.splits import DataError
from tune_ptycho.cli import main

from conftest import S3_BUCKET, s3_env

# -- bad inputs: exit 2, one line, no Ray (first in the file: before any test starts Ray) --------


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("tune-ptycho: error:"), err
    assert len(err.splitlines()) == 1, err
    return err


def test_a_probe_that_is_not_an_npz_is_refused_before_ray(tmp_path, capsys, monkeypatch):
    import ray

    before = ray.is_initialized()

    def no_ray(*a, **k):
        raise AssertionError("ray.init was called")

    monkeypatch.setattr(ray, "init", no_ray)
    text = tmp_path / "probe.txt"
    text.write_text("root:x:0:0:root:/root:/bin/bash\n")
    assert main(["run", "--no-dashboard", "--storage", str(tmp_path / "runs"),
                 "--set", f"data/probe={text}"]) == 2
    err = _one_line_error(capsys)
    assert "data/probe" in err and str(text) in err
    npz = tmp_path / "other.npz"
    np.savez(npz, notprobe=np.ones((4, 4), np.complex64))
    assert main(["run", "--no-dashboard", "--storage", str(tmp_path / "runs"),
                 "--set", f"data/probe={npz}"]) == 2
    assert "probeGuess" in _one_line_error(capsys)
    assert ray.is_initialized() == before
    assert not (tmp_path / "runs").exists()


def test_diagnose_of_a_non_checkpoint_exits_2(tmp_path, capsys):
    text = tmp_path / "notes.txt"
    text.write_text("hello world\n")
    assert main(["diagnose", str(text)]) == 2
    assert str(text) in _one_line_error(capsys)
    state = tmp_path / "state.pt"
    state.write_bytes(b"PK\x03\x04 garbage" * 10)
    assert main(["diagnose", str(state)]) == 2
    assert str(state) in _one_line_error(capsys)


# -- upstream's pickled _metadata ---------------------------------------------------------------

class _Touch:
    """Unpickled, creates the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


class _System:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _npz_with_raw_metadata(path: Path, payload: bytes) -> Path:
    """An NPZ whose ``_metadata.npy`` is a 0-d object-array header followed by ``payload``."""
    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        head, {"descr": "|O", "fortran_order": False, "shape": ()})
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{METADATA_KEY}.npy", np.lib.format.magic(1, 0) + head.getvalue() + payload)
    return path


def _read(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as npz:
        return _read_metadata(npz, path)


def test_upstream_pickled_metadata_still_loads(tmp_path):
    meta = {"physics_parameters": {"N": 32}, "additional_parameters": {"split": "test"}}
    path = tmp_path / "up.npz"
    np.savez(path, _metadata=np.array(json.dumps(meta), dtype=object))
    assert _read(path) == meta


@pytest.mark.parametrize("kind", ["touch-in-array", "system-in-array", "bare-system",
                                  "bare-exec"])
def test_a_crafted_metadata_pickle_runs_nothing(tmp_path, kind):
    marker = tmp_path / f"MARKER-{kind}"
    path = tmp_path / "evil.npz"
    if kind == "touch-in-array":
        np.savez(path, _metadata=np.array(_Touch(marker), dtype=object))
    elif kind == "system-in-array":
        np.savez(path, _metadata=np.array(_System(marker), dtype=object))
    elif kind == "bare-system":
        _npz_with_raw_metadata(path, pickle.dumps(_System(marker)))
    else:
        code = f"open({str(marker)!r}, 'w').close()"
        payload = b"cbuiltins\nexec\n(V" + code.encode() + b"\ntR."  # exec(code)
        _npz_with_raw_metadata(path, payload)
    with pytest.raises(DataError) as info:
        _read(path)
    assert "evil.npz" in str(info.value) and "_metadata" in str(info.value)
    assert not marker.exists()


def _evil_entry(real: Path, dest: Path, marker: Path) -> Path:
    """A copy of the dataset cache entry ``real`` whose NPZs carry a marker-writing pickled
    ``_metadata``, with a matching manifest (so only the unpickler stands in the way)."""
    shutil.copytree(real, dest)
    files = {}
    for npz in sorted(dest.glob("*.npz")):
        with np.load(npz, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files if k != METADATA_KEY}
        np.savez(npz, **arrays, _metadata=np.array(_Touch(marker), dtype=object))
        files[npz.name] = hashlib.sha256(npz.read_bytes()).hexdigest()
    man = json.loads((dest / "manifest.json").read_text())
    man["files"] = files
    (dest / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(DataError):
        load_datasets(dest)  # the restricted unpickler refuses it
    assert not marker.exists()
    return dest


@pytest.mark.parametrize("where", ["outside", "inside"])
def test_analyze_never_unpickles_a_crafted_cache_entry(tiny_experiment, tmp_path, capsys, where):
    """``outside``: dataset.json names an entry outside the user's cache (ignored, rebuilt from
    the spec, with a note); ``inside``: a crafted entry inside it (refused by the unpickler)."""
    from tune_ptycho.storage.dataset_cache import default_cache_dir

    exp = tmp_path / "copy"
    shutil.copytree(tiny_experiment, exp)
    manifest = json.loads((exp / "dataset.json").read_text())
    real = Path(manifest["cache_entry"])
    marker = tmp_path / "MARKER"
    dest = (tmp_path / "evil-entry" if where == "outside"
            else default_cache_dir() / f"evil-{uuid.uuid4().hex}")
    try:
        _evil_entry(real, dest, marker)
        manifest["cache_entry"] = str(dest)
        (exp / "dataset.json").write_text(json.dumps(manifest))
        assert main(["analyze", str(exp)]) == 0
        assert main(["best", str(exp)]) == 0
        assert not marker.exists()
        report = (exp / "report" / "report.md").read_text()
        if where == "outside":
            assert "outside this user's dataset cache" in report
    finally:
        if where == "inside":
            shutil.rmtree(dest, ignore_errors=True)
    capsys.readouterr()


def test_a_recorded_dataset_cache_is_used_only_when_it_is_the_users(tiny_experiment, tmp_path):
    from tune_ptycho.storage.dataset_cache import default_cache_dir, own_cache, own_entry
    from tune_ptycho.storage.experiment import ExperimentInfo

    cache = default_cache_dir()
    assert own_entry(tmp_path / "x") is None
    assert own_entry(cache / "abc") == (cache / "abc").resolve()
    assert own_entry(cache / ".." / "abc") is None
    link = cache / f"link-{uuid.uuid4().hex}"
    link.symlink_to(tmp_path, target_is_directory=True)
    try:
        assert own_entry(link / "x") is None  # a symlink out of the cache
    finally:
        link.unlink()
    assert own_cache(str(tmp_path)) == "" and own_cache(str(cache)) == str(cache)

    exp = tmp_path / "copy"
    shutil.copytree(tiny_experiment, exp)
    spec = json.loads((exp / "spec.json").read_text())
    spec["storage"]["dataset_cache"] = str(tmp_path / "their-cache")
    (exp / "spec.json").write_text(json.dumps(spec))
    assert ExperimentInfo.load(str(exp)).spec.storage.dataset_cache == ""


# -- analyze opens only the experiment's own study, read-only -----------------------------------

def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_analyze_reads_its_own_study_read_only(tiny_experiment, tmp_path, capsys):
    exp = tmp_path / "copy"
    shutil.copytree(tiny_experiment, exp)
    before = _sha(exp / "optuna.db")
    listing = sorted(p.name for p in exp.iterdir())
    assert main(["analyze", str(exp)]) == 0
    assert _sha(exp / "optuna.db") == before
    assert sorted(p.name for p in exp.iterdir() if p.name != "report") == listing
    report = (exp / "report" / "report.md").read_text()
    assert "get_param_importances" in report
    capsys.readouterr()


def test_analyze_does_not_follow_a_study_url_out_of_the_experiment(tiny_experiment, tmp_path,
                                                                   capsys):
    exp = tmp_path / "copy"
    shutil.copytree(tiny_experiment, exp)
    elsewhere = Path("/tmp") / f"tp-elsewhere-{uuid.uuid4().hex}"
    (exp / "study.json").write_text(json.dumps(
        {"url": f"sqlite:///{elsewhere}/x.db", "study_name": "tiny"}))
    try:
        assert main(["analyze", str(exp)]) == 0
        assert not elsewhere.exists()
        report = (exp / "report" / "report.md").read_text()
        assert "the study was not opened" in report and "--study-storage" in report
        (exp / "study.json").write_text(json.dumps(
            {"url": "postgresql://nobody@192.0.2.1:1/db", "study_name": "tiny"}))
        assert main(["analyze", str(exp)]) == 0  # no connection attempted (it would hang)
        assert "database server" in (exp / "report" / "report.md").read_text()
        # named by the user, a study elsewhere is read
        assert main(["analyze", str(exp), "--study-storage",
                     f"sqlite:///{exp / 'optuna.db'}"]) == 0
        assert "get_param_importances" in (exp / "report" / "report.md").read_text()
    finally:
        shutil.rmtree(elsewhere, ignore_errors=True)
    capsys.readouterr()


def test_best_export_of_a_garbage_checkpoint_exits_2(tiny_experiment, tmp_path, capsys):
    from tune_ptycho.analysis import best_trial

    exp = tmp_path / "copy"
    shutil.copytree(tiny_experiment, exp)
    ckpt = best_trial(exp)[2]
    assert ckpt is not None
    (ckpt / "state.pt").write_bytes(b"not a checkpoint at all\n")
    capsys.readouterr()
    assert main(["best", str(exp), "--export", str(tmp_path / "x.pt")]) == 2
    assert "state.pt" in _one_line_error(capsys)
    assert not (tmp_path / "x.pt").exists()
    assert main(["diagnose", str(ckpt)]) == 2
    assert "state.pt" in _one_line_error(capsys)


# -- an S3 key never writes outside the download folder -----------------------------------------

def test_an_s3_key_with_dotdot_is_refused(s3_endpoint, tmp_path, monkeypatch, capsys):
    import tempfile

    import boto3

    for k, v in s3_env(s3_endpoint).items():
        monkeypatch.setenv(k, v)
    prefix = f"shared-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                      aws_access_key_id="test", aws_secret_access_key="test")
    evil = f"{prefix}/exp/../../../PWNED-{prefix}"
    s3.put_object(Bucket=S3_BUCKET, Key=f"{prefix}/exp/spec.json", Body=b"{}")
    s3.put_object(Bucket=S3_BUCKET, Key=evil, Body=b"pwned")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=S3_BUCKET, Prefix=prefix)["Contents"]]
    assert evil in keys  # the raw key, '..' and all

    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    tmp_root = Path(tempfile.gettempdir())
    before = {p.name for p in tmp_root.iterdir()}
    assert main(["best", f"s3://{S3_BUCKET}/{prefix}/exp"]) == 2
    err = _one_line_error(capsys)
    assert ".." in err and "PWNED" in err
    assert main(["analyze", f"s3://{S3_BUCKET}/{prefix}/exp"]) == 2
    _one_line_error(capsys)
    written = [p for p in (tmp_root, tmp_root.parent, work, Path.cwd())
               if any(q.name.startswith("PWNED") for q in p.iterdir())]
    assert not written
    left = {p.name for p in tmp_root.iterdir()} - before
    assert not [n for n in left if n.startswith("tp-analyze-")]  # the temp copy was removed
