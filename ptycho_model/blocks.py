"""Building blocks of the hybrid U-NO generators (docs/physics.md §4.2-4.3).

* :class:`SpatialLifter`: the input lift, Conv3x3 -> GELU -> Conv3x3.
* :class:`LayerScale`: a learned per-channel gain (Touvron et al. 2021, "Going deeper with Image
  Transformers" (CaiT), arXiv 2103.17239).
* :class:`PtychoBlock`: the FNO residual block, ``x + GELU(Spectral(x) + Conv3x3(x))`` (the Fourier
  layer of Li et al. 2021, arXiv 2010.08895, with a 3x3 local path instead of a 1x1).
* :class:`StablePtychoBlock`: the same update passed through an InstanceNorm and gated so that the
  block starts at (or near) the identity — upstream's answer to the "drift" hypothesis.
* :class:`DecoderStage`: one U-Net decoder level (upsample, concatenate the skip, two convs).

Every block maps ``(B, ch, H, W)`` to ``(B, ch, H, W)`` unless stated. The input transforms of
upstream's lifter (``sqrt``, ``log1p``, ``instancenorm``) are left out: no study here uses them.
"""

from __future__ import annotations

import torch
from torch import nn

from .errors import lookup
from .spectral import SpectralConv2d

__all__ = ["STABLE_VARIANTS", "DecoderStage", "LayerScale", "PtychoBlock", "SpatialLifter",
           "StablePtychoBlock"]

# The ``model/stable_block`` names: how a StablePtychoBlock gates its residual update.
STABLE_VARIANTS: dict[str, str] = {
    "zero_gamma": "v1: InstanceNorm weight initialised to 0, so the block starts as the identity",
    "layerscale": "v2: InstanceNorm weight 1, the update scaled by a per-channel LayerScale gamma",
}


def conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    """3x3 convolution, padding 1, with bias: keeps H and W."""
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)


class SpatialLifter(nn.Module):
    """``(B, in, H, W) -> (B, out, H, W)``: Conv3x3(in->out) -> GELU -> Conv3x3(out->out)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_channels, out_channels)
        self.act = nn.GELU()
        self.conv2 = conv3x3(out_channels, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.act(self.conv1(x)))  # (B, out, H, W)


class LayerScale(nn.Module):
    """``(B, C, H, W) -> gamma[c] · x`` with a learned ``gamma`` of shape ``(C,)``, initialised to
    ``init`` (CaiT, Touvron et al. 2021). A small ``init`` starts a residual branch near zero while
    keeping it trainable, unlike a zero-initialised gain that needs its input to be non-zero."""

    def __init__(self, channels: int, init: float = 1e-3) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((channels,), float(init)))

    def extra_repr(self) -> str:
        return f"{self.gamma.numel()}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma.view(1, -1, 1, 1).to(x.dtype)  # (B, C, H, W)


class PtychoBlock(nn.Module):
    """FNO residual block ``y = x + GELU(Spectral(x) + Conv3x3(x))``; ``(B, ch, H, W)`` in and out.

    Exact (erf) GELU, conv with bias, no normalisation — upstream's block, whose positive-mean
    update per block is the "drift" suspected of the collapses (docs/physics.md §4.2).
    """

    def __init__(self, channels: int, modes: int, corners: int = 2) -> None:
        super().__init__()
        self.spectral = SpectralConv2d(channels, channels, modes, corners)
        self.local = conv3x3(channels, channels)
        self.act = nn.GELU()

    def update(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.spectral(x) + self.local(x))  # (B, ch, H, W)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.update(x)


class StablePtychoBlock(PtychoBlock):
    """Normalised, gated FNO block; ``(B, ch, H, W)`` in and out. Two variants (§4.2):

    * ``"zero_gamma"`` (v1, used in Stage A): ``y = x + IN(GELU(Spectral(x) + Conv3x3(x)))`` with
      ``InstanceNorm2d(ch, affine=True, eps=1e-5)`` whose weight and bias start at 0, so the block
      is exactly the identity at init; no extra gate.
    * ``"layerscale"`` (v2): IN weight 1, bias 0, and ``y = x + gamma[c] · IN(...)`` with a
      :class:`LayerScale` (attribute ``layerscale``) initialised to ``layerscale_init``.
    """

    def __init__(self, channels: int, modes: int, corners: int = 2, variant: str = "layerscale",
                 layerscale_init: float = 1e-3) -> None:
        lookup(STABLE_VARIANTS, variant, "model/stable_block")
        super().__init__(channels, modes, corners)
        self.variant = variant
        self.norm = nn.InstanceNorm2d(channels, affine=True, eps=1e-5)
        self.layerscale: LayerScale | None = None
        if variant == "zero_gamma":
            nn.init.zeros_(self.norm.weight)
            nn.init.zeros_(self.norm.bias)
        else:
            self.layerscale = LayerScale(channels, layerscale_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(self.update(x))  # (B, ch, H, W)
        if self.layerscale is not None:
            h = self.layerscale(h)
        return x + h


class DecoderStage(nn.Module):
    """One U-Net decoder level (§4.3): ``(B, in, H, W)`` and a skip ``(B, skip, 2H, 2W)`` ->
    ``(B, skip, 2H, 2W)``. ConvTranspose2d(in->skip, k=2, s=2), concatenate the skip, then
    Conv3x3(2·skip->skip) -> GELU -> Conv3x3(skip->skip); no residual, no final activation."""

    def __init__(self, in_channels: int, skip_channels: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, skip_channels, kernel_size=2, stride=2)
        self.fuse = nn.Sequential(conv3x3(2 * skip_channels, skip_channels), nn.GELU(),
                                  conv3x3(skip_channels, skip_channels))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        h = self.up(x)  # (B, skip, 2H, 2W)
        return self.fuse(torch.cat([h, skip], dim=1))  # (B, skip, 2H, 2W)
