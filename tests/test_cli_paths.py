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
