"""The mixer zoo: every registered mixer in every block skeleton, and equality with timm's ConvMixer."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import mixers
from mixers import BLOCKS, MIXERS, MixerNet, TokenGridError, UnknownNameError, create_mixer
from mixers.base import hyperparameters

MODEL = dict(dim=32, depth=2, patch_size=2, kernel_size=3, img_size=16, num_classes=5)


def make(mixer: str, block: str, seed: int = 0, **kwargs) -> MixerNet:
    torch.manual_seed(seed)
    return MixerNet(mixer=mixer, block=block, **{**MODEL, **kwargs})


def fixed_grid(mixer: str) -> bool:
    return getattr(MIXERS.get(mixer), "fixed_grid", False)


@pytest.mark.parametrize("name", MIXERS.names())
def test_mixer_keeps_shape_and_each_sample_to_itself(name):
    torch.manual_seed(0)
    extra = {"grid_size": (6, 5)} if "grid_size" in hyperparameters(MIXERS.get(name)) else {}
    mixer = create_mixer(name, 16, **extra)
    x = torch.randn(3, 16, 6, 5)
    y = mixer(x)
    assert y.shape == x.shape
    # no batch statistics inside (no norm): each sample is mixed on its own
    assert torch.allclose(mixer(x[:1]), y[:1], atol=1e-5)


def test_identity_is_the_only_mixer_that_mixes_no_tokens():
    x = torch.randn(2, 8, 4, 4)
    for name in MIXERS:
        torch.manual_seed(0)
        extra = {"grid_size": (4, 4)} if "grid_size" in hyperparameters(MIXERS.get(name)) else {}
        mixer = create_mixer(name, 8, **extra)
        x2 = x.clone()
        x2[:, :, 0, 0] += 1.0  # perturb one token
        changed = (mixer(x2) - mixer(x))[:, :, 1:, 1:].abs().max() > 1e-6  # did any other token move?
        assert bool(changed) == (name != "identity"), name


@pytest.mark.parametrize("block", BLOCKS.names())
@pytest.mark.parametrize("mixer", MIXERS.names())
class TestEveryMixerInEveryBlock:
    def test_forward_shape_and_finite(self, mixer, block):
        model = make(mixer, block)
        x = torch.randn(4, 3, 16, 16)
        assert model(x).shape == (4, 5)
        assert model.forward_features(x).shape == (4, 32, 8, 8)
        assert model.forward_head(model.forward_features(x), pre_logits=True).shape == (4, 32)
        assert torch.isfinite(model(x)).all()

    def test_every_parameter_gets_a_gradient(self, mixer, block):
        model = make(mixer, block)
        model(torch.randn(4, 3, 16, 16)).logsumexp(1).sum().backward()
        missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
        assert not missing, f"no gradient reaches {missing}"

    def test_other_input_size(self, mixer, block):
        model = make(mixer, block).eval()
        x = torch.randn(2, 3, 24, 24)
        if fixed_grid(mixer):
            with pytest.raises(TokenGridError, match="8x8 token grid but got 12x12"):
                model(x)
        else:
            assert model(x).shape == (2, 5)
            assert torch.isfinite(model(x)).all()

    def test_seeded_construction_is_deterministic(self, mixer, block):
        a, b, c = make(mixer, block, seed=1), make(mixer, block, seed=1), make(mixer, block, seed=2)
        sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
        assert any(not torch.equal(sa[k], sc[k]) for k in sa if sa[k].is_floating_point())

    def test_reset_classifier(self, mixer, block):
        model = make(mixer, block)
        model.reset_classifier(7)
        assert model(torch.randn(2, 3, 16, 16)).shape == (2, 7)
        model.reset_classifier(0)
        assert model(torch.randn(2, 3, 16, 16)).shape == (2, 32)


def test_unknown_names_list_the_known_ones():
    with pytest.raises(
            UnknownNameError, match=r"unknown mixer 'dwconvv' \(did you mean 'dwconv'\?\); known: .*attention"):
        MixerNet(mixer="dwconvv")
    message = r"unknown block 'metafromer' \(did you mean 'metaformer'\?\); known: convmixer, metaformer"
    with pytest.raises(UnknownNameError, match=message):
        MixerNet(block="metafromer")
    with pytest.raises(UnknownNameError, match="unknown activation 'gleu'.*known: gelu, relu, silu"):
        MixerNet(act="gleu")


def test_hyperparameter_typos_and_types_are_named():
    with pytest.raises(
            ValueError, match=r"mixer 'attention' has no hyper-parameter 'num_head' \(did you mean 'num_heads'\?\)"):
        MixerNet(mixer="attention", mixer_kwargs={"num_head": 4})
    with pytest.raises(ValueError, match="mixer 'attention': num_heads must be an integer"):
        MixerNet(mixer="attention", mixer_kwargs={"num_heads": 2.5})
    with pytest.raises(ValueError, match="has no hyper-parameter 'grid_size'"):  # filled in by the model, not the user
        MixerNet(mixer="mlp", mixer_kwargs={"grid_size": (2, 2)})
    with pytest.raises(ValueError, match=r"block 'convmixer' has no hyper-parameter 'mlp_ratio'; valid: \(none\)"):
        MixerNet(block="convmixer", block_kwargs={"mlp_ratio": 2.0})
    with pytest.raises(ValueError, match="patch_size 16 is larger than the image"):
        MixerNet(patch_size=16, img_size=8)


def test_registering_a_name_twice_raises():
    with pytest.raises(ValueError, match="mixer 'dwconv' is already registered"):
        mixers.register_mixer("dwconv")(nn.Identity)


def test_a_new_mixer_is_picked_up_by_the_registry():
    registry = mixers.Registry("mixer")
    registry.register("shift")(nn.Identity)
    assert registry.names() == ["shift"] and "shift" in registry


@pytest.fixture(scope="module")
def timm():
    import timm

    import mixers.zoo  # noqa: F401  (registers the variants)
    return timm


@pytest.mark.parametrize("timm_name,ours", [
    ("convmixer_768_32", "dwconv_convmixer768_32_ks7_p7"),
    ("convmixer_1536_20", "dwconv_convmixer1536_20_ks9_p7"),
    ("convmixer_1024_20_ks9_p14", "dwconv_convmixer1024_20_ks9_p14"),
])
def test_equals_timm_convmixer(timm, timm_name, ours):
    from mixers.timm_compat import convert_timm_convmixer
    torch.manual_seed(0)
    reference = timm.create_model(timm_name).eval()
    model = timm.create_model(ours).eval()
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in reference.parameters())
    # BN statistics are re-drawn so the comparison covers them too, not only the conv and linear weights
    for m in reference.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    model.load_state_dict(convert_timm_convmixer(reference.state_dict()), strict=True)
    x = torch.randn(2, 3, 56, 56)
    with torch.no_grad():
        expected, got = reference(x), model(x)
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-5), (got - expected).abs().max()


def test_timm_create_model_builds_every_variant_name_scheme(timm):
    from mixers.zoo import VARIANTS, variant_name
    assert len(VARIANTS) == len(MIXERS) * len(BLOCKS) * 4
    assert variant_name("dwconv", "convmixer", 1536, 20, 9, 7) == "dwconv_convmixer1536_20_ks9_p7"
    assert variant_name("attention", "metaformer", 256, 8, 5, 2) == "attention_metaformer256_8_p2"  # no kernel
    model = timm.create_model("attention_metaformer256_8_p2", num_classes=3)
    assert isinstance(model, MixerNet) and model.num_classes == 3 and len(model.blocks) == 8
    assert set(timm.list_models("*_metaformer256_8*")) == {n for n in VARIANTS if "_metaformer256_8" in n}
    assert set(timm.list_models("dwconv_convmixer*")) == {n for n in VARIANTS if n.startswith("dwconv_convmixer")}
    with pytest.raises(ValueError, match="no pretrained weights of its own.*convert_timm_convmixer"):
        timm.create_model("dwconv_convmixer256_8_ks5_p2", pretrained=True)
