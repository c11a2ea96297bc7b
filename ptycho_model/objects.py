"""The grid_lines test object: random blurred lines as amplitude, optionally a derived phase.

Holds numpy functions producing full object images (docs/physics.md §1.2, upstream
``ptycho/diffsim.py`` ``mk_lines_img`` / ``mk_lines`` / ``dummy_phi``). Randomness comes only from
the ``numpy.random.Generator`` passed in; :func:`make_objects` derives one generator per image from
``(seed, stream, index)`` so train / test / val images are independent, reproducible streams
(upstream used the global ``np.random.seed(1)`` / ``seed(2)``; values differ, the law is the same).
Patch extraction and noise live in :mod:`ptycho_model.data`.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter
from skimage.draw import line

from ptycho_model.physics import CONSTANTS

# scipy's gaussian_filter reaches int(truncate * sigma + 0.5) px from each output pixel.
_TRUNCATE = 4.0


def lines_amplitude(size: int, rng: np.random.Generator, n_lines: int = CONSTANTS.n_lines
                    ) -> np.ndarray:
    """One lines-object amplitude image (``mk_lines_img(2 * size, nlines=400)``, centre-cropped).

    On a zero canvas of side ``M = 2 * size``, 400 straight lines are drawn between integer
    endpoints ``floor(M * U(0, 1))`` (pixels set to 1, ``skimage.draw.line``); then
    ``A = gf(1) + 2 gf(5) + 5 gf(10)`` (``scipy.ndimage.gaussian_filter``, reflect edges) and the
    centre ``[size//2 : size//2 + size]`` is kept.

    Only the canvas window that can reach the crop through the widest kernel is filtered; the
    result is identical to filtering the whole canvas (the reflect boundary lies outside the
    kernels' reach whenever ``size // 2 >= 40``; otherwise the whole canvas is filtered).

    Args:
        size: side of the output image, >= 1.
        rng: the generator; consumes exactly ``4 * n_lines`` uniforms.
        n_lines: lines on the canvas (upstream: 400 at size 392). A smaller object needs fewer
            lines for the same texture: 400 lines on a 144 px canvas blur to a near-constant
            image (std/mean 0.04), nothing to learn (see ``data/n_lines`` in the presets).

    Returns:
        ``(size, size)`` float32, >= 0.
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"lines_amplitude: size={size!r} must be an integer >= 1")
    m = 2 * size
    canvas = np.zeros((m, m), dtype=np.float64)
    ends = np.floor(m * rng.random((n_lines, 4))).astype(np.intp)  # (r0, c0, r1, c1)
    for r0, c0, r1, c1 in ends:
        rr, cc = line(r0, c0, r1, c1)
        canvas[rr, cc] = 1.0
    lo = size // 2
    reach = max(int(_TRUNCATE * s + 0.5) for s in CONSTANTS.lines_sigmas)
    a0 = max(lo - reach, 0)
    a1 = min(lo + size + reach, m)
    if a0 > 0 and a1 < m:
        window = canvas[a0:a1, a0:a1]
    else:  # small objects: the reflect boundary matters, filter everything
        window, a0 = canvas, 0
    amp = sum(
        w * gaussian_filter(window, s, truncate=_TRUNCATE)
        for w, s in zip(CONSTANTS.lines_weights, CONSTANTS.lines_sigmas, strict=True)
    )
    crop = amp[lo - a0 : lo - a0 + size, lo - a0 : lo - a0 + size]
    return np.ascontiguousarray(crop, dtype=np.float32)


def dummy_phi(amps: np.ndarray) -> np.ndarray:
    """Phase derived from the amplitude (upstream ``dummy_phi``, ``set_phi``; §1.2).

    ``phi = pi * tanh((A - max(A) / 2) / (3 * mean(A)))`` with ``max`` and ``mean`` taken jointly
    over every image of the split (so images of one split share the mapping); ~[-0.7, 0.9] rad.

    Args:
        amps: ``(n, H, W)`` float, raw (un-normalised) amplitudes of one split.

    Returns:
        ``(n, H, W)`` float32.
    """
    amps = np.asarray(amps, dtype=np.float64)
    if amps.ndim != 3:
        raise ValueError(f"dummy_phi: amps must be (n, H, W), got shape={amps.shape}")
    mean = float(amps.mean())
    if not mean > 0:
        raise ValueError(f"dummy_phi: mean amplitude={mean!r} must be > 0")
    phi = np.pi * np.tanh((amps - amps.max() / 2) / (CONSTANTS.phi_tanh_divisor * mean))
    return phi.astype(np.float32)


def make_objects(size: int, n: int, seed: int, stream: int, set_phi: bool,
                 n_lines: int = CONSTANTS.n_lines) -> np.ndarray:
    """``n`` lines objects ``A * exp(i phi)`` of one split.

    Image ``i`` uses ``np.random.default_rng([seed, stream, i])``: any image can be regenerated
    alone, and splits (streams 0 train, 1 test, 2 val in :func:`ptycho_model.data.simulate`) never
    share draws.

    Args:
        size: image side in pixels.
        n: number of images, >= 0.
        seed: ``data/object_seed``, >= 0.
        stream: split stream index, >= 0.
        set_phi: phase from :func:`dummy_phi` if true, else 0.
        n_lines: lines per image (:func:`lines_amplitude`).

    Returns:
        ``(n, size, size)`` complex64 (not normalised).
    """
    for name, value, lo in (("n", n, 0), ("seed", seed, 0), ("stream", stream, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo:
            raise ValueError(f"make_objects: {name}={value!r} must be an integer >= {lo}")
    if n == 0:
        return np.zeros((0, size, size), dtype=np.complex64)
    amps = np.stack(
        [lines_amplitude(size, np.random.default_rng([seed, stream, i]), n_lines) for i in range(n)]
    )
    if not set_phi:
        return amps.astype(np.complex64)
    phi = dummy_phi(amps)
    return (amps * np.exp(1j * phi)).astype(np.complex64)
