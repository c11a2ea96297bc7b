"""The generators: diffraction amplitude ``(B, C, N, N)`` -> object patch ``(B, N, N, C, 2)``.

Hybrid U-NO generators of docs/physics.md §4.3: a U-Net whose encoder levels and bottleneck are
FNO blocks (Li et al. 2021, "Fourier Neural Operator for Parametric Partial Differential
Equations", arXiv 2010.08895) and whose decoder is convolutional.

* ``hybrid`` (:class:`HybridUNOGenerator`): :class:`~ptycho_model.blocks.PtychoBlock` blocks.
* ``stable_hybrid`` (:class:`StableHybridUNOGenerator`): the same network with
  :class:`~ptycho_model.blocks.StablePtychoBlock` in encoder and bottleneck (decoder unchanged).

Models are known by name in :data:`GENERATORS`, where each class puts itself with the
:func:`register_generator` decorator. :func:`build_generator` builds the one a
:class:`~ptycho_model.config.ModelConfig` names: it passes every generator the same shape keywords
and adds what the class's own ``config_options(cfg)`` reads from the config (``stable_hybrid``:
the block variant and the LayerScale init), so no arch has a branch of its own there
(docs/extending.md, "A generator"). The output's last axis is [real, imag]; :func:`to_complex`
turns it into the ``(B, C, N, N)`` complex64 object of the physics.

Left out: upstream's other generators (``cnn``, ``fno``, ``ffno``, ...), the ``amp_phase`` output
adapters and the lifter input transforms — nothing in this project's studies uses them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import torch
from torch import nn

from .blocks import DecoderStage, PtychoBlock, SpatialLifter, StablePtychoBlock
from .errors import lookup

if TYPE_CHECKING:  # config reads this module's registry: import it for types only
    from .config import ModelConfig

__all__ = ["GENERATORS", "BlockFactory", "GeneratorClass", "HybridUNOGenerator",
           "StableHybridUNOGenerator", "build_generator", "channel_schedule", "check_size",
           "register_generator", "to_complex"]

#: ``factory(channels, modes, corners) -> module`` mapping (B, channels, H, W) to the same shape.
BlockFactory = Callable[[int, int, int], nn.Module]


class GeneratorClass(Protocol):
    """What a :data:`GENERATORS` entry is: a generator class (a subclass of
    :class:`HybridUNOGenerator` is one) whose constructor takes the shape keywords
    :func:`build_generator` passes every arch, plus the ones its ``config_options`` returns."""

    def __call__(self, *, hidden_channels: int = ..., n_blocks: int = ..., modes: int = ...,
                 C: int = ..., corners: int = ..., max_hidden_channels: int | None = ...,
                 N: int | None = ...) -> nn.Module: ...

    def config_options(self, cfg: ModelConfig) -> dict[str, Any]: ...


#: The ``model/arch`` names, in registration order: ``{name: generator class}``.
GENERATORS: dict[str, GeneratorClass] = {}

G = TypeVar("G", bound=GeneratorClass)


def register_generator(name: str) -> Callable[[G], G]:
    """Class decorator: register the class as ``model/arch=name`` in :data:`GENERATORS`.

    The config validator, the search spaces' ``choices: "*"`` and ``tune-ptycho paths`` read the
    names from there. Raises ``ValueError`` for a name that is already registered."""

    def add(cls: G) -> G:
        if name in GENERATORS:
            raise ValueError(f"model/arch={name!r} is already registered: {GENERATORS[name]!r}")
        GENERATORS[name] = cls
        return cls

    return add


def channel_schedule(hidden_channels: int, n_blocks: int,
                     max_hidden_channels: int | None = None) -> list[int]:
    """Channels of encoder levels 0..n-1: ``w, 2w, 4w, ...``, each capped at
    ``max_hidden_channels`` when given. ``channel_schedule(32, 4) == [32, 64, 128, 256]``."""
    chs = [hidden_channels]
    for _ in range(n_blocks - 1):
        nxt = 2 * chs[-1]
        chs.append(nxt if max_hidden_channels is None else min(nxt, max_hidden_channels))
    return chs


def check_size(N: int, n_blocks: int) -> None:
    """Raise ``ValueError`` unless ``N`` survives ``n_blocks - 1`` exact halvings."""
    depth = 2 ** (n_blocks - 1)
    if N < 1 or N % depth:
        deepest = (N & -N).bit_length() if N > 0 else 1  # 1 + the power of two dividing N
        raise ValueError(f"N={N} is not divisible by 2^(n_blocks-1)={depth} (n_blocks={n_blocks}): "
                         f"the encoder halves the patch {n_blocks - 1} times; use n_blocks <= "
                         f"{deepest} or an N divisible by {depth}")


@register_generator("hybrid")
class HybridUNOGenerator(nn.Module):
    """Hybrid U-NO (``hybrid``): ``(B, C, N, N)`` float32 -> ``(B, N, N, C, 2)`` float32.

    Layout (docs/physics.md §4.3; ``ch_0 = hidden_channels``, ``ch_{i+1} = 2·ch_i`` capped at
    ``max_hidden_channels``)::

        h = SpatialLifter(C -> ch_0)(x)                            # (B, ch_0, N, N)
        for i in 0..n-1:  h = Block(ch_i, modes)(h)                # (B, ch_i, N/2^i, N/2^i)
                          if i < n-1: skip_i = h; h = Conv2d(ch_i -> ch_{i+1}, k=2, s=2)(h)
        h = Block(ch_{n-1}, max(1, modes // 2))(h)                 # bottleneck, same resolution
        for i in n-2..0:  h = DecoderStage(ch_{i+1} -> ch_i)(h, skip_i)   # (B, ch_i, N/2^i, ...)
        out = Conv1x1(ch_0 -> 2C)(h) -> (B, 2, C, N, N) -> (B, N, N, C, 2)

    Output channels ``0..C-1`` are the real parts and ``C..2C-1`` the imaginary parts.
    At N=64, n=4, w=32, modes=12 with ``corners=1`` this has 17,202,402 parameters (§4.5).

    Args:
        in_channels, out_channels: accepted for upstream's signature only. Upstream's shapes are
            fixed by ``C`` (the lifter reads ``C`` channels, the head writes ``2C``) and so are
            these; the two values are ignored.
        hidden_channels: width ``w`` of the first level.
        n_blocks: encoder levels (upstream's ``fno_blocks``); the input side must be divisible by
            ``2^(n_blocks-1)``.
        modes: Fourier modes per axis in the encoder blocks (the bottleneck uses ``modes // 2``).
        C: diffraction channels (``gridsize²``).
        corners: spectral layout, 2 (standard FNO) or 1 (upstream's fallback); see
            :mod:`ptycho_model.spectral`.
        block_factory: ``factory(channels, modes, corners)`` for encoder and bottleneck blocks;
            default :class:`~ptycho_model.blocks.PtychoBlock`.
        max_hidden_channels: cap on the doubling channel schedule (the decoder mirrors it).
        N: patch side, optional; given, it is checked at construction.
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 2, hidden_channels: int = 32,
                 n_blocks: int = 4, modes: int = 12, C: int = 1, corners: int = 2,
                 block_factory: BlockFactory | None = None,
                 max_hidden_channels: int | None = None, N: int | None = None) -> None:
        super().__init__()
        for name, value in (("hidden_channels", hidden_channels), ("n_blocks", n_blocks),
                            ("modes", modes), ("C", C)):
            if value < 1:
                raise ValueError(f"{type(self).__name__} {name}={value!r} must be >= 1")
        if max_hidden_channels is not None and max_hidden_channels < hidden_channels:
            raise ValueError(f"max_hidden_channels={max_hidden_channels} must be >= "
                             f"hidden_channels={hidden_channels}")
        if N is not None:
            check_size(N, n_blocks)
        block_factory = PtychoBlock if block_factory is None else block_factory
        self.C = C
        self.n_blocks = n_blocks
        self.N = N
        self.channels = channel_schedule(hidden_channels, n_blocks, max_hidden_channels)
        chs = self.channels

        self.lifter = SpatialLifter(C, chs[0])
        self.encoder = nn.ModuleList(block_factory(ch, modes, corners) for ch in chs)
        self.downsample = nn.ModuleList(
            nn.Conv2d(chs[i], chs[i + 1], kernel_size=2, stride=2) for i in range(n_blocks - 1))
        self.bottleneck = block_factory(chs[-1], max(1, modes // 2), corners)
        # decoder[0] is the deepest stage: it runs first and mirrors the last downsampler.
        self.decoder = nn.ModuleList(
            DecoderStage(chs[i + 1], chs[i]) for i in reversed(range(n_blocks - 1)))
        self.head = nn.Conv2d(chs[0], 2 * C, kernel_size=1)

    @classmethod
    def config_options(cls, cfg: ModelConfig) -> dict[str, Any]:
        """The constructor keywords this arch reads from ``cfg`` beyond the shape keywords
        :func:`build_generator` passes every arch: none for ``hybrid``."""
        return {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.C:
            raise ValueError(f"{type(self).__name__} expects input (B, C={self.C}, N, N), "
                             f"got shape {tuple(x.shape)}")
        B, _, H, W = x.shape
        for side in {H, W}:
            check_size(side, self.n_blocks)
        h = self.lifter(x)  # (B, ch_0, H, W)
        skips = []
        for i, block in enumerate(self.encoder):
            h = block(h)  # (B, ch_i, H/2^i, W/2^i)
            if i < self.n_blocks - 1:
                skips.append(h)
                h = self.downsample[i](h)  # (B, ch_{i+1}, H/2^(i+1), W/2^(i+1))
        h = self.bottleneck(h)  # (B, ch_{n-1}, H/2^(n-1), W/2^(n-1))
        for stage, skip in zip(self.decoder, reversed(skips), strict=True):
            h = stage(h, skip)  # (B, ch_i, H/2^i, W/2^i)
        out = self.head(h)  # (B, 2C, H, W)
        out = out.unflatten(1, (2, self.C))  # (B, 2, C, H, W): [real | imag] channel halves
        return out.permute(0, 3, 4, 2, 1)  # (B, H, W, C, 2)


@register_generator("stable_hybrid")
class StableHybridUNOGenerator(HybridUNOGenerator):
    """``stable_hybrid``: :class:`HybridUNOGenerator` with
    :class:`~ptycho_model.blocks.StablePtychoBlock` (``variant`` ``"layerscale"`` or
    ``"zero_gamma"``) in the encoder and bottleneck; the decoder is unchanged. Same shapes.
    At the Stage A settings with ``corners=1``: 17,203,874 (zero_gamma) / 17,204,610 (layerscale)
    parameters (§4.5)."""

    def __init__(self, in_channels: int = 1, out_channels: int = 2, hidden_channels: int = 32,
                 n_blocks: int = 4, modes: int = 12, C: int = 1, corners: int = 2,
                 variant: str = "layerscale", layerscale_init: float = 1e-3,
                 max_hidden_channels: int | None = None, N: int | None = None) -> None:
        factory = functools.partial(StablePtychoBlock, variant=variant,
                                    layerscale_init=layerscale_init)
        super().__init__(in_channels, out_channels, hidden_channels, n_blocks, modes, C, corners,
                         block_factory=factory, max_hidden_channels=max_hidden_channels, N=N)
        self.variant = variant

    @classmethod
    def config_options(cls, cfg: ModelConfig) -> dict[str, Any]:
        """``model/stable_block`` and ``model/layerscale_init``: read by this arch only."""
        return {"variant": cfg.stable_block, "layerscale_init": cfg.layerscale_init}


def build_generator(cfg: ModelConfig, N: int, C: int = 1) -> nn.Module:
    """The generator registered as ``cfg.arch``, for ``(B, C, N, N)`` inputs.

    Every arch gets the shape keywords (``model/width``, ``blocks``, ``modes``,
    ``spectral_corners``, ``max_hidden_channels``, ``N``, ``C``) and what its own
    ``config_options(cfg)`` adds (``stable_hybrid``: ``model/stable_block`` and
    ``model/layerscale_init``). Raises ``ConfigError`` for an unknown arch, ``ValueError`` for an
    ``N`` not divisible by ``2^(blocks-1)``.
    """
    generator = lookup(GENERATORS, cfg.arch, "model/arch")
    return generator(hidden_channels=cfg.width, n_blocks=cfg.blocks, modes=cfg.modes, C=C,
                     corners=cfg.spectral_corners, max_hidden_channels=cfg.max_hidden_channels,
                     N=N, **generator.config_options(cfg))


def to_complex(out: torch.Tensor) -> torch.Tensor:
    """Generator output ``(B, N, N, C, 2)`` [real, imag] -> object ``(B, C, N, N)`` complex64."""
    if out.ndim != 5 or out.shape[-1] != 2:
        raise ValueError(f"to_complex expects (B, N, N, C, 2), got shape {tuple(out.shape)}")
    obj = torch.complex(out[..., 0].float(), out[..., 1].float())  # (B, N, N, C)
    return obj.permute(0, 3, 1, 2).contiguous()  # (B, C, N, N)
