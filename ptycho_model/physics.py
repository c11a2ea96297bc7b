"""The far-field ptychographic forward model, as pure functions.

Holds the exit-wave -> diffraction-amplitude map shared by simulation (:mod:`ptycho_model.data`) and
the PINN loss, the twin-image operator, and :data:`CONSTANTS`, the one frozen dataclass of numeric
conventions used by the physics, probe, object and data modules. It deliberately leaves out probes
(:mod:`ptycho_model.probes`), objects (:mod:`ptycho_model.objects`) and anything with parameters.

Convention (docs/physics.md §1.4, upstream ``ptycho/diffsim.py`` and ``ptycho_torch/model.py``
``pad_and_diffract``): unitary 2-D FFT, no zero padding, DC moved to pixel ``(N/2, N/2)`` by
fftshift::

    amp = sqrt( fftshift( |FFT2(psi)|^2 / N^2 ) ) = | fftshift( fft2(psi, norm="ortho") ) |
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch


@dataclass(frozen=True)
class PhysicsConstants:
    """Numeric conventions of the grid_lines benchmark (docs/physics.md §1-§3)."""

    fft_norm: str = "ortho"  # |FFT2|^2 / N^2 with the unnormalised FFT (§1.4)
    # Probe (§1.1, upstream ptycho/probe.py, ptycho/simulation/probe_transform.py)
    default_probe_scale: float = 0.7  # ideal disk: Gaussian std N / (0.7 pi^2)
    disk_threshold: float = 0.5  # mask = outer(g, g) > 0.5
    disk_edge_sigma_px: float = 1.0  # gaussian_filter(mask, 1)
    probe_floor: float = 1e-9  # + 1e-9 keeps |P| > 0 everywhere
    probe_smoothing_sigma: float = 0.5
    sim_probe_norm_factor: float = 10.0  # set_probe: norm = 10 * mean(|mask * P|)
    sim_probe_mask_divisor: int = 4  # set_probe: mask = r < N // 4
    # Object (§1.2, upstream ptycho/diffsim.py mk_lines_img, dummy_phi)
    n_lines: int = 400
    lines_sigmas: tuple[float, ...] = (1.0, 5.0, 10.0)
    lines_weights: tuple[float, ...] = (1.0, 2.0, 5.0)
    phi_tanh_divisor: float = 3.0  # phi = pi * tanh((A - max/2) / (3 * mean))
    # Patches (§1.3, §2)
    offset: int = 4  # gridsize-2 sub-patch offset; stored in metadata for upstream parity
    train_shuffle_seed: int = 0  # sklearn shuffle(random_state=0) upstream
    schema: str = "1.0.0"


CONSTANTS = PhysicsConstants()

ArrayT = TypeVar("ArrayT", torch.Tensor, np.ndarray)


def far_field_amplitude(psi: torch.Tensor) -> torch.Tensor:
    """Far-field diffraction amplitude of an exit wave.

    Args:
        psi: exit wave, ``(..., N, N)`` complex (complex64 or complex128).

    Returns:
        ``(..., N, N)`` real amplitude of matching precision (float32 for complex64), DC at pixel
        ``(N/2, N/2)``. Parseval holds: ``sum |amp|^2 == sum |psi|^2`` over the last two axes.
    """
    if not torch.is_complex(psi):
        raise TypeError(f"far_field_amplitude: psi must be a complex tensor, got dtype={psi.dtype}")
    if psi.ndim < 2 or psi.shape[-1] != psi.shape[-2]:
        raise ValueError(
            f"far_field_amplitude: psi must be (..., N, N), got shape={tuple(psi.shape)}"
        )
    # §1.4: amp = sqrt(fftshift(|FFT2(psi)|^2 / N^2)); abs() has a finite (zero) gradient at 0,
    # unlike sqrt(|.|^2), so the loss stays differentiable where the prediction is dark.
    spectrum = torch.fft.fft2(psi, norm=CONSTANTS.fft_norm)
    return torch.fft.fftshift(spectrum.abs(), dim=(-2, -1))


def predicted_amplitude(
    obj: torch.Tensor, probe: torch.Tensor, amplitude_gain: float = 1.0
) -> torch.Tensor:
    """Diffraction amplitude the PINN predicts for an object patch under a probe (§1.5).

    Args:
        obj: object patches, ``(B, C, N, N)`` complex (any complex precision; cast to complex64).
        probe: ``(N, N)`` complex (or any shape broadcastable to ``obj``), cast to complex64 on
            ``obj``'s device.
        amplitude_gain: multiplies the amplitude; 1.0 is correct physics, 16 mimics upstream's
            batch-size gain (Quirk A, §8).

    Returns:
        ``(B, C, N, N)`` float32 amplitude ``|fftshift(fft2(obj * probe, norm="ortho"))| * gain``.
    """
    if not torch.is_complex(obj):
        raise TypeError(f"predicted_amplitude: obj must be complex, got dtype={obj.dtype}")
    if obj.ndim != 4:
        raise ValueError(
            f"predicted_amplitude: obj must be (B, C, N, N), got shape={tuple(obj.shape)}"
        )
    if probe.shape[-2:] != obj.shape[-2:]:
        raise ValueError(
            f"predicted_amplitude: probe shape={tuple(probe.shape)} does not match the object "
            f"patch size {tuple(obj.shape[-2:])}"
        )
    if not amplitude_gain > 0:
        raise ValueError(f"predicted_amplitude: amplitude_gain={amplitude_gain!r} must be > 0")
    # The physics stays in fp32 even when the generator ran under bf16/fp16 autocast.
    obj64 = obj.to(torch.complex64)
    probe64 = probe.to(device=obj.device, dtype=torch.complex64)
    amp = far_field_amplitude(obj64 * probe64)  # (B, C, N, N) float32
    return amp * amplitude_gain if amplitude_gain != 1.0 else amp


def twin(psi: ArrayT) -> ArrayT:
    """The twin image ``conj(psi(-r))`` under the DFT index convention ``n -> (-n) mod N``.

    Works on torch tensors and numpy arrays, over the last two axes. Because
    ``FFT[conj(psi(-n))](k) = conj(FFT[psi](k))``, ``far_field_amplitude(twin(psi))`` equals
    ``far_field_amplitude(psi)``: with gridsize 1 and a centrosymmetric probe the data cannot tell
    the two apart (docs/calibration.md, "Metric trap: the twin image").

    Args:
        psi: ``(..., N, M)`` complex (real input is returned flipped, conj being the identity).

    Returns:
        same shape and dtype: ``out[..., i, j] = conj(psi[..., (-i) % N, (-j) % M])``.
    """
    if isinstance(psi, torch.Tensor):
        # flip maps n -> N-1-n; rolling by one more gives n -> N-n = (-n) mod N.
        flipped = torch.roll(torch.flip(psi, dims=(-2, -1)), shifts=(1, 1), dims=(-2, -1))
        return torch.conj_physical(flipped) if torch.is_complex(flipped) else flipped
    if isinstance(psi, np.ndarray):
        flipped = np.roll(np.flip(psi, axis=(-2, -1)), shift=(1, 1), axis=(-2, -1))
        return np.conj(flipped) if np.iscomplexobj(flipped) else flipped
    raise TypeError(f"twin: psi must be a torch.Tensor or numpy.ndarray, got {type(psi).__name__}")


def intensity_scale(y_i: np.ndarray, probe_sim: np.ndarray, nphotons: float) -> float:
    """The simulation intensity scale ``s`` (§1.4, upstream ``diffsim.py``).

    ``s = sqrt(nphotons / mean_patches sum_pixels (Y_I * |P_sim|)^2)``, so that the mean total
    count per pattern (before noise) equals ``nphotons`` (Parseval).

    Args:
        y_i: normalised amplitude patches, ``(n, N, N)`` float.
        probe_sim: ``(N, N)`` complex, the simulation probe ``P_sim``.
        nphotons: expected counts per pattern, > 0.
    """
    if not nphotons > 0:
        raise ValueError(f"intensity_scale: nphotons={nphotons!r} must be > 0")
    p2 = np.abs(probe_sim).astype(np.float64) ** 2
    # Sum Y_I^2 over patches first (chunked, float64) so no (n, N, N) float64 copy is made.
    y_sq_sum = np.zeros(p2.shape, dtype=np.float64)
    for start in range(0, y_i.shape[0], 2048):
        chunk = np.asarray(y_i[start : start + 2048], dtype=np.float64)
        y_sq_sum += np.einsum("nij,nij->ij", chunk, chunk)
    mean_energy = float(np.sum(y_sq_sum * p2)) / y_i.shape[0]
    if not mean_energy > 0:
        raise ValueError(f"intensity_scale: mean exit-wave energy={mean_energy!r} must be > 0")
    return float(np.sqrt(nphotons / mean_energy))
