"""The Fourier layer of the FNO generators: a learned filter on the lowest Fourier modes.

:class:`SpectralConv2d` is the spectral convolution of Li et al. 2021, "Fourier Neural Operator for
Parametric Partial Differential Equations" (arXiv 2010.08895, eq. 4-5): ``y = F^-1(R · (F x))``
with ``R`` a complex (in, out) matrix per kept mode and every other mode set to zero. It comes in
the two layouts of docs/physics.md §4.1 and Quirk C (§8), chosen by ``corners``:

* ``corners=2`` (the default, the standard FNO): two weights, one for the non-negative k_y rows
  ``[:mh]`` and one for the negative k_y rows ``[H-mh:]`` of the rfft2 spectrum.
* ``corners=1`` (upstream PtychoPINN's ``_FallbackSpectralConv2d``, which produced every reference
  number): one weight for rows ``[:min(modes, H)]`` only — an anisotropic filter with half the
  weights. Use it to reproduce the upstream parameter counts (17,202,402) and dynamics.

What this module leaves out: bias (upstream has none), factorised / Tucker weights, and any
dependency on ``neuralop`` (upstream's import of it always failed; Quirk C).
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["SpectralConv2d", "kept_rows"]


def kept_rows(modes: int, H: int, corners: int) -> list[tuple[int, int, int]]:
    """Which rfft2 rows each weight acts on, at height ``H``.

    Returns one ``(row_start, row_stop, weight_row_start)`` per weight: rows
    ``[row_start, row_stop)`` of the spectrum are multiplied by weight rows
    ``[weight_row_start, weight_row_start + row_stop - row_start)``.

    * ``corners=1``: rows ``[0, min(modes, H))`` with weight rows ``[0, ...)``. At small ``H`` this
      also covers negative k_y rows with the "positive" weight, exactly as upstream does.
    * ``corners=2``: weight 0 holds k_y = 0 .. modes-1 and weight 1 holds k_y = -modes .. -1 (row
      ``j`` of weight 1 is k_y = j - modes, Li et al.'s layout). Each k_y keeps the same weight at
      every resolution. When ``2·modes > H`` the corners would overlap, so they are clamped to split
      the H rows without double counting: ``mh_pos = min(modes, ceil(H/2))`` rows for k_y >= 0 and
      ``mh_neg = min(modes, floor(H/2))`` for k_y < 0 (for even H the Nyquist row k_y = -H/2 falls
      in the negative corner). Weight rows beyond the available modes are unused but still counted.
    """
    if corners == 1:
        return [(0, min(modes, H), 0)]
    if corners == 2:
        mh_pos = min(modes, (H + 1) // 2)
        mh_neg = min(modes, H // 2)
        return [(0, mh_pos, 0), (H - mh_neg, H, modes - mh_neg)]
    raise ValueError(f"corners={corners!r} must be 1 (upstream fallback) or 2 (standard FNO)")


class SpectralConv2d(nn.Module):
    """Fourier-space linear map on the lowest ``modes`` modes (Li et al. 2021, arXiv 2010.08895).

    ``(B, in_channels, H, W)`` float -> ``(B, out_channels, H, W)``, same dtype as the input::

        X̂ = rfft2(x)                                   # (B, in, H, W//2+1) complex, "backward" norm
        Ŷ[b, o, r, c] = Σ_i X̂[b, i, r, c] · R[i, o, r', c]   for kept rows r (see kept_rows), c < mw
        y = irfft2(Ŷ, s=(H, W))

    with ``mw = min(modes, W//2 + 1)``. Weights are complex64 ``nn.Parameter`` of shape
    ``(in, out, modes, modes)`` — one (``corners=1``) or two (``corners=2``) — so ``numel()``
    counts each complex weight once, as upstream's counts do. Init: complex standard normal
    (real and imaginary parts each of variance 1/2) divided by ``sqrt(in_channels)``; no bias.

    The FFTs run in float32 with autocast disabled (bf16/fp16 FFTs are restricted to power-of-two
    sizes and lose the small high modes). Before the inverse transform the self-conjugate columns
    (k_x = 0 and, for even W, k_x = W/2) are projected onto their Hermitian part. CPU's irfft2
    drops the anti-Hermitian part of those columns implicitly; cuFFT's handling of non-Hermitian
    input is unspecified (pytorch/pytorch#154496), so doing it explicitly makes the layer the same
    real linear operator on every backend (and on CPU changes nothing).
    """

    def __init__(self, in_channels: int, out_channels: int, modes: int, corners: int = 2) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels),
                            ("modes", modes)):
            if value < 1:
                raise ValueError(f"SpectralConv2d {name}={value!r} must be >= 1")
        if corners not in (1, 2):
            raise ValueError(f"corners={corners!r} must be 1 (upstream fallback) or 2 "
                             "(standard FNO)")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.modes = modes
        self.corners = corners
        scale = 1.0 / math.sqrt(in_channels)
        shape = (in_channels, out_channels, modes, modes)
        # weight_pos: k_y >= 0 corner (the only one when corners=1); weight_neg: k_y < 0 corner.
        self.weight_pos = nn.Parameter(scale * torch.randn(shape, dtype=torch.complex64))
        self.weight_neg: nn.Parameter | None = None
        if corners == 2:
            self.weight_neg = nn.Parameter(scale * torch.randn(shape, dtype=torch.complex64))

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, modes={self.modes}, "
                f"corners={self.corners}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"SpectralConv2d expects (B, {self.in_channels}, H, W), "
                             f"got {tuple(x.shape)}")
        B, _, H, W = x.shape
        Wh = W // 2 + 1
        mw = min(self.modes, Wh)
        weights = ([self.weight_pos] if self.weight_neg is None
                   else [self.weight_pos, self.weight_neg])
        with torch.autocast(device_type=x.device.type, enabled=False):
            x_hat = torch.fft.rfft2(x.float(), norm="backward")  # (B, in, H, Wh) complex64
            y_hat = x_hat.new_zeros(B, self.out_channels, H, Wh)  # (B, out, H, Wh)
            for weight, (r0, r1, w0) in zip(weights, kept_rows(self.modes, H, self.corners)):
                if r1 <= r0:
                    continue
                w = weight[:, :, w0:w0 + (r1 - r0), :mw].to(torch.complex64)  # (in, out, r, mw)
                y_hat[:, :, r0:r1, :mw] = torch.einsum("bixy,ioxy->boxy",
                                                       x_hat[:, :, r0:r1, :mw], w)
            y_hat = _hermitian_self_conjugate_columns(y_hat, W, mw)
            y = torch.fft.irfft2(y_hat, s=(H, W), norm="backward")  # (B, out, H, W) float32
        return y.to(x.dtype)


def _hermitian_self_conjugate_columns(y_hat: torch.Tensor, W: int, mw: int) -> torch.Tensor:
    """Replace columns k_x = 0 and (even W) k_x = W/2 of ``(B, C, H, W//2+1)`` by their Hermitian
    part ``(Z[k_y] + conj(Z[-k_y])) / 2``, the only part a real inverse transform can represent.
    Columns at or beyond ``mw`` are zero and are left alone."""
    H = y_hat.shape[-2]
    neg = (-torch.arange(H, device=y_hat.device)) % H  # row index of -k_y

    def sym(col: torch.Tensor) -> torch.Tensor:  # (B, C, H, 1)
        return 0.5 * (col + col[..., neg, :].conj())

    if W % 2 == 0 and W // 2 < mw:  # the Nyquist column is the last one and holds weights
        return torch.cat([sym(y_hat[..., :1]), y_hat[..., 1:-1], sym(y_hat[..., -1:])], dim=-1)
    return torch.cat([sym(y_hat[..., :1]), y_hat[..., 1:]], dim=-1)
