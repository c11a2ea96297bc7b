"""Tests of ptycho_model.metrics against hand-computed cases (tiny arrays, no GPU)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ptycho_model import names
from ptycho_model.metrics import (
    PSNR_CAP_DB,
    constant_fingerprint,
    eval_reconstruction,
    frc_curve,
    frc_threshold,
    normalise_amplitude,
    remove_plane,
    trim,
)

EVAL_KEYS = {
    names.AMP_SSIM,
    names.PHASE_SSIM,
    names.AMP_MAE,
    names.PHASE_MAE,
    names.AMP_PSNR,
    names.PHASE_PSNR,
    names.AMP_FRC50,
    names.PHASE_FRC50,
    "amp_mse",
    "phase_mse",
}


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    return x, y


def _object(h: int = 36, w: int = 36, seed: int = 0) -> np.ndarray:
    """A (h, w) complex object: structured amplitude in [0.5, 1.5], phase within +-0.6 rad."""
    rng = np.random.default_rng(seed)
    x, y = _grid(h, w)
    amp = 1.0 + 0.3 * np.sin(x / 3.0) * np.cos(y / 4.0) + 0.2 * rng.uniform(-1, 1, (h, w))
    phase = 0.4 * np.cos(x / 5.0 + y / 7.0) + 0.2 * rng.uniform(-1, 1, (h, w))
    return amp * np.exp(1j * phase)


def _distort(obj: np.ndarray, seed: int = 1) -> np.ndarray:
    """An imperfect prediction of ``obj``: amplitude and phase noise, phase well inside +-pi."""
    rng = np.random.default_rng(seed)
    amp = np.abs(obj) * (1.0 + 0.1 * rng.standard_normal(obj.shape))
    phase = np.angle(obj) + 0.1 * rng.standard_normal(obj.shape)
    return amp * np.exp(1j * phase)


# --- trim, remove_plane, normalise_amplitude -------------------------------------------------


def test_trim_drops_k_per_side() -> None:
    img = np.arange(330 * 330).reshape(330, 330)
    out = trim(img)
    assert out.shape == (326, 326)
    assert out[0, 0] == img[2, 2] and out[-1, -1] == img[-3, -3]
    assert trim(img, 0) is not None and trim(img, 0).shape == (330, 330)
    with pytest.raises(ValueError, match="k=-1"):
        trim(img, -1)


def test_remove_plane_removes_exact_plane() -> None:
    x, y = _grid(20, 30)
    plane = 0.3 * x - 0.7 * y + 1.25
    assert np.max(np.abs(remove_plane(plane))) < 1e-10


def test_remove_plane_leaves_zero_mean_nonplanar_residual() -> None:
    x, y = _grid(20, 30)
    bump = ((x - 14.5) / 10.0) ** 2 + np.sin(y / 3.0)
    res = remove_plane(bump + 0.3 * x - 0.7 * y + 1.25)
    assert abs(res.mean()) < 1e-12
    # The residual is what is left of the bump alone: orthogonal to x and y, and not zero.
    np.testing.assert_allclose(res, remove_plane(bump), atol=1e-10)
    assert abs(np.sum(res * (x - x.mean()))) < 1e-8 and abs(np.sum(res * (y - y.mean()))) < 1e-8
    assert np.std(res) > 0.1


def test_normalise_amplitude_matches_mean_and_guards_zero() -> None:
    t = np.array([[1.0, 2.0], [3.0, 6.0]])  # mean 3
    p = np.array([[2.0, 0.0], [1.0, 1.0]])  # mean 1
    np.testing.assert_allclose(normalise_amplitude(p, t), 3.0 * p)
    np.testing.assert_array_equal(normalise_amplitude(np.zeros((2, 2)), t), np.full((2, 2), 3.0))


# --- FRC -------------------------------------------------------------------------------------


def test_frc_threshold_interpolation_convention() -> None:
    # First shell below 0.5 is 2 (0.4); interpolate between shells 1 (0.8) and 2: 1 + 0.3/0.4.
    assert frc_threshold([1.0, 0.8, 0.4, 0.2], 0.5) == pytest.approx(1.75)
    assert frc_threshold([1.0, 0.9, 0.6], 0.5) == 3.0  # never drops: len(curve)
    assert frc_threshold([0.3, 0.9], 0.5) == 0.0  # already below at shell 0
    assert frc_threshold([1.0, 0.5, 0.25], 0.5) == pytest.approx(1.0)  # "below" is strict
    assert frc_threshold([1.0, 0.8, 0.4, 0.2], 1 / 7) == 4.0


def test_frc_threshold_skips_undefined_shells() -> None:
    # NaN shells are skipped: interpolate between defined neighbours, shells 0 (1.0) and 2 (0.2).
    assert frc_threshold([1.0, math.nan, 0.2], 0.5) == pytest.approx(0.0 + 2 * 0.5 / 0.8)
    assert frc_threshold([math.nan, 0.9, 0.1], 0.5) == pytest.approx(1.5)  # phase DC shell is NaN
    assert frc_threshold([math.nan, 0.3, 0.9], 0.5) == 1.0  # nothing defined before the crossing
    assert frc_threshold([1.0, 0.4, math.nan], 0.5) == pytest.approx(5.0 / 6.0)
    assert frc_threshold([math.nan, 0.9, math.nan], 0.5) == 3.0
    assert math.isnan(frc_threshold([math.nan, math.nan], 0.5))
    assert math.isnan(frc_threshold([], 0.5))


def test_frc_of_image_with_itself_is_one() -> None:
    img = np.abs(_object(32, 32))
    curve = frc_curve(img, img)
    assert curve.shape == (16,)
    np.testing.assert_allclose(curve, 1.0, atol=1e-12)
    assert frc_threshold(curve, 0.5) == len(curve)


def test_frc_of_independent_noise_is_near_zero() -> None:
    rng = np.random.default_rng(7)
    a, b = rng.standard_normal((2, 64, 64))
    curve = frc_curve(a, b)
    assert curve.shape == (32,)
    assert np.all(np.abs(curve) <= 1.0 + 1e-12)
    # Shell r holds ~2*pi*r pixels, so the noise correlation shrinks like 1/sqrt(r).
    assert np.mean(np.abs(curve[4:])) < 0.15
    assert abs(np.mean(curve[4:])) < 0.05
    assert np.all(np.abs(curve[8:]) < 0.35)
    assert frc_threshold(curve, 0.5) < 3.0


def test_frc_empty_shell_conventions() -> None:
    img = np.abs(_object(16, 16))
    zeros = np.zeros_like(img)
    assert np.all(np.isnan(frc_curve(zeros, zeros)))  # nothing to compare anywhere
    assert math.isnan(frc_threshold(frc_curve(zeros, zeros), 0.5))
    np.testing.assert_array_equal(frc_curve(img, zeros), 0.0)  # content against none: 0
    # A constant image correlates with img only at DC (both positive means): 1, then 0.
    curve = frc_curve(img, np.full_like(img, 2.0))
    assert curve[0] == pytest.approx(1.0) and np.all(curve[1:] == 0.0)
    assert frc_threshold(curve, 0.5) == pytest.approx(0.5)


# --- eval_reconstruction ---------------------------------------------------------------------


def test_perfect_reconstruction() -> None:
    gt = _object()
    m = eval_reconstruction(gt.copy(), gt)
    assert set(m) == EVAL_KEYS
    assert all(type(v) is float for v in m.values())
    assert m[names.AMP_SSIM] == pytest.approx(1.0, abs=1e-12)
    assert m[names.PHASE_SSIM] == pytest.approx(1.0, abs=1e-12)
    for k in (names.AMP_MAE, names.PHASE_MAE, "amp_mse", "phase_mse"):
        assert m[k] == pytest.approx(0.0, abs=1e-14)
    assert m[names.AMP_PSNR] == PSNR_CAP_DB and m[names.PHASE_PSNR] == PSNR_CAP_DB
    n_shells = len(frc_curve(trim(np.abs(gt)), trim(np.abs(gt))))
    assert n_shells == 16  # 36 - 2*2 = 32 px -> 16 shells
    assert m[names.AMP_FRC50] == n_shells and m[names.PHASE_FRC50] == n_shells


def test_amplitude_scale_is_ignored() -> None:
    gt = _object()
    pred = _distort(gt)
    m1, m2 = eval_reconstruction(pred, gt), eval_reconstruction(3.7 * pred, gt)
    assert m1[names.AMP_MAE] > 0.01  # the distortion is visible
    assert all(math.isfinite(v) for v in m1.values())  # the phase's empty DC shell is skipped
    for k in EVAL_KEYS:
        assert m2[k] == pytest.approx(m1[k], rel=1e-9, abs=1e-12), k


def test_phase_offset_and_ramp_are_ignored() -> None:
    gt = _object()
    pred = _distort(gt)
    x, y = _grid(*gt.shape)
    # |phase| <= ~1 rad plus at most 0.3 + 0.35*2 rad: no wrapping across +-pi.
    ramp = 0.3 + 0.01 * x - 0.02 * (y - 17.0)
    m1, m2 = eval_reconstruction(pred, gt), eval_reconstruction(pred * np.exp(1j * ramp), gt)
    assert np.max(np.abs(np.angle(pred) + ramp)) < np.pi
    assert m1[names.PHASE_MAE] > 0.01
    for k in EVAL_KEYS:
        assert m2[k] == pytest.approx(m1[k], rel=1e-9, abs=1e-12), k


def test_psnr_matches_hand_formula() -> None:
    gt = _object()
    a_t = trim(np.abs(gt))
    x, y = _grid(*a_t.shape)
    checker = 0.1 * (-1.0) ** (x + y)  # zero mean on an even grid: the normalisation factor is 1
    pred = np.pad(a_t + checker, 2, mode="edge").astype(np.complex128)
    m = eval_reconstruction(pred, gt)
    assert m[names.AMP_PSNR] == pytest.approx(20.0 * math.log10(255.0 / 0.1), rel=1e-9)
    assert m["amp_mse"] == pytest.approx(0.01, rel=1e-9)


def test_mae_mse_on_hand_computed_4x4() -> None:
    a_t = np.arange(1.0, 17.0).reshape(4, 4)  # mean 8.5
    a_p = a_t.copy()
    a_p[0] = [4.0, 3.0, 2.0, 1.0]  # same mean; |diff| = 3, 1, 1, 3 in row 0
    x, y = _grid(4, 4)
    checker = 0.1 * (-1.0) ** (x + y)  # orthogonal to 1, x, y on a 4x4 grid: survives the plane fit
    gt = a_t.astype(np.complex128)  # phase 0
    pred = 2.0 * a_p * np.exp(1j * checker)  # the factor 2 is undone by mean-normalisation
    m = eval_reconstruction(pred, gt, trim_px=0)
    assert m[names.AMP_MAE] == pytest.approx(8.0 / 16.0)
    assert m["amp_mse"] == pytest.approx((9.0 + 1.0 + 1.0 + 9.0) / 16.0)
    assert m[names.PHASE_MAE] == pytest.approx(0.1)
    assert m["phase_mse"] == pytest.approx(0.01)
    assert m[names.PHASE_PSNR] == pytest.approx(20.0 * math.log10(255.0 / 0.1))
    assert math.isfinite(m[names.AMP_SSIM]) and m[names.AMP_SSIM] < 1.0  # 3x3 window on a 4x4 image


def test_flat_phase_target_gives_nan_phase_frc_only() -> None:
    amp = np.abs(_object(20, 20))
    gt = amp.astype(np.complex128)  # phase identically 0 (upstream Stage A)
    pred = amp * np.exp(0.3j)  # constant phase: flat after plane removal
    m = eval_reconstruction(pred, gt)
    assert math.isnan(m[names.PHASE_FRC50])
    assert m[names.PHASE_SSIM] == pytest.approx(1.0)
    assert m[names.PHASE_MAE] == 0.0 and m[names.PHASE_PSNR] == PSNR_CAP_DB
    assert all(math.isfinite(v) for k, v in m.items() if k != names.PHASE_FRC50)


def test_shape_mismatch_is_rejected() -> None:
    with pytest.raises(ValueError, match="one shape"):
        eval_reconstruction(np.ones((8, 8)), np.ones((8, 9)))


# --- collapse fingerprint --------------------------------------------------------------------


def test_constant_prediction_scores_the_fingerprint() -> None:
    gt = _object()
    fp = constant_fingerprint(gt)
    assert set(fp) == {names.AMP_SSIM_CONSTANT, "amp_mae_constant"}
    for level in (1.0, 5.0, 0.0):  # any constant amplitude, including 0, normalises to mean(a_t)
        m = eval_reconstruction(np.full(gt.shape, level, dtype=np.complex128), gt)
        assert m[names.AMP_SSIM] == fp[names.AMP_SSIM_CONSTANT]
        assert m[names.AMP_MAE] == pytest.approx(fp["amp_mae_constant"], rel=1e-12)
        assert m[names.AMP_FRC50] == pytest.approx(0.5)  # DC only: defined, and low
    a_t = trim(np.abs(gt))
    assert fp["amp_mae_constant"] == pytest.approx(np.mean(np.abs(a_t - a_t.mean())), rel=1e-12)
    assert 0.0 <= fp[names.AMP_SSIM_CONSTANT] < 0.5  # a constant image is a poor reconstruction
