"""SpectralConv2d against a dense DFT reference built independently of the layer's code path.

The reference works in float64 on the *full* (H, W) spectrum with explicit DFT matrices: it
decides which (k_y, k_x) each weight owns from the signed frequency, applies the weights, completes
the spectrum to a Hermitian one (conjugate mirror for 0 < k_x < W/2, symmetrised self-conjugate
columns) and inverts with the conjugate DFT matrices, checking that the result is real.
"""

from __future__ import annotations

import math

import pytest
import torch

from ptycho_model.spectral import SpectralConv2d

SIZES = [(16, 16), (12, 20), (9, 7)]
MODES = [3, 9]


def dft(n: int) -> torch.Tensor:
    """(n, n) complex128 forward DFT matrix, F[k, t] = exp(-2πi k t / n)."""
    k = torch.arange(n, dtype=torch.float64)
    return torch.exp(-2j * math.pi * torch.outer(k, k) / n)


def frequency_weights(layer: SpectralConv2d, H: int, W: int) -> torch.Tensor:
    """(in, out, H, W) complex128: the weight each full-spectrum frequency sees; 0 if dropped.

    Frequencies with k_x > W/2 get none here: they are filled in by Hermitian completion."""
    in_ch, out_ch, m = layer.in_channels, layer.out_channels, layer.modes
    R = torch.zeros(in_ch, out_ch, H, W, dtype=torch.complex128)
    pos = layer.weight_pos.detach().to(torch.complex128)
    neg = None if layer.weight_neg is None else layer.weight_neg.detach().to(torch.complex128)
    for r in range(H):
        ky = r if r < (H + 1) // 2 else r - H  # signed frequency of row r
        for c in range(min(m, W // 2 + 1)):
            if layer.corners == 1:
                if r < m:  # upstream: the first min(m, H) rows, whatever their sign
                    R[:, :, r, c] = pos[:, :, r, c]
            elif 0 <= ky < m:
                R[:, :, r, c] = pos[:, :, ky, c]
            elif -m <= ky < 0:
                R[:, :, r, c] = neg[:, :, m + ky, c]
    return R


def dense_reference(layer: SpectralConv2d, x: torch.Tensor) -> torch.Tensor:
    """(B, in, H, W) float -> (B, out, H, W) float64 through explicit DFTs."""
    B, _, H, W = x.shape
    FH, FW = dft(H), dft(W)
    X = torch.einsum("kh,bihw,lw->bikl", FH, x.to(torch.complex128), FW)  # (B, in, H, W)
    Y = torch.einsum("bikl,iokl->bokl", X, frequency_weights(layer, H, W))  # (B, out, H, W)
    Z = torch.zeros_like(Y)
    for c in range(W // 2 + 1):
        for r in range(H):
            rm, cm = (-r) % H, (-c) % W  # the conjugate frequency
            if cm == c:  # self-conjugate column (k_x = 0 or W/2): keep its Hermitian part
                Z[:, :, r, c] = 0.5 * (Y[:, :, r, c] + Y[:, :, rm, c].conj())
            else:
                Z[:, :, r, c] = Y[:, :, r, c]
                Z[:, :, rm, cm] = Y[:, :, r, c].conj()
    y = torch.einsum("kh,bokl,lw->bohw", FH.conj(), Z, FW.conj()) / (H * W)
    assert y.imag.abs().max() < 1e-9 * (1 + y.real.abs().max())
    return y.real


@pytest.mark.parametrize("corners", [1, 2])
@pytest.mark.parametrize("modes", MODES)
@pytest.mark.parametrize("H,W", SIZES)
def test_matches_dense_reference(H: int, W: int, modes: int, corners: int) -> None:
    torch.manual_seed(0)
    layer = SpectralConv2d(3, 2, modes, corners=corners)
    x = torch.randn(2, 3, H, W)
    y = layer(x)
    assert y.shape == (2, 2, H, W) and y.dtype == torch.float32
    ref = dense_reference(layer, x)
    torch.testing.assert_close(y.double(), ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("corners", [1, 2])
def test_gradients_match_dense_reference(corners: int) -> None:
    """d<y, g>/dx of the layer equals that of the (linear) reference: the adjoint is right too."""
    torch.manual_seed(1)
    layer = SpectralConv2d(2, 3, 5, corners=corners)
    x = torch.randn(1, 2, 10, 8, requires_grad=True)
    g = torch.randn(1, 3, 10, 8)
    (layer(x) * g).sum().backward()
    x64 = x.detach().double().requires_grad_()
    (dense_reference(layer, x64) * g.double()).sum().backward()
    torch.testing.assert_close(x.grad.double(), x64.grad, rtol=1e-4, atol=1e-5)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in layer.parameters())


def test_two_corners_have_twice_the_weights() -> None:
    one = SpectralConv2d(4, 6, 5, corners=1)
    two = SpectralConv2d(4, 6, 5, corners=2)
    n1 = sum(p.numel() for p in one.parameters())
    n2 = sum(p.numel() for p in two.parameters())
    assert n1 == 4 * 6 * 5 * 5  # one complex weight counted once
    assert n2 == 2 * n1
    assert all(p.dtype == torch.complex64 for p in two.parameters())


def test_init_scale_and_no_bias() -> None:
    torch.manual_seed(0)
    layer = SpectralConv2d(64, 8, 6, corners=2)
    assert [n for n, _ in layer.named_parameters()] == ["weight_pos", "weight_neg"]
    var = layer.weight_pos.detach().abs().square().mean().item()
    assert var == pytest.approx(1 / 64, rel=0.1)  # E|w|^2 = 1 / in_channels


def test_real_input_with_only_kept_modes_passes_through_identity_weights() -> None:
    """With identity weights on every mode and all modes kept, the standard layer is the
    identity."""
    H = W = 8
    layer = SpectralConv2d(1, 1, 8, corners=2)
    with torch.no_grad():
        layer.weight_pos.fill_(1)
        layer.weight_neg.fill_(1)
    x = torch.randn(2, 1, H, W)
    torch.testing.assert_close(layer(x), x, rtol=1e-5, atol=1e-5)


def test_bf16_autocast_runs_fft_in_float32() -> None:
    layer = SpectralConv2d(2, 2, 4)
    x = torch.randn(1, 2, 12, 12)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, layer(x))


@pytest.mark.parametrize("bad", [dict(corners=3), dict(modes=0)])
def test_rejects_bad_arguments(bad: dict) -> None:
    kwargs = dict(in_channels=2, out_channels=2, modes=4, corners=2) | bad
    with pytest.raises(ValueError, match=next(iter(bad))):
        SpectralConv2d(**kwargs)
