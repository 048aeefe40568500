"""Score networks, time embeddings and ScoreModel."""

import math

import pytest
import torch

from scoresde.nets import (
    MLP,
    GaussianFourierEmbedding,
    NCSNpp,
    SinusoidalEmbedding,
    UNet,
    build_net,
    ddpmpp_cifar10,
    ddpmpp_deep_cifar10,
    ncsnpp_cifar10,
    ncsnpp_deep_cifar10,
    unet_small,
)
from scoresde.nets.upfirdn import (
    conv_downsample_2d,
    downsample_2d,
    upfirdn2d,
    upsample_2d,
    upsample_conv_2d,
)
from scoresde.score import ScoreModel
from scoresde.sde import VESDE, VPSDE, SubVPSDE

IMAGE_SHAPES = [(1, 8, 8), (3, 8, 8), (1, 28, 28), (3, 28, 28), (1, 32, 32), (3, 32, 32)]


def _count(net):
    return sum(p.numel() for p in net.parameters())


def _randomize(net, std=0.05, seed=0):
    """Perturb all weights (the output layers are zero-initialised, so a fresh net outputs 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(std * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return net


def _tiny_unet(shape, **kw):
    cfg = {"ch": 8, "ch_mult": (1, 2), "num_res_blocks": 1, "dropout": 0.0}
    cfg.update(kw)
    return build_net("unet", shape, **cfg)


# ---------------------------------------------------------------------------- embeddings
def test_sinusoidal_embedding_formula():
    emb = SinusoidalEmbedding(8, input_scale=1000.0)
    c = torch.tensor([0.0, 0.25, 1.0])
    out = emb(c)
    freqs = torch.exp(-math.log(10000.0) * torch.arange(4) / 3)
    arg = 1000.0 * c[:, None] * freqs
    torch.testing.assert_close(out, torch.cat([arg.sin(), arg.cos()], 1))


def test_fourier_embedding_is_fixed_and_scaled():
    emb = GaussianFourierEmbedding(256, scale=16.0)
    assert list(emb.parameters()) == []  # not trained
    assert "W" in emb.state_dict()  # but saved with the model
    assert 12.0 < float(emb.W.std()) < 20.0
    c = torch.rand(5)
    torch.testing.assert_close(emb(c), GaussianFourierEmbedding(256, scale=16.0)(c))
    arg = 2 * math.pi * c[:, None] * emb.W
    torch.testing.assert_close(emb(c), torch.cat([arg.sin(), arg.cos()], 1))


def test_bad_embedding_name_raises():
    with pytest.raises(ValueError, match="time_embedding"):
        MLP(2, time_embedding="learned")


# ---------------------------------------------------------------------------- MLP
@pytest.mark.parametrize("time_embedding", ["fourier", "sinusoidal"])
def test_mlp_shapes_time_and_label_conditioning(time_embedding):
    net = _randomize(
        MLP(3, hidden=32, num_blocks=2, embed_dim=16, time_embedding=time_embedding, num_classes=4)
    )
    x = torch.randn(5, 3)
    c = torch.full((5,), 0.3)
    out = net(x, c)
    assert out.shape == (5, 3)
    assert not torch.allclose(out, net(x, torch.full((5,), 0.7)))
    y = torch.tensor([0, 1, 2, 3, 0])
    assert not torch.allclose(net(x, c, y), net(x, c, (y + 1) % 4))
    # y=None is the null label, index num_classes
    torch.testing.assert_close(out, net(x, c, None))
    null = net.cond.label_embed.weight[4]
    assert not torch.allclose(net(x, c, y), out) and null.abs().sum() > 0
    # the null label may also be given per sample (classifier-free label dropout)
    y_null = torch.tensor([0, 4, 2, 4, 0])
    torch.testing.assert_close(net(x, c, y_null)[1], out[1])
    with pytest.raises(ValueError, match="y"):
        net(x, c, torch.tensor([0, 1, 2, 3, 5]))
    with pytest.raises(ValueError, match="y"):
        net(x, c, torch.tensor([0, -1, 2, 3, 0]))
    with pytest.raises(ValueError, match="num_classes"):
        MLP(3)(x, c, y)


def test_mlp_starts_at_zero_and_runs_in_float64():
    net = MLP(2, hidden=16, num_blocks=1, embed_dim=8)
    x = torch.randn(4, 2)
    assert (net(x, torch.rand(4)) == 0).all()  # zero-initialised output layer
    net = _randomize(net).double()
    out = net(x.double(), torch.rand(4, dtype=torch.float64))
    assert out.dtype == torch.float64 and out.abs().sum() > 0


def test_mlp_gradients_reach_every_parameter():
    net = _randomize(MLP(2, hidden=16, num_blocks=2, embed_dim=8, num_classes=2))
    net(torch.randn(4, 2), torch.rand(4), torch.tensor([0, 1, 0, 1])).pow(2).sum().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    # label row 2 (the null label) is not used with explicit labels
    assert missing == [] or missing == ["cond.label_embed.weight"]


# ---------------------------------------------------------------------------- UNet
@pytest.mark.parametrize("shape", IMAGE_SHAPES)
def test_unet_output_shape_for_every_supported_size(shape):
    net = _tiny_unet(shape, ch_mult=(1, 2, 2), attn_resolutions=(16, 8, 7))
    x = torch.randn(2, *shape)
    out = net(x, torch.rand(2))
    assert out.shape == x.shape


def test_unet_pads_28x28_to_a_multiple_and_crops_back():
    net = _randomize(_tiny_unet((1, 28, 28), ch_mult=(1, 2, 2, 2), attn_resolutions=(16,)))
    assert net.padded_size(28) == 32
    x = torch.randn(2, 1, 28, 28)
    out = net(x, torch.rand(2))
    assert out.shape == x.shape and torch.isfinite(out).all()
    # samples are processed independently (no cross-batch mixing), eval mode
    net.eval()
    c = torch.rand(2)
    torch.testing.assert_close(net(x, c)[:1], net(x[:1], c[:1]), rtol=1e-4, atol=1e-5)


def test_unet_time_and_label_conditioning_change_the_output():
    net = _randomize(_tiny_unet((1, 8, 8), num_classes=3)).eval()
    x = torch.randn(3, 1, 8, 8)
    c = torch.full((3,), 0.2)
    out = net(x, c)
    assert not torch.allclose(out, net(x, torch.full((3,), 0.8)), atol=1e-5)
    assert not torch.allclose(
        net(x, c, torch.tensor([0, 1, 2])), net(x, c, torch.tensor([1, 2, 0])), atol=1e-5
    )
    torch.testing.assert_close(out, net(x, c, None))


def test_unet_float64_and_zero_init():
    net = _tiny_unet((3, 8, 8))
    x = torch.randn(2, 3, 8, 8)
    assert (net(x, torch.rand(2)) == 0).all()
    net = _randomize(net).double()
    out = net(x.double(), torch.rand(2, dtype=torch.float64))
    assert out.dtype == torch.float64 and out.abs().sum() > 0


def test_unet_has_attention_and_dropout_where_asked():
    net = UNet(
        in_channels=1,
        image_size=32,
        ch=8,
        ch_mult=(1, 2, 2),
        num_res_blocks=1,
        attn_resolutions=(16,),
        dropout=0.3,
    )
    names = [type(m).__name__ for m in net.modules()]
    # one attention per down block at 16x16, one in the middle, one on the up path at 16x16
    assert names.count("AttnBlock") == 3
    assert any(isinstance(m, torch.nn.Dropout) and m.p == 0.3 for m in net.modules())


def test_preset_parameter_counts():
    """DDPM++ cont. (CIFAR-10) has ~62M parameters in the paper (Song et al. 2021, Table 3)."""
    ddpmpp = ddpmpp_cifar10()
    assert _count(ddpmpp) == 61_804_419
    assert abs(_count(ddpmpp) / 62e6 - 1) < 0.1
    # the release's NCSN++ cont. (FIR, residual input pyramid, frozen Fourier W counted):
    # 62,758,915; the old UNet-based preset had 61,869,955 (no FIR / pyramid)
    assert _count(ncsnpp_cifar10()) == 62_758_915
    small = unet_small(in_channels=1, image_size=28)
    assert _count(small) < 1_000_000
    assert small.attn_resolutions == (14,)


def test_deep_preset_parameter_counts_equal_the_release():
    """Built on the meta device (no memory, no init cost): the release's counts, measured there."""
    with torch.device("meta"):
        assert _count(ddpmpp_deep_cifar10()) == 106_632_579
        assert _count(ncsnpp_deep_cifar10()) == 107_587_075


# ---------------------------------------------------------------------------- upfirdn / NCSN++
def test_upfirdn2d_is_upsample_pad_filter_downsample():
    """Against a direct loop over the definition (zero insertion, zero pad, true convolution)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 2, 5, 4, generator=g, dtype=torch.float64)
    k = torch.randn(3, 2, generator=g, dtype=torch.float64)
    up, down, (p0, p1) = 2, 3, (2, 1)
    out = upfirdn2d(x, k, up=up, down=down, pad=(p0, p1))
    z = torch.zeros(1, 2, 5 * up + p0 + p1, 4 * up + p0 + p1, dtype=torch.float64)
    z[:, :, p0 : p0 + 5 * up : up, p0 : p0 + 4 * up : up] = x
    full = torch.zeros(1, 2, z.shape[2] - 2, z.shape[3] - 1, dtype=torch.float64)
    for i in range(full.shape[2]):
        for j in range(full.shape[3]):
            for a in range(3):
                for b in range(2):
                    full[:, :, i, j] += z[:, :, i + a, j + b] * k[2 - a, 1 - b]
    torch.testing.assert_close(out, full[:, :, ::down, ::down])


def test_fir_resampling_keeps_constants_and_fused_convs_match_composition():
    k = (1, 3, 3, 1)
    ones = torch.ones(1, 1, 8, 8, dtype=torch.float64)
    assert torch.allclose(downsample_2d(ones, k)[..., 1:-1, 1:-1], torch.ones(1, 1, 2, 2).double())
    assert torch.allclose(upsample_2d(ones, k)[..., 1:-1, 1:-1], torch.ones(1, 1, 14, 14).double())
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 12, 12, generator=g, dtype=torch.float64)
    w = torch.randn(5, 3, 3, 3, generator=g, dtype=torch.float64)
    # fused = composition away from the border (the fused ops pad once)
    up = upsample_conv_2d(x, w, k) - torch.nn.functional.conv2d(upsample_2d(x, k), w, padding=1)
    down = conv_downsample_2d(x, w, k) - downsample_2d(
        torch.nn.functional.conv2d(x, w, padding=1), k
    )
    assert up.shape == (2, 5, 24, 24) and down.shape == (2, 5, 6, 6)
    assert up[..., 3:-3, 3:-3].abs().max() < 1e-12 and down[..., 2:-2, 2:-2].abs().max() < 1e-12


NCSNPP_VARIANTS = [
    {},
    {"resblock_type": "ddpm", "fir": True},
    {"resblock_type": "ddpm", "resamp_with_conv": False, "noise_conditional": False},
    {"embedding_type": "fourier", "fir": True, "progressive_input": "residual", "label": "sigma_t"},
    {"progressive": "output_skip", "progressive_input": "input_skip", "fir": True},
    {"progressive": "output_skip", "progressive_input": "input_skip", "progressive_combine": "cat"},
    {"progressive": "residual", "progressive_input": "residual", "fir": True},
    {"progressive": "residual", "skip_rescale": False, "centered": False},
    {"scale_by_sigma": True, "label": "identity"},
    {"embedding_type": "fourier", "label": "log_sigma", "nonlinearity": "elu"},
]


@pytest.mark.parametrize("opts", NCSNPP_VARIANTS)
def test_ncsnpp_variants_run_and_map_every_weight(opts):
    net = _randomize(
        NCSNpp(
            in_channels=3,
            image_size=8,
            nf=8,
            ch_mult=(1, 2),
            num_res_blocks=1,
            attn_resolutions=(4,),
            dropout=0.0,
            **opts,
        )
    ).eval()
    c = torch.tensor([0.3, 0.9]) if opts.get("label") != "identity" else torch.tensor([10.0, 900.0])
    x = torch.randn(2, 3, 8, 8)
    out = net(x, c)
    assert out.shape == x.shape and torch.isfinite(out).all()
    torch.testing.assert_close(net(x[:1], c[:1]), out[:1], rtol=1e-5, atol=1e-5)
    # every weight belongs to exactly one module of the release order
    names = net.release_module_names()
    owned = [f"{p}.{k}" for p in names for k in net.get_submodule(p).state_dict()]
    assert sorted(owned + ["sigmas"]) == sorted(net.state_dict())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = net(x, c)
    assert torch.isfinite(low).all()
    assert (low.float() - out).abs().max() < 0.1 * out.abs().max() + 0.05


def test_ncsnpp_gradients_float64_and_bad_options():
    net = _randomize(NCSNpp(image_size=8, nf=8, ch_mult=(1, 2), num_res_blocks=1, fir=True))
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    net.double()(x, torch.rand(2, dtype=torch.float64)).square().sum().backward()
    frozen = {n for n, p in net.named_parameters() if not p.requires_grad}
    assert not [n for n, p in net.named_parameters() if n not in frozen and p.grad is None]
    with pytest.raises(ValueError, match="progressive"):
        NCSNpp(progressive="skip")
    with pytest.raises(ValueError, match="image_size"):
        NCSNpp(image_size=12)
    with pytest.raises(ValueError, match="x must have shape"):
        net(torch.randn(1, 3, 16, 16, dtype=torch.float64), torch.rand(1, dtype=torch.float64))


def test_build_net_names():
    assert isinstance(build_net("mlp", (2,)), MLP)
    flat = build_net("mlp", (1, 4, 4), hidden=16, embed_dim=8)
    assert flat(torch.randn(2, 1, 4, 4), torch.rand(2)).shape == (2, 1, 4, 4)
    net = build_net("unet_small", (1, 8, 8), num_classes=10)
    assert net.in_channels == 1 and net.num_classes == 10
    with pytest.raises(ValueError, match="name"):
        build_net("resnet", (3, 32, 32))
    with pytest.raises(ValueError, match="data_shape"):
        build_net("unet", (2,))


# ---------------------------------------------------------------------------- ScoreModel
class _Const(torch.nn.Module):
    """A net that returns a fixed output and records the conditioning it received."""

    def forward(self, x, c, y=None):
        self.c = c
        return torch.ones_like(x) * (1.0 if y is None else 2.0)


@pytest.mark.parametrize("sde_cls", [VPSDE, SubVPSDE, VESDE])
def test_score_model_parameterizations(sde_cls):
    sde = sde_cls()
    x = torch.randn(3, 2, dtype=torch.float64)
    t = torch.tensor([0.1, 0.5, 1.0], dtype=torch.float64)
    _, std = sde.marginal_coeffs(t)
    torch.testing.assert_close(ScoreModel(_Const(), sde)(x, t), -torch.ones_like(x) / std[:, None])
    torch.testing.assert_close(ScoreModel(_Const(), sde, "score")(x, t), torch.ones_like(x))
    torch.testing.assert_close(
        ScoreModel(_Const(), sde, "score_scaled")(x, t), torch.ones_like(x) / std[:, None]
    )
    model = ScoreModel(_Const(), sde, "score")
    torch.testing.assert_close(
        model.score_fn(y=torch.zeros(3, dtype=torch.long))(x, t), 2 * torch.ones_like(x)
    )
    assert model(x, 0.5).shape == x.shape  # scalar t is broadcast
    expect_c = torch.log(sde.sigma(t)) if sde_cls is VESDE else t
    model(x, t)
    torch.testing.assert_close(model.net.c, expect_c)
    assert model.sde is sde


def test_score_model_rejects_bad_options():
    with pytest.raises(ValueError, match="parameterization"):
        ScoreModel(_Const(), VPSDE(), parameterization="x0")
    with pytest.raises(ValueError, match="time_input"):
        ScoreModel(_Const(), VPSDE(), time_input="sigma")
    with pytest.raises(ValueError, match="log_sigma"):
        ScoreModel(_Const(), VPSDE(), time_input="log_sigma")


def test_score_model_with_real_nets_end_to_end():
    sde = VPSDE()
    model = ScoreModel(_randomize(build_net("mlp", (2,), hidden=16, embed_dim=8)), sde).double()
    x = torch.randn(4, 2, dtype=torch.float64)
    t = torch.rand(4, dtype=torch.float64) * 0.9 + 0.1
    s = model(x, t)
    assert s.dtype == torch.float64 and s.shape == x.shape
    img = ScoreModel(_tiny_unet((1, 8, 8)), VESDE(), "score_scaled")
    assert img.score_fn()(torch.randn(2, 1, 8, 8), torch.rand(2)).shape == (2, 1, 8, 8)
