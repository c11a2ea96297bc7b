"""Illumination probes: the built-in ideal disk and asymmetric probe, NPZ loading, the grid_lines
probe transform (smoothing) and the simulation normalisation ``P_sim``.

Holds numpy functions that return ``(N, N)`` complex64 arrays and the :data:`PROBES` registry.
Leaves out the forward model (:mod:`ptycho_model.physics`) and any training-time rescaling
(``physics/probe_scale``, Quirk B, is applied by the trainer).

Pipeline used by :func:`ptycho_model.data.simulate` (docs/physics.md §1.1)::

    probeGuess = smooth_probe(make_probe(spec, N))     # stored in the NPZ
    P_sim      = simulation_probe(probeGuess)          # used to simulate; stored as probe_simulated
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter
from skimage.restoration import unwrap_phase

from ptycho_model.errors import InputError
from ptycho_model.physics import CONSTANTS

PROBE_KEY = "probeGuess"


class ProbeError(InputError):
    """A probe that cannot be used; the message names the file / key / spec at fault."""


def _centred_coords(n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(yy, xx)``, each ``(n, n)`` float64, pixel index minus ``n/2 - 0.5`` (§1.1 set_probe)."""
    c = np.arange(n, dtype=np.float64) - n / 2 + 0.5
    return np.meshgrid(c, c, indexing="ij")


def ideal_disk(N: int) -> np.ndarray:
    """Upstream's default probe (``ptycho/probe.py`` ``get_default_probe``, §1.1).

    A 1-D Gaussian window ``g`` of std ``N / (0.7 pi^2)`` (9.26 px at N = 64), symmetric about the
    point between pixels ``N/2 - 1`` and ``N/2`` and normalised to max 1; mask ``outer(g, g) > 0.5``
    (a disk of radius ~10.9 px, 376 px at N = 64); probe ``gaussian_filter(mask, 1) + 1e-9``.

    Returns:
        ``(N, N)`` complex64, real and non-negative (zero phase), max ~1. Centrosymmetric, so
        gridsize-1 data simulated with it has a twin-image ambiguity (docs/calibration.md)
    """
    _check_size(N)
    std = N / (CONSTANTS.default_probe_scale * np.pi**2)
    x = np.arange(N, dtype=np.float64) - (N - 1) / 2
    g = np.exp(-(x**2) / (2 * std**2))
    g /= g.max()
    mask = (np.outer(g, g) > CONSTANTS.disk_threshold).astype(np.float64)
    probe = gaussian_filter(mask, CONSTANTS.disk_edge_sigma_px) + CONSTANTS.probe_floor
    return probe.astype(np.complex64)


def asymmetric(N: int) -> np.ndarray:
    """A deterministic synthetic probe whose amplitude is NOT centrosymmetric.

    Built on fractional coordinates (``u = (i - N/2 + 0.5) / N``) so it scales with N: a soft disk
    of radius ``0.17 N`` (the ideal disk's size) with a bright spot in one quadrant, a dark notch
    near the opposite rim and a side lobe outside the disk, under a smooth phase (defocus
    ``1 rad`` at the rim plus a coma-like ``u^3`` term). With gridsize 1 it removes the twin
    ambiguity of the ideal disk (docs/calibration.md: a structured asymmetric probe also
    conditions the
    problem better). No randomness.

    Returns:
        ``(N, N)`` complex64, amplitude max 1.
    """
    _check_size(N)
    yy, xx = _centred_coords(N)
    v, u = yy / N, xx / N  # rows, cols in units of N
    radius = 0.17
    disk = gaussian_filter(((u**2 + v**2) < radius**2).astype(np.float64), max(N / 64, 0.5))

    def blob(cu: float, cv: float, width: float) -> np.ndarray:
        return np.exp(-((u - cu) ** 2 + (v - cv) ** 2) / (2 * width**2))

    amp = disk * (1.0 + 0.5 * blob(-0.07, 0.08, 0.035) - 0.6 * blob(0.09, -0.10, 0.03))
    amp += 0.7 * blob(0.22, 0.06, 0.045)  # side lobe at the right-hand rim, nothing on the left
    amp = np.clip(amp, 0.0, None) + CONSTANTS.probe_floor
    amp /= amp.max()
    rho2 = (u**2 + v**2) / radius**2
    phase = 1.0 * rho2 + 0.4 * (u / radius) ** 3 - 0.4 * (u / radius) * (v / radius)
    return (amp * np.exp(1j * phase)).astype(np.complex64)


def smooth_probe(probe: np.ndarray, sigma: float = CONSTANTS.probe_smoothing_sigma) -> np.ndarray:
    """The grid_lines probe transform (upstream ``ptycho/simulation/probe_transform.py``, §1.1).

    Smooths the amplitude and the *unwrapped* phase separately with a Gaussian of std ``sigma``
    px and recombines them (unwrapping first keeps 2 pi jumps from being blurred into dips).

    Args:
        probe: ``(N, N)`` complex.
        sigma: Gaussian std in pixels, >= 0 (0 returns the probe unchanged, as complex64).

    Returns:
        ``(N, N)`` complex64.
    """
    probe = _check_probe_array(probe, "smooth_probe(probe)")
    if not sigma >= 0:
        raise ProbeError(f"smooth_probe: sigma={sigma!r} must be >= 0")
    if sigma == 0:
        return probe.astype(np.complex64)
    amp = gaussian_filter(np.abs(probe).astype(np.float64), sigma)
    phase = unwrap_phase(np.angle(probe).astype(np.float64))
    phase = gaussian_filter(phase, sigma)
    return (amp * np.exp(1j * phase)).astype(np.complex64)


def simulation_mask(N: int) -> np.ndarray:
    """The ``set_probe`` disk ``r < N // 4`` on centred coords ``i - N/2 + 0.5``; (N, N) bool."""
    yy, xx = _centred_coords(N)
    return np.sqrt(yy**2 + xx**2) < N // CONSTANTS.sim_probe_mask_divisor


def simulation_probe(probe: np.ndarray) -> np.ndarray:
    """``P_sim``, the probe the simulation uses (upstream ``set_probe``, §1.1).

    ``norm = 10 * mean_{N x N}(|mask * P|)`` with :func:`simulation_mask`; ``P_sim = P / norm``
    (the mask only sets the norm). Ideal disk at N = 64: norm ~0.918, max ``|P_sim|`` ~1.09.

    Args:
        probe: ``(N, N)`` complex (``probeGuess``).

    Returns:
        ``(N, N)`` complex64.
    """
    probe = _check_probe_array(probe, "simulation_probe(probe)")
    mask = simulation_mask(probe.shape[0])
    norm = CONSTANTS.sim_probe_norm_factor * float(np.mean(np.abs(probe * mask)))
    if not norm > 0:
        raise ProbeError(
            f"simulation_probe: the probe is zero inside the r < N//4 disk (norm={norm!r}); "
            "it would illuminate nothing"
        )
    return (probe / norm).astype(np.complex64)


def load_probe_npz(path: str | Path, N: int, key: str = PROBE_KEY) -> np.ndarray:
    """Read a probe from an NPZ (key ``probeGuess``, ``(M, M)`` complex) and fit it to ``N``.

    Size rule (``pad_preserve``, upstream's current default): ``M < N`` is centre zero-padded
    (the extra pixel of an odd difference goes to the end, so the centre stays at pixel N/2);
    ``M > N`` is refused, since cropping would cut the illumination and resampling would change
    its sampling; resample it yourself and save the result.

    Returns:
        ``(N, N)`` complex64.

    Raises:
        ProbeError: missing or unreadable file, missing key, not 2-D / not square, non-finite
            values, or larger than N. The message names the file and the key.
    """
    _check_size(N)
    path = Path(path)
    where = f"probe file {str(path)!r}, key {key!r}"
    if not path.is_file():
        raise ProbeError(f"{where}: file not found")
    try:
        with np.load(path, allow_pickle=False) as npz:
            if key not in npz.files:
                raise ProbeError(f"{where}: key missing; the file holds {sorted(npz.files)}")
            arr = np.asarray(npz[key])
    except ProbeError:
        raise
    except Exception as exc:  # not a zip / not an .npy inside / object array
        raise ProbeError(f"{where}: cannot be read as an NPZ array ({exc})") from exc
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise ProbeError(f"{where}: expected a square (M, M) array, got shape={arr.shape}")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise ProbeError(f"{where}: expected a numeric array, got dtype={arr.dtype}")
    if not np.all(np.isfinite(arr)):
        raise ProbeError(f"{where}: holds {int(np.sum(~np.isfinite(arr)))} NaN/Inf values")
    m = arr.shape[0]
    if m > N:
        raise ProbeError(
            f"{where}: probe size {m}x{m} is larger than data/N={N}; resample it to {N}x{N} "
            "(or raise data/N) — cropping would cut the illumination"
        )
    out = np.zeros((N, N), dtype=np.complex64)
    lo = (N - m) // 2
    out[lo : lo + m, lo : lo + m] = arr.astype(np.complex64)
    if not np.any(np.abs(out) > 0):
        raise ProbeError(f"{where}: the probe is identically zero")
    return out


PROBES: dict[str, Callable[[int], np.ndarray]] = {
    "ideal_disk": ideal_disk,
    "asymmetric": asymmetric,
}


def make_probe(spec: str, N: int) -> np.ndarray:
    """The raw probe named by ``data/probe``: a :data:`PROBES` name or a path to an NPZ.

    The result is the probe *before* the grid_lines transform; the dataset's ``probeGuess`` is
    ``smooth_probe(make_probe(spec, N))``.

    Returns:
        ``(N, N)`` complex64.
    """
    if spec in PROBES:
        return PROBES[spec](N)
    looks_like_path = spec.endswith(".npz") or "/" in spec or "\\" in spec or Path(spec).exists()
    if looks_like_path:
        return load_probe_npz(spec, N)
    raise ProbeError(
        f"unknown data/probe={spec!r}; choose from {sorted(PROBES)} or give a path to an NPZ "
        f"holding {PROBE_KEY!r}"
    )


def check_probe_spec(spec: str, N: int, path: str = "data/probe") -> None:
    """Fail fast, before anything starts, on a ``data/probe`` that :func:`make_probe` would refuse:
    a :data:`PROBES` name passes; anything else must be an NPZ file (read with
    ``allow_pickle=False``) holding a usable ``probeGuess`` for ``N``.

    Raises:
        ConfigError: naming ``path``, the value and why.
    """
    from ptycho_model.errors import ConfigError

    if not isinstance(spec, str) or not spec:
        raise ConfigError(f"{path}={spec!r} must be one of {sorted(PROBES)} or an NPZ path")
    if spec in PROBES:
        return
    file = Path(spec).expanduser()
    if file.is_file() and not zipfile.is_zipfile(file):
        raise ConfigError(f"{path}={spec!r} is not an NPZ file; give one holding {PROBE_KEY!r} "
                          f"(N, N) complex, or one of {sorted(PROBES)}")
    try:
        make_probe(spec, N)
    except ProbeError as exc:
        msg = str(exc)
        raise ConfigError(msg if msg.startswith(f"unknown {path}") else f"{path}={spec!r}: {msg}"
                          ) from None
    except Exception as exc:  # noqa: BLE001 - anything else a file can do to the reader
        raise ConfigError(f"{path}={spec!r}: not an NPZ holding {PROBE_KEY!r} "
                          f"({type(exc).__name__}: {exc})") from None


def _check_size(N: int) -> None:
    if isinstance(N, bool) or not isinstance(N, (int, np.integer)) or N < 2:
        raise ProbeError(f"probe size N={N!r} must be an integer >= 2")


def _check_probe_array(probe: np.ndarray, what: str) -> np.ndarray:
    probe = np.asarray(probe)
    if probe.ndim != 2 or probe.shape[0] != probe.shape[1]:
        raise ProbeError(f"{what}: expected a square (N, N) array, got shape={probe.shape}")
    if not np.all(np.isfinite(probe)):
        raise ProbeError(f"{what}: holds NaN/Inf values")
    return probe
