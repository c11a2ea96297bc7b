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

The transform is a DFT restricted to the kept modes, done as matrix products rather than as
FFTs of the whole spectrum (:func:`dft_bases`): with ``modes`` much smaller than ``H`` and ``W``
and sides of 8 to 64, the four small GEMMs (forward along W and H, inverse along H and W) and
their GEMM gradients beat ``rfft2``/``irfft2``, the zero-filled full spectrum, and the FFT
backward's full complex transform (``bench/kernels.py`` times both at every preset shape). It is
the same linear map as ``irfft2(R · rfft2(x))`` to float32 rounding (~3e-7 relative).

What this module leaves out: bias (upstream has none), factorised / Tucker weights, and any
dependency on ``neuralop`` (upstream's import of it always failed; Quirk C).
"""

from __future__ import annotations

import math
from typing import cast

import torch
from torch import nn

__all__ = ["SpectralConv2d", "dft_bases", "kept_rows"]


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


def dft_bases(H: int, W: int, rows: list[int], mw: int, device: torch.device | str = "cpu"
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The four matrices of the layer's truncated DFT at ``(H, W)``, kept rows ``rows`` (row
    indices of the rfft2 spectrum) and columns ``k_x = 0 .. mw-1``; float64 angles from exact
    integer phases ``(k·n) mod N``, then rounded to float32 / complex64:

    * ``fw`` (W, 2·mw) float32: ``x @ fw`` is ``rfft(x)[..., :mw]`` along W, [re, im]
      interleaved so that the product views as complex without a copy.
    * ``fh`` (R, H) complex64: ``exp(-2πi r h / H)``, the forward transform along H onto the
      kept rows.
    * ``gh`` (H, R) complex64: ``exp(+2πi r h / H)``, the inverse along H from the kept rows.
    * ``gw`` (2·mw, W) float32: the real inverse along W, ``y = Σ_c c_c Re(T_c e^{2πi c w/W})
      / (H W)`` with ``c_c = 1`` for the self-conjugate columns (k_x = 0 and, for even W,
      k_x = W/2) and 2 for the others. Taking the real part of the column-weighted inverse is
      exactly ``irfft2`` after projecting the self-conjugate columns onto their Hermitian part
      ``(Z[k_y] + conj(Z[-k_y])) / 2``: the layer is the same real linear operator on every
      backend, whatever an FFT library does with non-Hermitian input (pytorch/pytorch#154496).
    """
    h = torch.arange(H, dtype=torch.float64)
    w = torch.arange(W, dtype=torch.float64)
    r = torch.tensor(rows, dtype=torch.float64)
    c = torch.arange(mw, dtype=torch.float64)
    ang_w = 2 * math.pi * torch.remainder(torch.outer(w, c), W) / W  # (W, mw)
    ang_h = 2 * math.pi * torch.remainder(torch.outer(r, h), H) / H  # (R, H)
    fw = torch.stack([torch.cos(ang_w), -torch.sin(ang_w)], dim=-1).reshape(W, 2 * mw)
    fh = torch.polar(torch.ones_like(ang_h), -ang_h)
    gh = torch.polar(torch.ones_like(ang_h.T), ang_h.T)
    cc = torch.full((mw, 1), 2.0, dtype=torch.float64)
    cc[0] = 1.0
    if W % 2 == 0 and W // 2 < mw:
        cc[W // 2] = 1.0
    gw = torch.stack([cc * torch.cos(ang_w.T), -cc * torch.sin(ang_w.T)], dim=1)  # (mw, 2, W)
    gw = gw.reshape(2 * mw, W) / (H * W)
    return (fw.to(device, torch.float32), fh.to(device, torch.complex64),
            gh.to(device, torch.complex64), gw.to(device, torch.float32))


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

    Only the kept modes are ever computed: the transforms are the matrices of
    :func:`dft_bases` (cached per size and device, not part of the state dict), so the map
    above is evaluated as ``x @ fw`` (along W), ``fh @`` (along H), the per-mode channel mix,
    ``gh @`` and ``@ gw``. The self-conjugate columns (k_x = 0 and, for even W, k_x = W/2) are
    thereby projected onto their Hermitian part before the inverse, the only part a real inverse
    transform can represent, identically on every backend.

    The transforms run in float32 with autocast disabled (half-precision transforms lose the
    small high modes).
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
        # (H, W, device) -> (kept rows, dft_bases); a plain dict, so not in the state dict
        self._bases: dict[tuple[int, int, str], tuple[list, tuple]] = {}

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, modes={self.modes}, "
                f"corners={self.corners}")

    def _bases_for(self, H: int, W: int, mw: int, device: torch.device):
        """(spans, bases) at (H, W) on ``device``: ``spans`` are ``(weight index, row_start,
        row_stop, weight_row_start)`` of the non-empty kept row ranges."""
        key = (H, W, str(device))
        if key not in self._bases:
            spans = [(i, r0, r1, w0)
                     for i, (r0, r1, w0) in enumerate(kept_rows(self.modes, H, self.corners))
                     if r1 > r0]
            rows = [r for _, r0, r1, _ in spans for r in range(r0, r1)]
            self._bases[key] = (spans, dft_bases(H, W, rows, mw, device))
        return self._bases[key]

    def _mix(self, x_hat: torch.Tensor, spans: list[tuple[int, int, int, int]],
             mw: int) -> torch.Tensor:
        """(B, in, R, mw) kept modes -> (B, out, R, mw): each mode's (in, out) complex matrix.
        One contraction per weight, joined on the (small) activations rather than on the
        weights, whose copy dominates at the deep, wide levels."""
        # span i = 1 (weight_neg) exists only with corners=2, where weight_neg is not None
        weights = cast("tuple[torch.Tensor, torch.Tensor]", (self.weight_pos, self.weight_neg))
        out, k = [], 0
        for i, r0, r1, w0 in spans:
            w = weights[i][:, :, w0:w0 + (r1 - r0), :mw].to(torch.complex64)  # (in, out, r, mw)
            out.append(torch.einsum("bixy,ioxy->boxy", x_hat[:, :, k:k + r1 - r0], w))
            k += r1 - r0
        return out[0] if len(out) == 1 else torch.cat(out, dim=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"SpectralConv2d expects (B, {self.in_channels}, H, W), "
                             f"got {tuple(x.shape)}")
        B, C, H, W = x.shape
        mw = min(self.modes, W // 2 + 1)
        spans, (fw, fh, gh, gw) = self._bases_for(H, W, mw, x.device)
        with torch.autocast(device_type=x.device.type, enabled=False):
            xw = (x.float().reshape(B * C * H, W) @ fw).view(B, C, H, mw, 2)
            xw = torch.view_as_complex(xw)  # (B, in, H, mw): rfft along W, first mw columns
            x_hat = torch.einsum("rh,bchm->bcrm", fh, xw)  # (B, in, R, mw): the kept modes
            y_hat = self._mix(x_hat, spans, mw)  # (B, out, R, mw)
            t = torch.einsum("hr,borm->bohm", gh, y_hat).contiguous()  # (B, out, H, mw)
            y = torch.view_as_real(t).reshape(-1, 2 * mw) @ gw  # (B * out * H, W) float32
        return y.view(B, self.out_channels, H, W).to(x.dtype)
