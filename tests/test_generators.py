"""Every registered generator through forward and backward, upstream parameter counts, the
stable blocks' behaviour at init, size validation and the channel cap."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ptycho_model.blocks import STABLE_VARIANTS, LayerScale, PtychoBlock, StablePtychoBlock
from ptycho_model.config import ModelConfig
from ptycho_model.generators import (
    GENERATORS,
    HybridUNOGenerator,
    StableHybridUNOGenerator,
    build_generator,
    to_complex,
)

TINY = dict(width=8, blocks=3, modes=4)
N_TINY = 32

# (arch, stable_block) for every registered generator; stable_block matters for stable_hybrid only.
VARIANTS = [(arch, sb) for arch in sorted(GENERATORS)
            for sb in (list(STABLE_VARIANTS) if arch == "stable_hybrid" else ["layerscale"])]


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("corners", [1, 2])
@pytest.mark.parametrize("arch,stable_block", VARIANTS)
def test_forward_backward(arch: str, stable_block: str, corners: int) -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(arch=arch, stable_block=stable_block, spectral_corners=corners, **TINY)
    model = build_generator(cfg, N=N_TINY)
    x = torch.rand(2, 1, N_TINY, N_TINY)
    out = model(x)
    assert out.shape == (2, N_TINY, N_TINY, 1, 2) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    obj = to_complex(out)
    assert obj.shape == (2, 1, N_TINY, N_TINY) and obj.dtype == torch.complex64
    obj.abs().mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("arch,stable_block,expected", [
    ("hybrid", "layerscale", 17_202_402),
    ("stable_hybrid", "zero_gamma", 17_203_874),
    ("stable_hybrid", "layerscale", 17_204_610),
])
def test_upstream_parameter_counts(arch: str, stable_block: str, expected: int) -> None:
    """docs/physics.md §4.5: Stage A settings with upstream's single-corner spectral layer."""
    cfg = ModelConfig(arch=arch, stable_block=stable_block, spectral_corners=1)
    with torch.device("meta"):  # counts only: no memory, no init cost
        model = build_generator(cfg, N=64)
    assert n_params(model) == expected


def test_upstream_parameter_breakdown() -> None:
    with torch.device("meta"):
        m = build_generator(ModelConfig(arch="hybrid", spectral_corners=1), N=64)
    assert n_params(m.lifter) == 9_568
    assert [n_params(b) for b in m.encoder] == [156_704, 626_752, 2_506_880, 10_027_264]
    assert [n_params(d) for d in m.downsample] == [8_256, 32_896, 131_328]
    assert n_params(m.bottleneck) == 2_949_376
    assert [n_params(d) for d in m.decoder] == [573_824, 143_552, 35_936]
    assert n_params(m.head) == 66


def test_two_corner_count_adds_the_second_corner() -> None:
    with torch.device("meta"):
        one = build_generator(ModelConfig(arch="hybrid", spectral_corners=1), N=64)
        two = build_generator(ModelConfig(arch="hybrid", spectral_corners=2), N=64)
    assert n_params(one) == 17_202_402
    assert n_params(two) == 17_202_402 + 14_893_056 == 32_095_458  # spectral weights doubled


def test_capped_count_and_channel_widths() -> None:
    cfg = ModelConfig(arch="hybrid", blocks=6, max_hidden_channels=512, spectral_corners=1)
    with torch.device("meta"):
        model = build_generator(cfg, N=64)
    assert n_params(model) == 118_263_522
    assert model.channels == [32, 64, 128, 256, 512, 512]
    assert max(m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)) == 512
    assert model.bottleneck.spectral.in_channels == 512
    # the decoder mirrors the capped schedule: deepest stage 512 -> 512, then halving
    assert [s.up.out_channels for s in model.decoder] == [512, 256, 128, 64, 32]


def test_zero_gamma_block_is_exact_identity_at_init() -> None:
    torch.manual_seed(0)
    block = StablePtychoBlock(8, 4, variant="zero_gamma")
    x = torch.randn(2, 8, 16, 16)
    assert torch.equal(block(x), x)
    assert not any("layerscale" in n for n, _ in block.named_parameters())


def test_zero_gamma_generator_encoder_is_identity_at_init() -> None:
    torch.manual_seed(0)
    model = StableHybridUNOGenerator(hidden_channels=8, n_blocks=3, modes=4, variant="zero_gamma")
    h = torch.randn(1, 8, 32, 32)
    assert torch.equal(model.encoder[0](h), h)


@pytest.mark.parametrize("init", [1e-3, 1e-2])
def test_layerscale_block_near_identity_and_gamma_learns(init: float) -> None:
    torch.manual_seed(0)
    block = StablePtychoBlock(8, 4, variant="layerscale", layerscale_init=init)
    x = torch.randn(2, 8, 16, 16)
    y = block(x)
    rel = ((y - x).norm() / x.norm()).item()
    # the branch is gamma · IN(...), whose unit-variance IN output has norm ~ |x|
    assert 0.2 * init < rel < 5 * init
    y.square().mean().backward()
    gammas = {n: p for n, p in block.named_parameters() if "layerscale" in n}
    assert list(gammas) == ["layerscale.gamma"]
    assert gammas["layerscale.gamma"].grad.abs().min() > 0


def test_layerscale_module() -> None:
    ls = LayerScale(3, init=0.5)
    x = torch.ones(1, 3, 2, 2)
    torch.testing.assert_close(ls(x), 0.5 * x)
    assert ls.gamma.shape == (3,)


def test_ptycho_block_keeps_shape() -> None:
    block = PtychoBlock(4, 3, corners=1)
    x = torch.randn(1, 4, 8, 12)
    assert block(x).shape == x.shape


@pytest.mark.parametrize("cls", sorted(GENERATORS.values(), key=lambda c: c.__name__))
def test_indivisible_size_at_construction(cls: type) -> None:
    with pytest.raises(ValueError, match=r"N=36 .*n_blocks=4"):
        cls(hidden_channels=4, n_blocks=4, modes=2, N=36)


def test_indivisible_size_at_forward() -> None:
    model = HybridUNOGenerator(hidden_channels=4, n_blocks=3, modes=2)
    with pytest.raises(ValueError, match=r"N=30 .*n_blocks=3"):
        model(torch.rand(1, 1, 30, 30))
    with pytest.raises(ValueError, match=r"C=1"):
        model(torch.rand(1, 2, 32, 32))


def test_build_generator_rejects_unknown_arch() -> None:
    cfg = ModelConfig()
    object.__setattr__(cfg, "arch", "unet")  # bypass from_dict validation on purpose
    with pytest.raises(ValueError, match=r"unknown model/arch='unet'; choose from \['hybrid'"):
        build_generator(cfg, N=32)


def test_stable_variant_is_validated() -> None:
    with pytest.raises(ValueError, match="'gamma0'"):
        StableHybridUNOGenerator(hidden_channels=4, n_blocks=2, modes=2, variant="gamma0")


def test_multichannel_output_layout() -> None:
    """Head channels 0..C-1 are real parts and C..2C-1 imaginary parts."""
    torch.manual_seed(0)
    C = 4
    model = HybridUNOGenerator(hidden_channels=4, n_blocks=2, modes=2, C=C)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.copy_(torch.arange(2 * C, dtype=torch.float32))
    out = model(torch.rand(1, C, 8, 8))  # (1, 8, 8, C, 2)
    assert out.shape == (1, 8, 8, C, 2)
    torch.testing.assert_close(out[0, 0, 0], torch.tensor([[0., 4.], [1., 5.], [2., 6.], [3., 7.]]))
    obj = to_complex(out)
    assert obj[0, 2, 0, 0] == torch.complex(torch.tensor(2.0), torch.tensor(6.0))
