"""grid_lines data: geometry, simulation physics, noise, stitching, NPZ round trips and refusals."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ptycho_model.config import ConfigError, DataConfig
from ptycho_model.data import (
    DataError,
    Datasets,
    Split,
    data_fingerprint,
    extract_patches,
    ground_truth_image,
    n_side,
    patch_count,
    simulate,
    stitch_patches,
    stitched_size,
    test_image0_patches as image0_patches,
)
from ptycho_model.npz_io import load_datasets, load_split, save_datasets, save_split
from ptycho_model.objects import dummy_phi, lines_amplitude, make_objects
from ptycho_model.physics import predicted_amplitude
from ptycho_model.probes import asymmetric, simulation_probe, smooth_probe

TINY = DataConfig(
    size=72, N=32, n_train=1, n_val=1, n_test=1, stride_train=4, stride_test=8, nphotons=1e6
)


@pytest.fixture(scope="module")
def tiny() -> Datasets:
    return simulate(TINY)


def _scale(train: Split, nphotons: float) -> float:
    # stored Y_I = Y_I * |P_sim|, so mean sum Y_I_stored^2 is the denominator of s (§1.4)
    return float(
        np.sqrt(nphotons / np.mean(np.sum(train.Y_I.astype(np.float64) ** 2, axis=(1, 2, 3))))
    )


def _noise_free_amp(split: Split, s: float) -> np.ndarray:
    """(n, N, N) float64: |FFT(s * Y_I * exp(i phi) * P_sim)| rebuilt from the stored labels."""
    phase = np.exp(1j * (split.Y_phi[..., 0] + np.angle(split.probe_simulated)))
    psi = torch.from_numpy((s * split.Y_I[..., 0] * phase).astype(np.complex64))
    return (
        predicted_amplitude(psi[:, None], torch.ones(split.N, split.N, dtype=torch.complex64))[:, 0]
        .double()
        .numpy()
    )


# ---------------------------------------------------------------------------------- geometry


def test_stage_a_patch_counts_and_stitched_size() -> None:
    assert n_side(392, 64, 4) == 83 and n_side(392, 64, 10) == 33
    assert patch_count(392, 64, 4) == 6889 and patch_count(392, 64, 10) == 1089
    assert patch_count(392, 64, 4, nimgs=2) == 13778 and patch_count(392, 64, 10, nimgs=2) == 2178
    assert stitched_size(392, 64, 10) == 330
    gt = ground_truth_image_of(np.zeros((392, 392), np.complex64), 64, 10)
    assert gt.shape == (330, 330)


def ground_truth_image_of(image: np.ndarray, N: int, stride: int) -> np.ndarray:
    from ptycho_model.stitching import clip_ground_truth

    return clip_ground_truth(image, N, stride)


@pytest.mark.parametrize(("size", "N", "stride"), [(72, 32, 8), (90, 32, 6), (100, 16, 4)])
def test_stitching_own_patches_reproduces_ground_truth(size: int, N: int, stride: int) -> None:
    obj = make_objects(size, 1, seed=3, stream=0, set_phi=True)
    patches = extract_patches(obj, N, stride)
    stitched = stitch_patches(patches, stride)
    gt = ground_truth_image_of(obj[0], N, stride)
    assert stitched.shape == gt.shape == (stitched_size(size, N, stride),) * 2
    np.testing.assert_array_equal(stitched, gt)


def test_stitch_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="not a positive square"):
        stitch_patches(np.zeros((5, 8, 8)), 4)
    with pytest.raises(ValueError, match="N - stride even"):
        stitch_patches(np.zeros((4, 8, 8)), 3)


# ------------------------------------------------------------------------------- simulation


def test_split_shapes_dtypes_and_properties(tiny: Datasets) -> None:
    tr, va, te = tiny.train, tiny.val, tiny.test
    assert (tr.n, va.n, te.n) == (121, 121, 36)
    assert (tr.n_side, tr.stride, te.n_side, te.stride, tr.N) == (11, 4, 6, 8, 32)
    for s in (tr, va, te):
        for key in ("diffraction", "Y_I", "Y_phi"):
            arr = getattr(s, key)
            assert arr.shape == (s.n, 32, 32, 1) and arr.dtype == np.float32
        assert s.coords_nominal.shape == s.coords_true.shape == (s.n, 1, 2, 1)
        assert not s.coords_nominal.any() and not s.coords_true.any()
        assert s.YY_full.shape == (1, 72, 72, 1) and s.YY_full.dtype == np.complex64
        assert s.probeGuess.shape == s.probe_simulated.shape == (32, 32)
        assert s.metadata["schema"] == "1.0.0" and s.metadata["physics_parameters"]["gridsize"] == 1
    ap = te.params
    assert (ap["outer_offset_train"], ap["outer_offset_test"], ap["offset"], ap["split"]) == (
        8,
        16,
        4,
        "test",
    )
    assert te.YY_ground_truth is not None and te.YY_ground_truth.shape == (48, 48, 1)
    np.testing.assert_array_equal(te.YY_ground_truth[..., 0], ground_truth_image(te))
    assert te.norm_Y_I is not None and te.norm_Y_I > 0
    assert tr.norm_Y_I is None and tr.YY_ground_truth is None and va.YY_ground_truth is None
    assert not tiny.val_is_test
    # splits draw separate object streams
    assert not np.allclose(tr.YY_full, te.YY_full) and not np.allclose(va.YY_full, tr.YY_full)
    np.testing.assert_array_equal(tr.probe_simulated, simulation_probe(tr.probeGuess))


def test_intensity_scale_hits_nphotons(tiny: Datasets) -> None:
    s = _scale(tiny.train, TINY.nphotons)
    amp = _noise_free_amp(tiny.train, s)
    assert np.mean(np.sum(amp**2, axis=(1, 2))) == pytest.approx(TINY.nphotons, rel=1e-4)
    counts = (tiny.train.diffraction[..., 0].astype(np.float64) * s) ** 2
    # 121 patches x 1e6 counts: the Poisson spread of the mean is ~1e-4 relative
    assert np.mean(np.sum(counts, axis=(1, 2))) == pytest.approx(TINY.nphotons, rel=2e-3)
    assert np.allclose(counts, np.round(counts), atol=0.05)  # integer counts


def test_noise_is_poisson(tiny: Datasets) -> None:
    s = _scale(tiny.train, TINY.nphotons)  # the test split reuses the train scale
    for split in (tiny.train, tiny.val, tiny.test):
        lam = _noise_free_amp(split, s) ** 2
        counts = (split.diffraction[..., 0].astype(np.float64) * s) ** 2
        bright = lam > 50
        z = (counts[bright] - lam[bright]) / np.sqrt(lam[bright])
        assert bright.sum() > 1000
        assert abs(z.mean()) < 0.1 and 0.9 < z.std() < 1.1
        # integer counts under the TRAIN scale: val / test reuse s (a split's own s would not)
        small = counts < 1e5
        assert small.mean() > 0.9
        np.testing.assert_allclose(counts[small], np.round(counts[small]), atol=0.05)


def test_train_is_shuffled_test_and_val_raster(tiny: Datasets) -> None:
    def raster_phi(split: Split) -> np.ndarray:
        return extract_patches(
            np.angle(split.YY_full[..., 0]).astype(np.float32), split.N, split.stride
        )

    perm = np.random.RandomState(0).permutation(tiny.train.n)  # upstream sklearn random_state=0
    np.testing.assert_array_equal(tiny.train.Y_phi[..., 0], raster_phi(tiny.train)[perm])
    np.testing.assert_array_equal(tiny.test.Y_phi[..., 0], raster_phi(tiny.test))
    np.testing.assert_array_equal(tiny.val.Y_phi[..., 0], raster_phi(tiny.val))


def test_stitched_test_labels_recover_the_object(tiny: Datasets) -> None:
    te = tiny.test
    y_i = te.Y_I[image0_patches(te), ..., 0] / np.abs(te.probe_simulated)
    stitched = stitch_patches(y_i, te.stride) * te.norm_Y_I
    np.testing.assert_allclose(stitched, np.abs(ground_truth_image(te)), rtol=1e-4)


def test_phase_target_follows_set_phi(tiny: Datasets) -> None:
    # 400 lines on a small canvas are dense, so the phase spread is small but must not vanish
    assert tiny.train.Y_phi.std() > 0.01 and tiny.test.Y_phi.std() > 0.01
    flat = simulate(dataclasses.replace(TINY, set_phi=False, n_val=0, val_is_test=True))
    assert flat.train.Y_phi.std() == 0 and flat.test.Y_phi.std() == 0
    assert flat.val is flat.test


def test_dummy_phi_formula_and_joint_normalisation() -> None:
    amps = np.stack([lines_amplitude(72, np.random.default_rng(i)) for i in range(2)])
    phi = dummy_phi(amps)
    assert phi.shape == amps.shape and phi.dtype == np.float32
    a = amps.astype(np.float64)
    ref = np.pi * np.tanh((a - a.max() / 2) / (3 * a.mean()))  # §1.2, max / mean over the split
    np.testing.assert_allclose(phi, ref, rtol=1e-6, atol=1e-6)
    assert not np.allclose(dummy_phi(amps[1:])[0], phi[1])


def test_lines_object_statistics_at_stage_a_size() -> None:
    amp = lines_amplitude(392, np.random.default_rng([1, 0, 0]))
    assert amp.shape == (392, 392) and amp.dtype == np.float32
    assert 2.0 < amp.mean() < 3.5 and amp.min() > 0.2 and amp.max() < 7  # §1.2: mean ~2.7-2.9
    phi = dummy_phi(amp[None])
    assert -1.2 < phi.min() < 0 < phi.max() < 1.2  # ~[-0.7, 0.9] rad


def test_determinism_and_seeds(tiny: Datasets, tmp_path: Path) -> None:
    again = simulate(TINY)
    a = save_datasets(tiny, tmp_path / "a")
    b = save_datasets(again, tmp_path / "b")
    assert [p.name for p in a] == ["train.npz", "test.npz", "val.npz"]
    for pa, pb in zip(a, b, strict=True):
        assert pa.read_bytes() == pb.read_bytes()
    other_noise = simulate(dataclasses.replace(TINY, noise_seed=1))
    np.testing.assert_array_equal(other_noise.train.Y_I, tiny.train.Y_I)
    assert not np.array_equal(other_noise.train.diffraction, tiny.train.diffraction)
    other_obj = simulate(dataclasses.replace(TINY, object_seed=2))
    assert not np.array_equal(other_obj.train.YY_full, tiny.train.YY_full)


def test_simulate_refuses_bad_config() -> None:
    with pytest.raises(ConfigError, match="data/noise_seed=-1"):
        simulate(dataclasses.replace(TINY, noise_seed=-1))
    with pytest.raises(ConfigError, match="data/stride_test=34"):
        simulate(dataclasses.replace(TINY, stride_test=34))
    with pytest.raises(ConfigError, match="data/N"):
        simulate(dataclasses.replace(TINY, N=33))


def test_simulate_with_probe_npz(tmp_path: Path) -> None:
    path = tmp_path / "probe.npz"
    np.savez(path, probeGuess=asymmetric(32))
    cfg = dataclasses.replace(TINY, probe=str(path), n_val=0, val_is_test=True)
    ds = simulate(cfg)
    np.testing.assert_array_equal(ds.train.probeGuess, smooth_probe(asymmetric(32)))
    fp = data_fingerprint(cfg)
    np.savez(path, probeGuess=asymmetric(32) * 2)
    assert data_fingerprint(cfg) != fp  # the probe file's content is part of the cache key


def test_data_fingerprint() -> None:
    fp = data_fingerprint(TINY)
    assert fp == data_fingerprint(DataConfig(**dataclasses.asdict(TINY)))
    assert len(fp) == 16 and int(fp, 16) >= 0
    assert data_fingerprint(dataclasses.replace(TINY, nphotons=1e7)) != fp


# ----------------------------------------------------------------------------------- NPZ I/O


def _assert_same_split(a: Split, b: Split) -> None:
    for f in dataclasses.fields(Split):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray):
            assert isinstance(y, np.ndarray) and x.dtype == y.dtype and x.shape == y.shape, f.name
            np.testing.assert_array_equal(x, y, err_msg=f.name)
        else:
            assert x == y, f.name


def test_npz_round_trip(tiny: Datasets, tmp_path: Path) -> None:
    for split in (tiny.train, tiny.test):
        path = save_split(split, tmp_path / f"{split.name}.npz")
        with np.load(path, allow_pickle=False) as npz:  # no pickle needed for our files
            assert npz["_metadata"].shape == () and npz["_metadata"].dtype.kind == "U"
            assert json.loads(str(npz["_metadata"]))["additional_parameters"]["split"] == split.name
            assert ("norm_Y_I" in npz.files) == (split.name == "test")
        _assert_same_split(split, load_split(path))
    save_datasets(tiny, tmp_path / "ds")
    loaded = load_datasets(tmp_path / "ds")
    _assert_same_split(tiny.val, loaded.val)
    as_test = load_datasets(tmp_path / "ds", val_is_test=True)
    assert as_test.val is as_test.test


def test_val_is_test_writes_no_val_file(tmp_path: Path) -> None:
    ds = simulate(dataclasses.replace(TINY, n_val=0, val_is_test=True))
    names = [p.name for p in save_datasets(ds, tmp_path)]
    assert names == ["train.npz", "test.npz"]
    with pytest.raises(DataError, match="val.npz.*val_is_test"):
        load_datasets(tmp_path)


def _upstream_style(
    split: Split, path: Path, drop: tuple[str, ...] = (), **override: np.ndarray
) -> Path:
    """An NPZ as upstream writes it: pickled metadata object, no probe_simulated, no stride."""
    meta = json.loads(json.dumps(split.metadata))
    for key in ("stride", "n_side", "split"):
        meta["additional_parameters"].pop(key)
    arrays = {
        "diffraction": split.diffraction,
        "Y_I": split.Y_I,
        "Y_phi": split.Y_phi,
        "coords_nominal": split.coords_nominal,
        "coords_true": split.coords_true,
        "YY_full": split.YY_full,
        "probeGuess": split.probeGuess,
        "_metadata": np.array(json.dumps(meta), dtype=object),
    }
    arrays.update(override)
    for key in drop:
        arrays.pop(key)
    np.savez(path, **arrays)
    return path


def test_upstream_format_loads(tiny: Datasets, tmp_path: Path) -> None:
    loaded = load_split(_upstream_style(tiny.test, tmp_path / "test.npz"))
    np.testing.assert_array_equal(loaded.probe_simulated, tiny.test.probe_simulated)
    assert (loaded.stride, loaded.n_side, loaded.name) == (8, 6, "test")  # from outer_offset_test
    bare = _upstream_style(tiny.train, tmp_path / "x.npz", drop=("_metadata",))
    got = load_split(bare)
    assert (got.stride, got.n_side) == (4, 11)  # from the patch count alone


@pytest.mark.parametrize(
    ("drop", "override", "key"),
    [
        (("Y_I",), {}, "Y_I"),
        ((), {"diffraction": np.zeros((121, 32, 32), np.float32)}, "diffraction"),
        ((), {"Y_phi": np.full((121, 32, 32, 1), np.nan, np.float32)}, "Y_phi"),
        ((), {"probeGuess": np.ones((16, 16), np.complex64)}, "probeGuess"),
        ((), {"coords_true": np.zeros((120, 1, 2, 1), np.float32)}, "coords_true"),
        ((), {"_metadata": np.array("{not json", dtype=object)}, "_metadata"),
    ],
)
def test_malformed_npz_is_refused(tiny: Datasets, tmp_path: Path, drop, override, key) -> None:
    path = _upstream_style(tiny.train, tmp_path / "broken.npz", drop=drop, **override)
    with pytest.raises(DataError) as info:
        load_split(path)
    assert "broken.npz" in str(info.value) and repr(key) in str(info.value)


def test_not_an_npz_or_missing(tmp_path: Path) -> None:
    text = tmp_path / "train.npz"
    text.write_text("hello")
    with pytest.raises(DataError, match="not a readable NPZ"):
        load_split(text)
    with pytest.raises(DataError, match="not found"):
        load_split(tmp_path / "absent.npz")


def test_save_refuses_malformed_split(tiny: Datasets, tmp_path: Path) -> None:
    bad = dataclasses.replace(tiny.test, Y_I=tiny.test.Y_I[..., 0])
    with pytest.raises(DataError, match="'Y_I' must have rank 4"):
        save_split(bad, tmp_path / "bad.npz")
    assert not (tmp_path / "bad.npz").exists()


def test_a_phase_only_object_keeps_the_phase_and_flattens_the_amplitude(tiny: Datasets) -> None:
    """``data/phase_only``: each image's amplitude is its mean, its phase the lines object's; the
    cache key changes only for it, and an object with no phase is refused."""
    flat = simulate(dataclasses.replace(TINY, phase_only=True))
    obj, ref = flat.train.YY_full[..., 0], tiny.train.YY_full[..., 0]
    amp = np.abs(obj)
    assert amp.std(axis=(1, 2)).max() < 1e-5 * amp.mean()
    np.testing.assert_allclose(np.angle(obj), np.angle(ref), atol=1e-5)
    assert data_fingerprint(dataclasses.replace(TINY, phase_only=True)) != data_fingerprint(TINY)
    with pytest.raises(ConfigError, match="phase_only"):
        simulate(dataclasses.replace(TINY, phase_only=True, set_phi=False))
