"""Probes: ideal-disk geometry, asymmetric probe, smoothing, set_probe norm, NPZ loading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from ptycho_model.physics import twin
from ptycho_model.probes import (
    PROBES,
    ProbeError,
    asymmetric,
    ideal_disk,
    load_probe_npz,
    make_probe,
    simulation_mask,
    simulation_probe,
    smooth_probe,
)


def _rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(a))


def test_ideal_disk_geometry_at_64() -> None:
    p = ideal_disk(64)
    assert p.shape == (64, 64) and p.dtype == np.complex64
    assert np.all(p.imag == 0) and p.real.min() > 0  # real, + 1e-9 floor
    lit = np.abs(p) > 0.5
    assert lit.sum() == 376  # §1.1: disk of radius ~10.9 px
    rows = np.flatnonzero(lit.any(axis=1))
    assert (rows[0], rows[-1]) == (21, 42)
    np.testing.assert_array_equal(p, p[::-1, ::-1])  # symmetric about the pixel-boundary centre
    assert np.abs(p).max() == pytest.approx(1.0, abs=0.01)


def test_simulation_probe_of_ideal_disk() -> None:
    guess = smooth_probe(ideal_disk(64))
    norm = 10 * np.mean(np.abs(guess * simulation_mask(64)))
    assert norm == pytest.approx(0.918, abs=0.002)
    p_sim = simulation_probe(guess)
    assert p_sim.dtype == np.complex64
    assert np.abs(p_sim).max() == pytest.approx(1.09, abs=0.005)
    np.testing.assert_allclose(p_sim, guess / norm, rtol=1e-6)


def test_simulation_probe_formula_on_a_flat_probe() -> None:
    N = 32
    mask = simulation_mask(N)
    assert mask.sum() == np.sum(
        np.hypot(*np.meshgrid(np.arange(N) - 15.5, np.arange(N) - 15.5)) < 8
    )
    p_sim = simulation_probe(np.full((N, N), 2.0, dtype=np.complex64))
    np.testing.assert_allclose(p_sim, 2.0 / (10 * 2.0 * mask.sum() / N**2), rtol=1e-6)
    with pytest.raises(ProbeError, match="zero inside"):
        simulation_probe(np.zeros((N, N), dtype=np.complex64))


@pytest.mark.parametrize("N", [32, 64])
def test_asymmetric_probe_is_not_centrosymmetric(N: int) -> None:
    p = smooth_probe(asymmetric(N))
    amp = np.abs(p)
    disk = np.abs(ideal_disk(N))
    # 180-degree rotation about the probe centre, and the DFT-convention twin used by the metrics
    assert _rel_diff(disk, disk[::-1, ::-1]) == 0.0
    assert _rel_diff(amp, amp[::-1, ::-1]) > 0.25
    assert _rel_diff(amp, np.abs(twin(p))) > _rel_diff(disk, np.abs(twin(ideal_disk(N)))) + 0.1
    # a comparable footprint and a non-trivial phase over it
    assert 0.5 < (amp > 0.3).sum() / (disk > 0.5).sum() < 2.0
    phase = np.angle(p * np.exp(-1j * np.angle(p[N // 2, N // 2])))[amp > 0.3]
    assert phase.std() > 0.1
    np.testing.assert_array_equal(asymmetric(N), asymmetric(N))  # deterministic


def test_smooth_probe_unwraps_phase_before_blurring() -> None:
    N = 32
    yy, xx = np.meshgrid(np.arange(N), np.arange(N), indexing="ij")
    ramp = 1.3 * xx + 0.4 * yy  # wraps many times across the probe
    probe = (np.ones((N, N)) * np.exp(1j * ramp)).astype(np.complex64)
    out = smooth_probe(probe, sigma=0.5)
    assert out.dtype == np.complex64
    inner = (slice(4, -4), slice(4, -4))
    # a Gaussian leaves a linear phase unchanged away from the edges; blurring the wrapped phase
    # (or the complex field) would not
    np.testing.assert_allclose(np.angle(out[inner] * np.conj(probe[inner])), 0, atol=1e-4)
    np.testing.assert_allclose(np.abs(out), gaussian_filter(np.ones((N, N)), 0.5), rtol=1e-5)
    np.testing.assert_array_equal(smooth_probe(probe, sigma=0), probe)


def _save(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


def test_load_probe_npz_same_size_and_padding(tmp_path: Path) -> None:
    p = asymmetric(32)
    same = load_probe_npz(_save(tmp_path / "p32.npz", probeGuess=p), 32)
    np.testing.assert_array_equal(same, p)
    small = asymmetric(16)
    padded = load_probe_npz(_save(tmp_path / "p16.npz", probeGuess=small), 32)
    assert padded.shape == (32, 32) and padded.dtype == np.complex64
    np.testing.assert_array_equal(padded[8:24, 8:24], small)
    assert np.count_nonzero(padded) == np.count_nonzero(small)


def test_load_probe_npz_refuses_larger(tmp_path: Path) -> None:
    path = _save(tmp_path / "big.npz", probeGuess=asymmetric(64))
    with pytest.raises(ProbeError, match=r"64x64 is larger than data/N=32"):
        load_probe_npz(path, 32)


@pytest.mark.parametrize(
    ("arrays", "match"),
    [
        ({"probe": np.ones((8, 8), np.complex64)}, "key 'probeGuess'.*key missing.*'probe'"),
        ({"probeGuess": np.ones((2, 8, 8), np.complex64)}, r"square \(M, M\).*shape=\(2, 8, 8\)"),
        ({"probeGuess": np.ones((8, 6), np.complex64)}, r"square \(M, M\)"),
        ({"probeGuess": np.full((8, 8), np.nan, np.complex64)}, "NaN/Inf"),
        ({"probeGuess": np.zeros((8, 8), np.complex64)}, "identically zero"),
    ],
)
def test_load_probe_npz_refusals_name_file_and_key(tmp_path: Path, arrays, match) -> None:
    path = _save(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ProbeError, match=match) as info:
        load_probe_npz(path, 16)
    assert "bad.npz" in str(info.value) and "probeGuess" in str(info.value)


def test_load_probe_npz_missing_or_not_npz(tmp_path: Path) -> None:
    with pytest.raises(ProbeError, match="file not found"):
        load_probe_npz(tmp_path / "nope.npz", 16)
    text = tmp_path / "text.npz"
    text.write_text("not a zip")
    with pytest.raises(ProbeError, match="cannot be read"):
        load_probe_npz(text, 16)


@pytest.mark.parametrize("name", sorted(PROBES))
def test_every_registered_probe(name: str) -> None:
    p = make_probe(name, 32)
    assert p.shape == (32, 32) and p.dtype == np.complex64 and np.isfinite(p).all()
    p_sim = simulation_probe(smooth_probe(p))
    assert np.isfinite(p_sim).all() and np.abs(p_sim).max() > 0


def test_make_probe_path_and_unknown(tmp_path: Path) -> None:
    path = _save(tmp_path / "mine.npz", probeGuess=asymmetric(32))
    np.testing.assert_array_equal(make_probe(str(path), 32), asymmetric(32))
    with pytest.raises(
        ProbeError, match=r"unknown data/probe='ideal_disc'.*asymmetric.*ideal_disk"
    ):
        make_probe("ideal_disc", 32)
