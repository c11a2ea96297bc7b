"""Every subcommand that takes a path refuses a missing or wrong one with exit 2 and one line.

``main`` runs in-process: an exception escaping it (what a user sees as a traceback) fails the
test, and the message must be the CLI's own single ``tune-ptycho: error:`` line.
"""

from __future__ import annotations

import pytest

from tune_ptycho.cli import main
from tune_ptycho.exits import EXIT_BAD_INPUT

MISSING = "/no/such/tune-ptycho/path"

# (argv with {path} where the path goes, what the message must name)
COMMANDS = [
    ("resume {path}", "not a tune-ptycho experiment"),
    ("analyze {path}", "not a tune-ptycho experiment"),
    ("best {path}", "not a tune-ptycho experiment"),
    ("validate-cluster {path}", "{path}"),
    ("train --preset tiny --probe-npz {path}", "--probe-npz"),
    ("simulate --preset tiny --probe-npz {path} --out {out}", "--probe-npz"),
    ("run --spec {path}", "--spec"),
]


@pytest.fixture(params=["missing", "empty dir"])
def bad_path(request, tmp_path) -> str:
    if request.param == "missing":
        return MISSING
    d = tmp_path / "empty"
    d.mkdir()
    return str(d)


@pytest.mark.parametrize("argv,named", COMMANDS, ids=[c[0].split()[0] for c in COMMANDS])
def test_a_bad_path_exits_2_with_one_line(argv, named, bad_path, tmp_path, capsys):
    args = argv.format(path=bad_path, out=tmp_path / "o").split()
    assert main(args) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tune-ptycho: error: "), err
    assert named.format(path=bad_path) in err[0], err
    assert "Traceback" not in err[0]


@pytest.mark.parametrize("argv", [
    "train --preset tiny --out {file}/x",
    "simulate --preset tiny --out {file}/x",
    "analyze {empty} --out {file}/x",
    "best {empty} --export {file}/x/best.pt",
    "best {empty} --export {empty}",
    "resume unknownfs://bucket/experiment",
    "analyze unknownfs://bucket/experiment",
], ids=["train-out", "simulate-out", "analyze-out", "best-export", "best-export-dir",
        "resume-uri", "analyze-uri"])
def test_an_unusable_output_or_uri_exits_2(argv, tmp_path, capsys):
    """An output under a regular file, an export onto a directory, a URI no filesystem serves."""
    (tmp_path / "file").write_text("a regular file, not a directory")
    (tmp_path / "empty").mkdir()
    args = argv.format(file=tmp_path / "file", empty=tmp_path / "empty").split()
    assert main(args) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tune-ptycho: error: "), err


# --------------------------------------------------------------------------------------------
# `tune-ptycho paths`: every path `run --set` accepts, each round-tripping through --set
# --------------------------------------------------------------------------------------------


def _listed(capsys, *argv: str) -> dict[str, str]:
    """``tune-ptycho paths`` as {path: its default as printed} (legacy rules left out)."""
    assert main(["paths", *argv]) == 0
    out = capsys.readouterr().out.splitlines()
    legacy = out.index(next(x for x in out if x.startswith("# legacy")))
    listed = {}
    for line in out[:legacy]:
        if not line.startswith("#"):
            path, _, rest = line.partition(" ")
            listed[path] = rest.strip().split("  ")[0]
    return listed


def test_paths_lists_the_study_sections_beside_the_model_config(capsys):
    from tune_ptycho.spec import build_spec

    listed = _listed(capsys)
    for path in ("search/num_samples", "search/seed_arms", "scheduler/name", "storage/log_to",
                 "resources/cpus_per_trial", "preset", "data/size", "optim/lr"):
        assert path in listed, path
    # every path a spec.json records, and nothing else
    recorded = {f"{sec}/{k}" for sec, v in build_spec().to_dict().items() if sec != "preset"
                for k in v}
    assert set(listed) == recorded | {"preset"}
    assert main(["paths"]) == 0
    out = capsys.readouterr().out
    assert "scheduler/name               asha  (asha | hyperband | none)" in out
    assert "asha/enabled" in out and "legacy" in out  # the old section, marked as such


@pytest.mark.parametrize("preset", [None, "cpu", "tiny"])
def test_every_listed_path_and_default_goes_through_set(preset, capsys):
    from tune_ptycho.cli import parse_sets
    from tune_ptycho.spec import build_spec

    listed = _listed(capsys, *(["--preset", preset] if preset else []))
    base = {"preset": preset} if preset else {}
    for path, text in listed.items():
        sets = parse_sets([f"{path}={text}"])
        spec = build_spec(sets={**base, **sets})  # no "unknown config path", value accepted
        if path not in ("preset", "search/resolved"):
            sec, key = path.split("/")
            where = spec.run if sec not in ("search", "scheduler", "resources", "storage") \
                else spec
            assert getattr(getattr(where, sec), key) == sets[path], (path, text)
    if preset:  # a preset's listing shows its own study settings
        assert listed["search/num_samples"] == str(build_spec(sets=base).search.num_samples)


def test_the_legacy_asha_paths_are_still_read():
    from tune_ptycho.spec import build_spec

    spec = build_spec(sets={"asha/enabled": False, "asha/reduction_factor": 4})
    assert spec.scheduler.name == "none" and spec.scheduler.reduction_factor == 4
