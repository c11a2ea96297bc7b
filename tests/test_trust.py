"""`resume` unpickles only what the service itself pickles (tune_ptycho/storage/pickle_scan.py):
a copied experiment whose pickles would run code is refused with exit 2 and one line naming the
file and --trust; the readers (analyze, best, diagnose, crash-hunt) never unpickle at all."""

from __future__ import annotations

import json
import os
import pathlib
import pickle
import shutil
from pathlib import Path

import pytest

from tune_ptycho.cli import main
from tune_ptycho.exits import EXIT_BAD_INPUT
from tune_ptycho.storage.pickle_scan import (
    UntrustedPickle,
    check_trusted,
    experiment_pickles,
    scan_pickle,
)

NEWEST = "9999-12-31_23-59-59"  # sorts after every stamp Tune writes: the file Tune would restore


class Touch:
    """Unpickled, it creates ``marker``: the stand-in for any code a pickle can run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def payload(marker: Path) -> bytes:
    return pickle.dumps(Touch(marker), protocol=5)


def newest(exp: Path, pattern: str) -> Path:
    return sorted(exp.glob(pattern))[-1]


def craft(exp: Path, where: str, marker: Path) -> str:
    """Plant a pickle that touches ``marker`` where Tune's restore would load it; the file's
    name as ``resume`` reports it."""
    if where == "searcher-state":
        name = f"searcher-state-{NEWEST}.pkl"
        (exp / name).write_bytes(payload(marker))
    elif where == "search_gen_state":  # a cloudpickle despite its name
        name = f"search_gen_state-{NEWEST}.json"
        (exp / name).write_bytes(payload(marker))
    elif where == "tuner.pkl":
        name = "tuner.pkl"
        (exp / name).write_bytes(payload(marker))
    elif where == "experiment_state":  # the stopper's cloudpickle, hex in Tune's JSON snapshot
        f = newest(exp, "experiment_state-*.json")
        state = json.loads(f.read_text())
        stopper = state["runner_data"]["_stopper"]
        assert stopper["_type"] == "CLOUDPICKLE_FALLBACK"
        stopper["value"] = payload(marker).hex()
        f.write_text(json.dumps(state))
        name = f.name
    elif where == "broken-experiment_state":  # Tune's decoder unpickles it before the error
        name = f"experiment_state-{NEWEST}.json"
        (exp / name).write_text('{"runner_data": {"_stopper": {"_type": "CLOUDPICKLE_FALLBACK", '
                                f'"value": "{payload(marker).hex()}"}}, "trial_data": [')
    elif where == "error.pkl":
        trial = newest(exp, "trial_*")
        name = f"{trial.name}/error.pkl"
        (exp / name).write_bytes(payload(marker))
    else:
        raise AssertionError(where)
    return name


CRAFTS = ["searcher-state", "tuner.pkl", "experiment_state", "search_gen_state", "error.pkl"]


def copy_of(tiny_experiment: Path, tmp_path: Path) -> Path:
    exp = tmp_path / "copy" / tiny_experiment.name
    shutil.copytree(tiny_experiment, exp)
    return exp


def test_the_crafted_files_would_run_code_if_unpickled(tmp_path):
    """The crafts are live: each one, loaded the way Tune loads it, writes its marker."""
    from ray.tune.utils.serialization import _loads_with_cloudpickle

    m1, m2 = tmp_path / "m1", tmp_path / "m2"
    pickle.loads(payload(m1))
    assert m1.exists()
    _loads_with_cloudpickle(json.dumps({"_type": "CLOUDPICKLE_FALLBACK",
                                        "value": payload(m2).hex()}))
    assert m2.exists()
    m3 = tmp_path / "m3"  # a document broken after the payload: unpickled before the error
    with pytest.raises(ValueError):
        _loads_with_cloudpickle('{"a": {"_type": "CLOUDPICKLE_FALLBACK", "value": '
                                f'"{payload(m3).hex()}"}}, "b": [')
    assert m3.exists()


@pytest.mark.parametrize("where", [*CRAFTS, "broken-experiment_state"])
def test_resume_refuses_a_crafted_pickle_with_one_line(tiny_experiment, tmp_path, capsys, where):
    exp = copy_of(tiny_experiment, tmp_path)
    marker = tmp_path / "marker"
    name = craft(exp, where, marker)
    capsys.readouterr()
    assert main(["resume", str(exp), "--no-dashboard"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert name in lines[0] and "--trust" in lines[0], err
    assert "pathlib.Path.touch" in lines[0], err
    assert not marker.exists()
    check_trusted(str(exp), trust=True)  # --trust skips the check (and would run it)


def test_check_trusted_names_the_file_and_the_global(tiny_experiment, tmp_path):
    exp = copy_of(tiny_experiment, tmp_path)
    craft(exp, "tuner.pkl", tmp_path / "marker")
    with pytest.raises(UntrustedPickle, match=r"^refusing to resume: tuner\.pkl references "
                                              r"pathlib\.Path\.touch, which the service never "
                                              r"pickles; resume only experiments you trust "
                                              r"\(--trust to override\)$"):
        check_trusted(str(exp), trust=False)


def test_a_corrupt_pickle_is_refused_as_such(tiny_experiment, tmp_path, capsys):
    exp = copy_of(tiny_experiment, tmp_path)
    newest(exp, "searcher-state-*.pkl").write_bytes(b"\x80\x05not a pickle")
    assert main(["resume", str(exp), "--no-dashboard"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert "searcher-state-" in err and "is not a valid pickle" in err and "\n" not in err


def test_every_craft_at_once_runs_nothing_in_any_command(tiny_experiment, tmp_path,
                                                         ray_session, capsys):
    """A copy holding every craft at once: Tune's pickles (searcher state, tuner.pkl, the JSON
    snapshots, error.pkl), a dataset cache entry whose NPZs carry a pickled ``_metadata``, and
    the best trial's newest checkpoint replaced by a pickle. analyze, best, best --export,
    diagnose, crash-hunt and resume write no marker; those that refuse exit 2 with one line."""
    from test_shared_data import _evil_entry

    exp = copy_of(tiny_experiment, tmp_path)
    marker = tmp_path / "marker"
    for where in CRAFTS:
        craft(exp, where, marker)
    manifest = json.loads((exp / "dataset.json").read_text())
    manifest["cache_entry"] = str(_evil_entry(Path(manifest["cache_entry"]),
                                              tmp_path / "evil-entry", marker))
    (exp / "dataset.json").write_text(json.dumps(manifest))
    for ckpt in exp.glob("trial_*/checkpoint_*/state.pt"):
        ckpt.write_bytes(payload(marker))
    capsys.readouterr()

    out = tmp_path / "out"
    commands = {
        "analyze": ["analyze", str(exp), "--out", str(out / "report")],
        "best": ["best", str(exp)],
        "best --export": ["best", str(exp), "--export", str(out / "best.pt")],
        "diagnose": ["diagnose", str(exp), "--out", str(out / "diagnose")],
        # --seeds 2 keeps the hunt two real tiny runs
        "crash-hunt": ["crash-hunt", str(exp), "--top", "1", "--seeds", "2", "--no-dashboard",
                       "--no-progress"],
        "resume": ["resume", str(exp), "--no-dashboard"],
    }
    codes = {}
    for what, argv in commands.items():
        codes[what] = main(argv)
        err = capsys.readouterr().err
        assert not marker.exists(), what
        assert codes[what] in (0, 2), (what, codes[what])
        if codes[what] == 2:
            lines = [x for x in err.splitlines() if x.startswith("tune-ptycho: error:")]
            assert len(lines) == 1, (what, err)
    assert codes["resume"] == 2 and codes["best --export"] == 2  # refused, not run
    assert codes["crash-hunt"] == 0 and codes["analyze"] == 0  # they never needed a pickle


# -- the allow-list holds for the service's own experiments ------------------------------------

EXTRA = {  # each option that changes what Tune pickles, in two tiny studies
    # HyperBand: Ray's scheduler holds two lambdas, pickled by value; MLflow's callback holds
    # the mlflow module; W&B's; the study in a journal file outside the experiment
    "hyperband-trackers-journal": ["--scheduler", "hyperband",
                                   "--log-to", "tensorboard,mlflow,wandb",
                                   "--study-storage", "journal:///{dir}/study.log"],
    # no scheduler; a study in a SQLite file outside; every trial errors: error.pkl holds Ray's
    # RayTaskError made an instance of the trial's own error (a class pickled by value)
    "none-sqlite-errors": ["--scheduler", "none", "--study-storage", "sqlite:///{dir}/study.db",
                           "--set", "faults/allowed=true", "--set", "faults/crash_at_epoch=1",
                           "--set", "resources/max_failures=0"],
}


# session scope: the slow tests run first, so a module fixture would be built again when the
# worker comes back to this module after another one
@pytest.fixture(scope="session")
def service_experiments(ray_session, tiny_experiment, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("trust")
    out = {"asha-tensorboard": tiny_experiment}
    saved = os.environ.get("WANDB_MODE")
    os.environ["WANDB_MODE"] = "offline"
    try:
        for name, extra in EXTRA.items():
            code = main(["run", "--preset", "tiny", "--space", "stage_a", "--num-samples", "2",
                         "--max-epochs", "2", "--no-dashboard", "--no-progress",
                         "--storage", str(root), "--name", name,
                         *[a.format(dir=root) for a in extra]])
            assert code in (0, 1), name  # 1: the trials that errored on purpose
            out[name] = root / name
    finally:
        if saved is None:
            os.environ.pop("WANDB_MODE", None)
        else:
            os.environ["WANDB_MODE"] = saved
    return out


@pytest.mark.parametrize("kind", ["asha-tensorboard", *EXTRA])
def test_the_service_own_pickles_pass_the_scan(service_experiments, kind):
    exp = service_experiments[kind]
    found = dict(experiment_pickles(str(exp)))
    names = " ".join(found)
    expected = ["tuner.pkl", "searcher-state-", "search_gen_state-", "experiment_state-",
                "/storage", "/checkpoint_manager", "/placement_group_factory",
                "/runner_data/_stopper"] + (["/error.pkl"] if "errors" in kind else [])
    for want in expected:
        assert want in names, (want, sorted(found))
    bad = {name: scan_pickle(data) for name, data in found.items() if scan_pickle(data)}
    assert not bad
    check_trusted(str(exp))


# -- the scanner itself ------------------------------------------------------------------------

def _sb(s: str) -> bytes:
    b = s.encode()
    return b"\x8c" + bytes([len(b)]) + b


@pytest.mark.parametrize("data, expected", [
    # os.system, pickled the ordinary way (protocol 0 and 5)
    (pickle.dumps(type("S", (), {"__reduce__": lambda self: (os.system, ("true",))})(),
                  protocol=0), "posix.system"),
    (pickle.dumps(type("S", (), {"__reduce__": lambda self: (os.system, ("true",))})(),
                  protocol=5), "posix.system"),
    # a dangerous name reached through an allowed module's namespace
    (b"\x80\x04" + _sb("tune_ptycho.run.tuner") + _sb("os.system") + b"\x93" + _sb("true")
     + b"\x85R.", "tune_ptycho.run.tuner.os.system"),
    # names fetched from the memo
    (b"\x80\x04" + _sb("posix") + b"\x94" + _sb("system") + b"\x94h\x00h\x01\x93" + _sb("x")
     + b"\x85R.", "posix.system"),
    # cloudpickle's subimport called by OBJ rather than REDUCE
    (b"\x80\x04(" + _sb("ray.cloudpickle.cloudpickle") + _sb("subimport") + b"\x93"
     + _sb("antigravity") + b"o.", "used other than by a call"),
    # pyarrow's filesystem from a URI that is not local: it could connect as it is unpickled
    (b"\x80\x04" + _sb("pyarrow._fs") + _sb("FileSystem._from_uri") + b"\x93"
     + _sb("s3://b/?endpoint_override=elsewhere") + b"\x85R.", "_from_uri of s3://"),
])
def test_the_scanner_sees_through_the_usual_tricks(data, expected):
    assert any(expected in b for b in scan_pickle(data)), scan_pickle(data)


def test_a_function_pickled_by_value_is_refused_unless_it_is_rays_own():
    import ray.cloudpickle as cloudpickle
    from ray.tune.schedulers.hyperband import HyperBandScheduler

    bad = scan_pickle(cloudpickle.dumps(lambda: os.system("true")))
    assert any("<lambda> (a function pickled by value)" in b for b in bad), bad
    assert "subimport:os" in bad
    # Ray's own lambda: its code passes (only the class it closes over, pickled alone here, is
    # not among the service's names)
    assert scan_pickle(cloudpickle.dumps(HyperBandScheduler()._get_n0)) == [
        "ray.tune.schedulers.hyperband.HyperBandScheduler"]
    assert scan_pickle(pickle.dumps({"a": [1, 2.0, "s", None, (True,)]})) == []


@pytest.mark.parametrize("field", ["pickled_error_filename", "trial_dir_name"])
def test_resume_refuses_a_trial_error_read_from_elsewhere(tiny_experiment, tmp_path, capsys,
                                                          field):
    """Tune reads a trial's pickled error from <trial_dir_name>/<pickled_error_filename>, both
    from the snapshot: a name that leads elsewhere (where no scan looks) is refused."""
    import ray.cloudpickle as cloudpickle

    exp = copy_of(tiny_experiment, tmp_path)
    f = newest(exp, "experiment_state-*.json")
    state = json.loads(f.read_text())
    trial, meta = (json.loads(x) for x in state["trial_data"][0])
    if field == "pickled_error_filename":
        meta["pickled_error_filename"] = "../../elsewhere.pkl"
    else:  # the service's own pickle, written by the fixture: safe to load here
        storage = cloudpickle.loads(bytes.fromhex(trial["storage"]["value"]))
        storage.trial_dir_name = "../elsewhere"
        trial["storage"]["value"] = cloudpickle.dumps(storage).hex()
    state["trial_data"][0] = [json.dumps(trial), json.dumps(meta)]
    f.write_text(json.dumps(state))
    assert main(["resume", str(exp), "--no-dashboard"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert "elsewhere" in err and f.name in err and "--trust" in err and "\n" not in err
