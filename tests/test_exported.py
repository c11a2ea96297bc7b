"""The exported model's documented route: README's snippet runs as written on an export and an NPZ,
gives what the generator gives, and bad files are refused with one line naming them."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import ptycho_model
from ptycho_model.data import simulate
from ptycho_model.errors import InputError
from ptycho_model.exported import ExportedModelError, save_exported
from ptycho_model.generators import build_generator
from ptycho_model.npz_io import save_split
from ptycho_model.presets import preset_config
from ptycho_model.train import fit

ROOT = Path(__file__).resolve().parents[1]
MARKER = "<!-- exported-model-snippet -->"


def readme_snippet() -> str:
    """The ```python block right after the marker in README.md, exactly as shown there."""
    text = (ROOT / "README.md").read_text()
    assert text.count(MARKER) == 1, "README.md must hold the snippet marker once"
    m = re.match(r"\s*```python\n(.*?)\n```", text.split(MARKER, 1)[1], re.S)
    assert m, "the marker must be followed by a ```python fenced block"
    return m.group(1) + "\n"


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    """A directory with ``best.pt`` + ``best.pt.json`` (a 1-epoch tiny model, written as
    ``tune-ptycho best --export`` writes them) and ``test.npz`` (its test split)."""
    torch.set_num_threads(1)
    cfg = preset_config("tiny").with_updates({"train/max_epochs": 1})
    data = simulate(cfg.data)
    res = fit(cfg, data)
    weights = res.best_model_state or res.model.state_dict()
    d = tmp_path_factory.mktemp("export")
    save_exported(weights, cfg, d / "best.pt")
    save_split(data.test, d / "test.npz")
    return d, cfg


def _direct(cfg, weights_file: Path, diffraction: np.ndarray) -> np.ndarray:
    """The generator called by hand in the torch layout (B, 1, N, N); -> (B, N, N) complex."""
    model = build_generator(cfg.model, N=cfg.data.N)
    model.load_state_dict(torch.load(weights_file, weights_only=True))
    model.eval()
    x = torch.from_numpy(np.ascontiguousarray(diffraction.transpose(0, 3, 1, 2)))
    with torch.no_grad():
        y = model(x).numpy()  # (B, N, N, 1, 2) [real, imag]
    return y[..., 0, 0] + 1j * y[..., 0, 1]


def test_readme_snippet_reconstructs_the_npz(export, monkeypatch):
    d, cfg = export
    code = readme_snippet()
    assert len(code.splitlines()) <= 10
    monkeypatch.chdir(d)
    ns: dict = {}
    exec(compile(code, "README.md:exported-model-snippet", "exec"), ns)  # noqa: S102
    diffraction = np.load(d / "test.npz")["diffraction"]
    B, N = diffraction.shape[0], cfg.data.N
    obj = ns["obj"]
    assert isinstance(obj, np.ndarray) and obj.shape == (B, N, N) and B > 1
    assert np.iscomplexobj(obj) and obj.dtype == np.complex64
    assert np.isfinite(obj).all()
    assert not ns["model"].training and ns["cfg"] == cfg
    expected = _direct(cfg, d / "best.pt", diffraction)
    np.testing.assert_allclose(obj, expected, rtol=1e-5, atol=1e-6)
    assert np.ptp(np.abs(obj)) > 0  # a real reconstruction, not a constant
    # (B, N, N) input and a tensor give the same
    flat = ptycho_model.reconstruct(ns["model"], torch.from_numpy(diffraction[..., 0]))
    np.testing.assert_allclose(flat, obj, rtol=1e-5, atol=1e-6)


def test_exported_weights_are_the_saved_ones(export):
    d, cfg = export
    model, got = ptycho_model.load_exported(str(d / "best.pt"))
    assert got == cfg
    saved = torch.load(d / "best.pt", weights_only=True)
    own = model.state_dict()
    assert set(own) == set(saved)
    assert all(torch.equal(own[k], saved[k]) for k in own)
    assert json.loads((d / "best.pt.json").read_text()) == json.loads(
        json.dumps(cfg.to_dict(), default=str))


def _refused(path, *words: str) -> str:
    with pytest.raises(ExportedModelError) as err:
        ptycho_model.load_exported(path)
    msg = str(err.value)
    assert isinstance(err.value, InputError)
    assert "\n" not in msg, msg
    for w in words:
        assert w in msg, msg
    return msg


def test_clear_errors_name_the_file(export, tmp_path):
    d, _ = export
    cfg_json = (d / "best.pt.json").read_text()

    _refused(tmp_path / "nope.pt", str(tmp_path / "nope.pt"), "not found")

    shutil.copy(d / "best.pt", tmp_path / "alone.pt")  # weights, no config beside them
    _refused(tmp_path / "alone.pt", str(tmp_path / "alone.pt.json"), "missing")

    (tmp_path / "alone.pt.json").write_text("{not json")
    _refused(tmp_path / "alone.pt", str(tmp_path / "alone.pt.json"), "not a JSON config")

    (tmp_path / "alone.pt.json").write_text(json.dumps({"model": {"arch": "nope"}}))
    _refused(tmp_path / "alone.pt", str(tmp_path / "alone.pt.json"), "model/arch")

    (tmp_path / "notes.txt").write_text("these are not weights\n")
    (tmp_path / "notes.txt.json").write_text(cfg_json)
    _refused(tmp_path / "notes.txt", str(tmp_path / "notes.txt"), "not a torch weights file")

    torch.save({"epoch": 3}, tmp_path / "state.pt")  # a torch file, not a state dict
    (tmp_path / "state.pt.json").write_text(cfg_json)
    _refused(tmp_path / "state.pt", str(tmp_path / "state.pt"), "not a state dict")

    wider = json.loads(cfg_json)
    wider["model"]["width"] = 2 * wider["model"]["width"]
    shutil.copy(d / "best.pt", tmp_path / "other.pt")  # weights of another model size
    (tmp_path / "other.pt.json").write_text(json.dumps(wider))
    _refused(tmp_path / "other.pt", str(tmp_path / "other.pt"), "do not fit", "wrong shape")


def test_reconstruct_refuses_other_layouts(export):
    d, cfg = export
    model, _ = ptycho_model.load_exported(d / "best.pt")
    diffraction = np.load(d / "test.npz")["diffraction"]
    for bad, word in ((diffraction.transpose(0, 3, 1, 2), "(B, N, N, 1)"),  # torch layout
                      (diffraction[0, ..., 0], "(B, N, N, 1)"),
                      (diffraction[:, :16, :16], "N=32")):
        with pytest.raises(InputError, match=re.escape(word)):
            ptycho_model.reconstruct(model, bad)
