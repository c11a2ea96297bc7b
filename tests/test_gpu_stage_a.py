"""``bench/gpu_stage_a.py --quick`` runs where the GPU machine's Python would: no PyYAML, Ray,
Optuna or matplotlib.

The GPU run happens once, blind, on a machine with torch, numpy and scikit-image only, so its code
path is run here at toy size with those four packages made unimportable in the script and in every
worker it starts (a ``sitecustomize`` on ``PYTHONPATH`` installs a finder that refuses them), and
its results JSON is read back: every stage present, figures positive, all packed workers done,
per-epoch curves for both arms, a valid PNG. No figure is compared with a target: timings belong
to the benchmark itself.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "gpu_stage_a.py"
ABSENT = ("yaml", "ray", "optuna", "matplotlib")
# --quick's deadline and arm budget are sized for a quiet machine; these leave room for a loaded
# one, so that the arms always reach their 3 epochs and no stage is skipped (same code path).
LOAD_PROOF = ("--deadline-s", "900", "--arm-budget-s", "600")

_BLOCKER = '''
import sys

ABSENT = {absent!r}


class _Absent:
    """What a machine without these packages answers: ModuleNotFoundError."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ABSENT:
            raise ModuleNotFoundError(f"No module named {{name!r}} (absent on purpose)", name=name)
        return None


sys.meta_path.insert(0, _Absent())
'''


def _load_script_module(name: str, path: Path):
    sys.path.insert(0, str(path.parent))
    try:
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod
    finally:
        sys.path.remove(str(path.parent))


@pytest.mark.slow  # seven worker processes, each importing torch: ~20 s on 2 quiet cores
def test_quick_run_without_yaml_ray_optuna_matplotlib(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(_BLOCKER.format(absent=ABSENT))
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("OUT", None)
    probe = subprocess.run([sys.executable, "-c", "import yaml"], env=env, capture_output=True,
                           text=True)
    assert probe.returncode != 0 and "absent on purpose" in probe.stderr  # the blocker works

    out = tmp_path / "out"
    p = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--out", str(out),
                        "--arm-train-fraction", "0.5", *LOAD_PROOF], env=env,
                       capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-4000:]
    assert "absent on purpose" not in p.stdout + p.stderr
    res = json.loads((out / "results.json").read_text())
    assert (out / "output.txt").read_text().count("RESULT ") >= 3

    assert res["simulation"]["n_train"] > 0 and res["simulation"]["seconds"] > 0
    thr = res["throughput"]
    done = [v for v in thr["variants"] if "s_per_epoch" in v]
    assert done and done[0]["variant"] == "fp32", thr
    for v in done:
        assert v["train_sps"] > 0 and v["val_sps"] > 0 and v["s_per_epoch"] > 0
        assert v["params"] > 0 and v["loss_finite"]

    pack = res["pack"]
    assert pack["trials"] == 4
    assert pack["alone"]["ok"] == 1 and pack["packed"]["ok"] == 4, pack
    for w in pack["alone"]["workers"] + pack["packed"]["workers"]:
        assert w["ok"] and w["samples"] > 0 and w["seconds"] > 0
    assert pack["packed"]["aggregate_sps"] > 0 and pack["speedup"] > 0

    arms = res["arms"]["arms"]
    assert set(arms) == {"stage_a_control", "stage_a_stable_layerscale"}
    for name, a in arms.items():
        assert a["ok"], (name, a)
        c = a["curves"]
        assert a["epochs"] == 3 and a["stopped"] == "max_epochs", a  # --quick: 3 epochs
        assert a["n_train"] == round(0.5 * res["arms"]["n_train_full"])
        assert len(c["val_loss"]) == 3 and c["full_epochs"] == [0.5, 1.0, 1.5]
        assert c["epoch"] == list(range(1, a["epochs"] + 1))
        assert all(v > 0 for v in c["val_loss"]) and all(s > 0 for s in c["epoch_time_s"])
        assert all(k in c for k in ("output_std", "collapse_ratio", "collapsed", "grad_norm"))
        assert a["best_val_loss"] == min(c["val_loss"])
        hist = json.loads((out / f"history_{name}.json").read_text())
        assert [h["epoch"] for h in hist] == c["epoch"] and hist[0]["layers"]

    png = res["curves_png"]
    assert png["backend"] == "raster"  # matplotlib is absent
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert res["wall_s"] < res["settings"]["deadline_s"]


def test_script_arms_are_the_seed_arms():
    """The script's arms are the search spaces' seed arms of those names (it reads them from
    ptycho_model.upstream_arms, which needs no Optuna)."""
    from search_spaces.arms import SEED_ARMS

    mod = _load_script_module("gpu_stage_a", SCRIPT)
    assert set(mod.ARMS) == set(mod.UPSTREAM_ARMS)
    for name, arm in mod.ARMS.items():
        assert arm == SEED_ARMS[name], name


def test_curves_png_both_backends(tmp_path):
    mod = _load_script_module("_curves_png", ROOT / "bench" / "_curves_png.py")
    curves = {"a": {"x": [1, 2, 3], "val": [0.2, 0.05, 0.3]},
              "b": {"x": [1, 2], "val": [0.1, float("nan")]}}
    for backend in ("matplotlib", "raster"):
        path = tmp_path / f"{backend}.png"
        info = mod.write_curves_png(curves, path, x_key="x", panels=[("val", "val", True)],
                                    backend=backend)
        assert info["backend"] == backend
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 500
        assert info["panels"][0]["x_range"] == [1, 3]
        assert abs(info["panels"][0]["y_range"][1] - (-0.5229)) < 1e-3  # log10(0.3)
    if importlib.util.find_spec("PIL") is not None:  # decode the hand-written PNG
        from PIL import Image

        img = Image.open(tmp_path / "raster.png")
        assert img.size == (360, 280) and img.mode == "RGB"
