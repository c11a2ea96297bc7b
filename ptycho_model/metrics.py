"""Reconstruction metrics: upstream's ``eval_reconstruction`` (``ptycho/evaluation.py``), redone.

Holds the scoring of one stitched complex object against its ground truth (docs/physics.md §6):
border trim, amplitude mean-normalisation, per-image least-squares plane removal on the phase,
MAE / MSE / PSNR / SSIM / FRC50 for amplitude and phase, and the "collapse fingerprint" (§7.2): the
score a constant-amplitude prediction gets on the ground truth at hand.

SSIM and PSNR come from scikit-image; the plane fit and the Fourier ring correlation are written
here with numpy (no well-kept library does upstream's exact variant).

Deliberately left out: MS-SSIM and ``frc1over7`` (upstream computes them; nothing here ranks on
them), phase unwrapping (upstream does none), the twin-image orientation (``physics.twin`` and
``evaluate.py``), and the prediction's output-std collapse signal (computed by training).

Every value returned is a plain Python ``float``. Values are finite wherever they are defined; NaN
marks a metric that is mathematically undefined for the inputs (the FRC of an identically-zero
target, e.g. the phase FRC of a flat phase; the SSIM of a constant ground-truth amplitude). The
PSNR of a perfect prediction is capped at :data:`PSNR_CAP_DB` instead of ``inf`` so that results
stay JSON-safe.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from . import names

__all__ = [
    "PSNR_CAP_DB",
    "PSNR_PEAK",
    "constant_fingerprint",
    "eval_reconstruction",
    "frc_curve",
    "frc_threshold",
    "normalise_amplitude",
    "remove_plane",
    "trim",
]

PSNR_PEAK = 255.0  # upstream's cv2.PSNR default peak, whatever the data range (PHYSICS §6, §8)
PSNR_CAP_DB = 100.0  # finite stand-in for the PSNR of a perfect prediction (inf is not JSON)
_FLAT_PHASE_ATOL = 1e-10  # rad; a plane-removed phase below this everywhere is treated as exactly 0
_FRC_REL_POWER = 1e-24  # a shell holding less than this fraction of an image's energy is empty
_SSIM_WIN = 7  # skimage's default window (uniform, 7x7), as upstream


def trim(img: npt.ArrayLike, k: int = 2) -> np.ndarray:
    """Drop ``k`` pixels from each side of the last two axes: (..., H, W) -> (..., H-2k, W-2k).

    Upstream trims ``offset/2 = 2`` px per side before scoring (``ptycho/evaluation.py``), so a
    330x330 stitched image is scored on its central 326x326.
    """
    a = np.asarray(img)
    if a.ndim < 2:
        raise ValueError(f"trim: img must have at least 2 dims, got shape {a.shape}")
    if k < 0 or 2 * k >= min(a.shape[-2:]):
        raise ValueError(f"trim: {k=} must be >= 0 and leave pixels of an image of shape {a.shape}")
    if k == 0:
        return a
    return a[..., k:-k, k:-k]


def remove_plane(phase: npt.ArrayLike) -> np.ndarray:
    """Subtract the least-squares plane ``a*x + b*y + c``: (H, W) float -> (H, W) float64.

    ``x`` is the column index and ``y`` the row index (both centred for conditioning). The residual
    has zero mean and no linear trend. No unwrapping is done (upstream's ``ptycho/evaluation.py``
    fits the wrapped ``angle`` directly). A non-finite input gives an all-NaN output.
    """
    ph = np.asarray(phase, dtype=np.float64)
    if ph.ndim != 2:
        raise ValueError(f"remove_plane: phase must be (H, W), got shape {ph.shape}")
    if not np.all(np.isfinite(ph)):
        return np.full(ph.shape, np.nan)
    h, w = ph.shape
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    cols = [(x - x.mean()).ravel(), (y - y.mean()).ravel(), np.ones(h * w)]
    design = np.stack(cols, axis=1)  # (HW, 3)
    coef, *_ = np.linalg.lstsq(design, ph.ravel(), rcond=None)
    return ph - (design @ coef).reshape(h, w)


def normalise_amplitude(pred_amp: npt.ArrayLike, true_amp: npt.ArrayLike) -> np.ndarray:
    """Rescale ``pred_amp`` (H, W) to the mean of ``true_amp``: ``pred * mean(true) / mean(pred)``.

    Returns (H, W) float64.

    Upstream's mean-normalisation (``ptycho/evaluation.py``). A prediction whose mean is exactly 0
    (an all-zero amplitude) carries no scale, so it is treated like any other constant prediction:
    the result is the constant image ``mean(true)`` — what a constant non-zero prediction becomes
    after normalisation, i.e. the collapse fingerprint's input.
    """
    p = np.asarray(pred_amp, dtype=np.float64)
    t = np.asarray(true_amp, dtype=np.float64)
    mt, mp = t.mean(), p.mean()
    if mp == 0:
        return np.full(p.shape, mt)
    return p * (mt / mp)


def _ring_index(shape: tuple[int, int]) -> tuple[np.ndarray, int]:
    """Shell index ``rint(|k|)`` (H, W) about the fftshift centre (H//2, W//2), and the shell count.

    Shells run 0 .. min(H, W)//2 - 1 (the full circles inside the image); corner frequencies
    beyond them are left out.
    """
    h, w = shape
    ky, kx = np.mgrid[0:h, 0:w]
    r = np.rint(np.hypot(ky - h // 2, kx - w // 2)).astype(np.int64)
    return r, min(h, w) // 2


def frc_curve(a: npt.ArrayLike, b: npt.ArrayLike) -> np.ndarray:
    """Fourier ring correlation of two real (H, W) images: (min(H, W)//2,) float64, shell 0 = DC.

    ``FRC(r) = Re sum_r F1 conj(F2) / sqrt(sum_r |F1|^2 * sum_r |F2|^2)`` over integer-radius
    shells ``rint(|k|) = r`` about the fftshift centre (upstream's FRC in ``ptycho/evaluation.py``;
    no windowing, no mean subtraction).

    Empty shells (power below ``1e-24`` of the image's total spectral energy, so that FFT rounding
    of a constant image does not pass for signal) make the ratio 0/0. This module's convention:
      * both images empty in a shell -> NaN (nothing to compare; e.g. the DC shell of two
        plane-removed, hence zero-mean, phases, or every shell of two all-zero images);
      * exactly one empty -> 0.0 (one image has content at that frequency and the other none: no
        correlation; this gives a constant prediction a low FRC instead of an undefined one).
    """
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.ndim != 2 or x.shape != y.shape:
        raise ValueError(
            f"frc_curve: need two (H, W) images of one shape, got {x.shape} and {y.shape}"
        )
    f1 = np.fft.fftshift(np.fft.fft2(x))
    f2 = np.fft.fftshift(np.fft.fft2(y))
    r, n = _ring_index(x.shape)
    inside = r < n
    ri = r[inside]

    def ring(v: np.ndarray) -> np.ndarray:
        return np.bincount(ri, weights=v[inside], minlength=n)[:n]

    p1, p2 = np.abs(f1) ** 2, np.abs(f2) ** 2
    num = ring(np.real(f1 * np.conj(f2)))
    d1, d2 = ring(p1), ring(p2)
    has1 = d1 > _FRC_REL_POWER * p1.sum()
    has2 = d2 > _FRC_REL_POWER * p2.sum()
    both = has1 & has2
    out = np.where(has1 | has2, 0.0, np.nan)
    out[both] = num[both] / np.sqrt(d1[both] * d2[both])
    return out


def frc_threshold(curve: npt.ArrayLike, thr: float = 0.5) -> float:
    """Fractional shell at which ``curve`` first drops below ``thr``; float.

    Convention: NaN shells (undefined, see :func:`frc_curve`) are skipped. If shell ``i`` is the
    first defined shell with ``curve[i] < thr`` (strictly) and ``j < i`` the last defined shell
    before it, the crossing is linearly interpolated between them:
    ``j + (i - j) * (curve[j] - thr) / (curve[j] - curve[i])`` — e.g. ``[1, 0.8, 0.4, 0.2]`` with
    ``thr = 0.5`` gives ``1 + 0.3/0.4 = 1.75``. If no defined shell precedes ``i`` (``i = 0``, or
    only NaN before it), the result is ``float(i)``. If the curve never drops below,
    ``len(curve)``. NaN if the curve is empty or has no defined shell.
    """
    c = np.asarray(curve, dtype=np.float64).ravel()
    defined = np.flatnonzero(~np.isnan(c))
    if defined.size == 0:
        return math.nan
    below = defined[c[defined] < thr]
    if below.size == 0:
        return float(c.size)
    i = int(below[0])
    before = defined[defined < i]
    if before.size == 0:
        return float(i)
    j = int(before[-1])
    return float(j + (i - j) * (c[j] - thr) / (c[j] - c[i]))


def _frc50(t: np.ndarray, p: np.ndarray) -> float:
    """FRC50 of prediction ``p`` against target ``t``; NaN when the target is identically 0.

    An all-zero target (e.g. a flat phase after plane removal) has nothing to resolve, so its FRC
    is undefined whatever the prediction (``frc_curve`` alone would score a non-zero prediction 0).
    """
    if not np.any(t):
        return math.nan
    return frc_threshold(frc_curve(t, p), 0.5)


def _ssim(t: np.ndarray, p: np.ndarray, data_range: float) -> float:
    """skimage SSIM with its defaults (7x7 uniform window, sample covariance), as upstream.

    Images smaller than 7 px on a side (tests only) use the largest odd window that fits; below
    3 px, or with a zero/non-finite data range, SSIM is undefined and NaN is returned.
    """
    win = min(_SSIM_WIN, *t.shape)
    win -= 1 - win % 2  # skimage needs an odd window
    if win < 3 or not (data_range > 0 and math.isfinite(data_range)):
        return math.nan
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(p))):
        return math.nan
    return float(structural_similarity(t, p, data_range=data_range, win_size=win))


def _psnr(t: np.ndarray, p: np.ndarray) -> float:
    """``20 log10(255 / RMSE)`` via skimage with ``data_range=255`` (upstream's cv2.PSNR peak).

    Capped at :data:`PSNR_CAP_DB` (a perfect prediction would give inf); NaN for non-finite input.
    """
    mse = float(np.mean((t - p) ** 2))
    if not math.isfinite(mse):
        return math.nan
    if mse == 0.0:
        return PSNR_CAP_DB
    return min(PSNR_CAP_DB, float(peak_signal_noise_ratio(t, p, data_range=PSNR_PEAK)))


def _flat_phase(phase: np.ndarray) -> np.ndarray:
    """Angle minus its LS plane, snapped to exactly 0 when it is flat to rounding (<= 1e-10 rad).

    A constant or planar phase (Stage A's zero phase target, docs/physics.md §7.1) leaves
    ~1e-16 rad of rounding after the fit; without the snap its FRC would correlate rounding noise.
    """
    res = remove_plane(phase)
    if np.all(np.isfinite(res)) and np.max(np.abs(res)) <= _FLAT_PHASE_ATOL:
        return np.zeros_like(res)
    return res


def eval_reconstruction(
    pred: npt.ArrayLike, gt: npt.ArrayLike, trim_px: int = 2
) -> dict[str, float]:
    """Score a stitched complex prediction against the ground truth, as upstream does.

    Re-implements ``eval_reconstruction`` of upstream's ``ptycho/evaluation.py``.

    Args:
        pred: (H, W) complex stitched prediction (e.g. 330x330).
        gt: (H, W) complex ground truth, same shape.
        trim_px: pixels dropped per side before scoring (upstream: ``offset/2 = 2``).

    Steps (``ptycho/evaluation.py``, docs/physics.md §6), on the trimmed images:
      * amplitude: ``a_t = |gt|``, ``a_p = |pred| * mean(a_t) / mean(|pred|)`` (see
        :func:`normalise_amplitude`);
      * phase: ``angle`` of each, minus each image's own least-squares plane; no unwrapping, no
        wrapping of differences (a global phase offset or ramp is thus ignored);
      * MAE ``mean|t - p|``, MSE ``mean (t - p)^2``;
      * PSNR ``20 log10(255 / RMSE)`` — peak **255** whatever the data range, as upstream's
        ``cv2.PSNR`` default (skimage with ``data_range=255``); not comparable with [0, 1]-range
        PSNRs. Capped at 100 dB for a perfect prediction;
      * SSIM: skimage defaults (7x7 uniform window); amplitude with ``data_range = max(a_t) -
        min(a_t)``, phase on ``(phi + pi) / 2pi`` with ``data_range = 1``;
      * FRC50: :func:`frc_threshold` at 0.5 of :func:`frc_curve`, in shells (undefined shells,
        such as the DC of two zero-mean phases, skipped).

    Returns:
        Plain floats keyed by ``names.AMP_SSIM``, ``PHASE_SSIM``, ``AMP_MAE``, ``PHASE_MAE``,
        ``AMP_PSNR``, ``PHASE_PSNR``, ``AMP_FRC50``, ``PHASE_FRC50``, plus ``"amp_mse"`` and
        ``"phase_mse"``. NaN only where undefined: the FRC50 of an identically-zero target (in
        practice the phase FRC of a flat — constant or planar — phase target, such as upstream
        Stage A's zero phase), the amplitude SSIM of a constant ground-truth amplitude (zero data
        range), and metrics of a non-finite prediction. Callers sanitize. A constant prediction
        is defined: its amplitude FRC50 is 0.5 (DC correlates, every other shell is 0).
    """
    p = np.asarray(pred)
    g = np.asarray(gt)
    if p.ndim != 2 or p.shape != g.shape:
        raise ValueError(
            "eval_reconstruction: need (H, W) pred and gt of one shape, "
            f"got {p.shape} and {g.shape}"
        )
    p, g = trim(p, trim_px), trim(g, trim_px)

    a_t = np.abs(g).astype(np.float64)
    a_p = normalise_amplitude(np.abs(p), a_t)
    ph_t = _flat_phase(np.angle(g))
    ph_p = _flat_phase(np.angle(p))

    amp_range = float(a_t.max() - a_t.min())
    to_unit = 1.0 / (2.0 * np.pi)  # (phi + pi) / 2pi maps (-pi, pi] to (0, 1]
    return {
        names.AMP_SSIM: _ssim(a_t, a_p, amp_range),
        names.PHASE_SSIM: _ssim((ph_t + np.pi) * to_unit, (ph_p + np.pi) * to_unit, 1.0),
        names.AMP_MAE: float(np.mean(np.abs(a_t - a_p))),
        names.PHASE_MAE: float(np.mean(np.abs(ph_t - ph_p))),
        "amp_mse": float(np.mean((a_t - a_p) ** 2)),
        "phase_mse": float(np.mean((ph_t - ph_p) ** 2)),
        names.AMP_PSNR: _psnr(a_t, a_p),
        names.PHASE_PSNR: _psnr(ph_t, ph_p),
        names.AMP_FRC50: _frc50(a_t, a_p),
        names.PHASE_FRC50: _frc50(ph_t, ph_p),
    }


def constant_fingerprint(gt: npt.ArrayLike, trim_px: int = 2) -> dict[str, float]:
    """Metrics of a constant prediction (amplitude 1, phase 0) against ``gt``, (H, W) complex.

    After mean-normalisation such a prediction is ``mean(a_t)`` everywhere, so its amplitude SSIM
    and MAE (``mean|a_t - mean(a_t)|``) are the "collapse fingerprint" of this ground truth
    (docs/physics.md §7.2). Upstream's 0.277 / 0.513 belonged to its own ground truth; here the
    numbers are computed from the GT at hand by the same :func:`eval_reconstruction`, so a
    collapsed run's score equals the fingerprint exactly.

    Returns:
        ``{names.AMP_SSIM_CONSTANT: ssim, "amp_mae_constant": mae}`` (plain floats).
    """
    g = np.asarray(gt)
    m = eval_reconstruction(np.ones(g.shape, dtype=np.complex128), g, trim_px)
    return {names.AMP_SSIM_CONSTANT: m[names.AMP_SSIM], "amp_mae_constant": m[names.AMP_MAE]}
