"""Forward model: Parseval, fftshift centre, phase invariance, the twin image, dtype handling."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from ptycho_model.physics import (
    CONSTANTS,
    far_field_amplitude,
    intensity_scale,
    predicted_amplitude,
    twin,
)


def _random_wave(
    shape: tuple[int, ...], seed: int = 0, dtype: torch.dtype = torch.complex64
) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    re = torch.randn(shape, generator=g, dtype=torch.float64)
    im = torch.randn(shape, generator=g, dtype=torch.float64)
    return torch.complex(re, im).to(dtype)


@pytest.mark.parametrize("N", [16, 32])
def test_parseval(N: int) -> None:
    psi = _random_wave((3, 2, N, N))
    amp = far_field_amplitude(psi)
    assert amp.shape == psi.shape and amp.dtype == torch.float32
    lhs = (amp.double() ** 2).sum(dim=(-2, -1))
    rhs = (psi.abs().double() ** 2).sum(dim=(-2, -1))
    torch.testing.assert_close(lhs, rhs, rtol=1e-5, atol=0)


def test_matches_numpy_reference() -> None:
    # amp = sqrt(fftshift(|FFT2(psi)|^2 / N^2)), §1.4
    psi = _random_wave((2, 32, 32), seed=3, dtype=torch.complex128)
    ref = np.sqrt(np.fft.fftshift(np.abs(np.fft.fft2(psi.numpy())) ** 2 / 32**2, axes=(-2, -1)))
    np.testing.assert_allclose(far_field_amplitude(psi).numpy(), ref, rtol=1e-10, atol=1e-12)


def test_constant_wave_puts_all_energy_at_centre() -> None:
    N, c = 32, 0.7 - 0.2j
    psi = torch.full((1, 1, N, N), c, dtype=torch.complex64)
    amp = far_field_amplitude(psi)[0, 0]
    assert torch.argmax(amp).item() == (N // 2) * N + N // 2
    assert amp[N // 2, N // 2].item() == pytest.approx(abs(c) * N, rel=1e-6)
    amp[N // 2, N // 2] = 0
    assert amp.max().item() < 1e-5


def test_global_phase_invariance() -> None:
    psi = _random_wave((4, 1, 16, 16), seed=1)
    rotated = psi * torch.polar(torch.tensor(1.0), torch.tensor(1.234))
    torch.testing.assert_close(
        far_field_amplitude(rotated), far_field_amplitude(psi), rtol=1e-5, atol=1e-5
    )


def test_twin_has_identical_amplitude_torch_and_numpy() -> None:
    psi = _random_wave((2, 1, 16, 16), seed=2)
    t = twin(psi)
    assert t.shape == psi.shape and t.dtype == psi.dtype
    assert not torch.allclose(t, psi)
    torch.testing.assert_close(
        far_field_amplitude(t), far_field_amplitude(psi), rtol=1e-5, atol=1e-5
    )
    t_np = twin(psi.numpy())
    assert isinstance(t_np, np.ndarray)
    np.testing.assert_array_equal(t_np, t.numpy())
    torch.testing.assert_close(twin(t), psi)  # an involution


def test_twin_index_convention() -> None:
    # conj(psi(-n mod N)): a delta at (1, 2) moves to (N-1, N-2); (0, 0) stays.
    N = 8
    psi = np.zeros((N, N), dtype=np.complex64)
    psi[1, 2] = 1 + 2j
    psi[0, 0] = 3j
    t = twin(psi)
    assert t[N - 1, N - 2] == 1 - 2j and t[0, 0] == -3j
    assert np.count_nonzero(t) == 2


def test_twin_rejects_other_types() -> None:
    with pytest.raises(TypeError, match="list"):
        twin([[1, 2], [3, 4]])  # type: ignore[type-var]


def test_predicted_amplitude_casts_and_applies_gain() -> None:
    obj = _random_wave((2, 1, 16, 16), seed=4, dtype=torch.complex128)
    probe = _random_wave((16, 16), seed=5, dtype=torch.complex128)
    amp = predicted_amplitude(obj, probe)
    assert amp.dtype == torch.float32 and amp.shape == (2, 1, 16, 16)
    ref = far_field_amplitude((obj * probe).to(torch.complex64))
    torch.testing.assert_close(amp, ref)
    torch.testing.assert_close(predicted_amplitude(obj, probe, amplitude_gain=16.0), 16 * ref)


def test_predicted_amplitude_gradient_is_finite_at_zero() -> None:
    obj = torch.zeros(1, 1, 8, 8, dtype=torch.complex64, requires_grad=True)
    predicted_amplitude(obj, torch.ones(8, 8, dtype=torch.complex64)).sum().backward()
    assert obj.grad is not None and torch.isfinite(torch.view_as_real(obj.grad)).all()


@pytest.mark.parametrize(
    ("obj", "probe", "gain", "match"),
    [
        (torch.zeros(1, 1, 8, 8), torch.ones(8, 8, dtype=torch.complex64), 1.0, "must be complex"),
        (
            torch.zeros(1, 8, 8, dtype=torch.complex64),
            torch.ones(8, 8, dtype=torch.complex64),
            1.0,
            r"\(B, C, N, N\)",
        ),
        (
            torch.zeros(1, 1, 8, 8, dtype=torch.complex64),
            torch.ones(4, 4, dtype=torch.complex64),
            1.0,
            "probe shape",
        ),
        (
            torch.zeros(1, 1, 8, 8, dtype=torch.complex64),
            torch.ones(8, 8, dtype=torch.complex64),
            0.0,
            "amplitude_gain",
        ),
    ],
)
def test_predicted_amplitude_refuses_bad_input(obj, probe, gain, match) -> None:
    with pytest.raises((TypeError, ValueError), match=match):
        predicted_amplitude(obj, probe, amplitude_gain=gain)


def test_intensity_scale_sets_mean_counts() -> None:
    rng = np.random.default_rng(0)
    y_i = rng.random((5, 16, 16), dtype=np.float32)
    probe = (rng.random((16, 16)) + 0.5).astype(np.complex64)
    s = intensity_scale(y_i, probe, 1e6)
    psi = torch.from_numpy(s * y_i * probe)
    counts = (far_field_amplitude(psi).double() ** 2).sum(dim=(-2, -1)).mean().item()
    assert counts == pytest.approx(1e6, rel=1e-5)
    with pytest.raises(ValueError, match="nphotons"):
        intensity_scale(y_i, probe, -1.0)


def test_constants_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        CONSTANTS.fft_norm = "backward"  # type: ignore[misc]
