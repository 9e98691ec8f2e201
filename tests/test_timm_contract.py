"""timm's model contract, for every mixer in every block: cfg, pooling, intermediates and features, gradient
checkpointing, parameter groups, and the compilers (TorchScript, FX, torch.export, torch.compile)."""
from __future__ import annotations

import copy
import io

import pytest
import timm
import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.optim import param_groups_layer_decay
from torch.export import Dim

from harness.config import RecipeConfig
from harness.optim import build_optimizer
from mixers import BLOCKS, MIXERS, MixerNet, TokenGridError
from mixers.cfg import CIFAR10_MEAN, CIFAR10_STD
from mixers.model import GLOBAL_POOLS
from mixers.zoo import VARIANTS, variant_name

# TorchScript is part of timm's contract, deprecated or not
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:FutureWarning")

SMALL = dict(dim=32, depth=4, patch_size=2, kernel_size=3, img_size=16, num_classes=5)


def make(mixer: str, block: str, seed: int = 0, **kwargs) -> MixerNet:
    torch.manual_seed(seed)
    return MixerNet(mixer=mixer, block=block, **{**SMALL, **kwargs})


def fixed_grid(mixer: str) -> bool:
    return getattr(MIXERS.get(mixer), "fixed_grid", False)


class CountRuns:
    """Counts the runs of a module's forward (forward hooks do not see a checkpoint's recomputation)."""

    def __init__(self, module: torch.nn.Module):
        self.runs, self.forward = 0, module.forward
        module.forward = self

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.runs += 1
        return self.forward(x)


def inputs(batch: int = 2, size: int = 16) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_variant_has_the_cfg_of_its_shape(name):
    v = VARIANTS[name]
    with torch.device("meta"):
        built = timm.create_model(name)
        direct = MixerNet(**v)
    cfg = built.pretrained_cfg
    assert cfg["architecture"] == name and "url" not in cfg and "hf_hub_id" not in cfg
    assert direct.pretrained_cfg == {k: value for k, value in cfg.items() if k != "architecture"}
    cifar = v["img_size"] == 32
    data = timm.data.resolve_model_data_config(built)
    assert data["input_size"] == ((3, 32, 32) if cifar else (3, 224, 224))
    assert (data["mean"], data["std"]) == ((CIFAR10_MEAN, CIFAR10_STD) if cifar else
                                           (IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD))
    assert data["crop_pct"] == (1.0 if cifar else 0.96)
    assert cfg["fixed_input_size"] == fixed_grid(v["mixer"])
    assert cfg["num_classes"] == v["num_classes"] and cfg["first_conv"] == "stem.proj" and cfg["classifier"] == "head"
    features = built.forward_features(torch.empty(1, *data["input_size"], device="meta"))
    assert tuple(features.shape[-2:]) == cfg["pool_size"]


@pytest.mark.parametrize("mixer", MIXERS.names())
def test_a_model_runs_on_the_input_timm_resolves_for_it(mixer):
    model = timm.create_model(variant_name(mixer, "convmixer", 256, 8, 5, 2)).eval()
    with torch.no_grad():
        assert model(torch.randn(1, *timm.data.resolve_model_data_config(model)["input_size"])).shape == (1, 10)


def test_a_model_built_directly_describes_itself():
    model = MixerNet(mixer="mlp", in_chans=1, img_size=8, patch_size=2, dim=16, depth=1)  # digits-shaped
    cfg = model.pretrained_cfg
    assert cfg["input_size"] == (1, 8, 8) and cfg["pool_size"] == (4, 4) and cfg["fixed_input_size"]
    assert len(cfg["mean"]) == len(cfg["std"]) == 1
    assert timm.data.resolve_model_data_config(model)["input_size"] == (1, 8, 8)


def test_factory_device_and_dtype():
    model = MixerNet(mixer="attention", block="metaformer", **SMALL, device="meta", dtype=torch.float64)
    tensors = list(model.parameters()) + list(model.buffers())
    assert {t.device.type for t in tensors} == {"meta"}
    assert {t.dtype for t in tensors if t.is_floating_point()} == {torch.float64}


@pytest.mark.parametrize("block", BLOCKS.names())
@pytest.mark.parametrize("mixer", MIXERS.names())
class TestTimmContract:
    def test_global_pool(self, mixer, block):
        x = inputs()
        has_head_norm = block == "metaformer"
        for pool in GLOBAL_POOLS:
            if "cat" in pool and has_head_norm:
                with pytest.raises(ValueError, match=f"global_pool '{pool}' concatenates two poolings"):
                    make(mixer, block, global_pool=pool)
                continue
            model = make(mixer, block, global_pool=pool, num_classes=0 if pool == "" else 5).eval()
            with torch.no_grad():
                features = model.forward_features(x)
                pooled = model.forward_head(features, pre_logits=True)
                if pool == "":
                    assert torch.equal(pooled, model.head_norm(features))  # the map itself, normed per position
                else:
                    width = 2 * 32 if "cat" in pool else 32
                    assert pooled.shape == (2, width) == (2, model.head_hidden_size)
                    assert model(x).shape == (2, 5)
        model = make(mixer, block).eval()
        model.reset_classifier(3, "max")
        with torch.no_grad():
            features = model.forward_features(x)
            expected = model.head_norm(features.amax((2, 3), keepdim=True)).flatten(1)
            assert torch.allclose(model.forward_head(features, pre_logits=True), expected)
            model.reset_classifier(7)  # keeps the pool
            assert torch.allclose(model.forward_head(features, pre_logits=True), expected)
            assert model(x).shape == (2, 7)
        with pytest.raises(ValueError, match="global_pool 'mean' is not a pool type; valid: 'avg', 'max'"):
            model.reset_classifier(7, "mean")

    def test_forward_intermediates(self, mixer, block):
        model = make(mixer, block).eval()
        x = inputs()
        outputs = []
        for blk in model.blocks:
            blk.register_forward_hook(lambda module, args, out: outputs.append(out))
        with torch.no_grad():
            final, taps = model.forward_intermediates(x)
            assert len(taps) == len(model.feature_info) == 4
            assert all(torch.equal(t, o) for t, o in zip(taps, outputs))  # each tap is its block's output
            for info, t in zip(model.feature_info, taps):
                assert t.shape == (2, info["num_chs"], 16 // info["reduction"], 16 // info["reduction"])
            assert torch.equal(final, model.forward_features(x))

            def only(**kwargs):
                return model.forward_intermediates(x, intermediates_only=True, **kwargs)

            assert all(map(torch.equal, only(indices=2), taps[2:]))
            assert all(map(torch.equal, only(indices=[0, -1]), [taps[0], taps[3]]))
            assert all(map(torch.equal, only(norm=True), [model.head_norm(t) for t in taps]))
            assert all(map(torch.equal, only(output_fmt="NHWC"), [t.permute(0, 2, 3, 1) for t in taps]))
            calls = len(outputs)
            last, (tap,) = model.forward_intermediates(x, indices=[1], stop_early=True)
            assert torch.equal(tap, taps[1]) and torch.equal(last, taps[1]) and len(outputs) == calls + 2
        with pytest.raises(ValueError, match="output_fmt must be 'NCHW' or 'NHWC', got 'NLC'"):
            model.forward_intermediates(x, output_fmt="NLC")

    def test_prune_intermediate_layers(self, mixer, block):
        model = make(mixer, block).eval()
        x = inputs()
        with torch.no_grad():
            expected, taps = model(x), model.forward_intermediates(x, intermediates_only=True)
            kept = copy.deepcopy(model)
            kept.prune_intermediate_layers([3], prune_head=False)
            assert torch.equal(kept(x), expected)
        for i in range(4):
            pruned = copy.deepcopy(model)
            assert pruned.prune_intermediate_layers([i], prune_norm=True) == [i] and len(pruned.blocks) == i + 1
            with torch.no_grad():
                assert torch.equal(pruned.forward_features(x), taps[i])
                assert torch.equal(pruned(x), taps[i])  # no pool, no classifier left
            pruned.train()
            pruned.forward_intermediates(x, indices=[i], intermediates_only=True)[0].sum().backward()
            assert not [n for n, p in pruned.named_parameters() if p.grad is None]

    def test_features_only_backbone_trains_one_step(self, mixer, block):
        backbone = timm.create_model(variant_name(mixer, block, 256, 8, 5, 2), features_only=True, out_indices=(1, -1))
        info = backbone.feature_info
        assert info.out_indices == (1, 7) and len(backbone.model.blocks) == 8
        optimizer = torch.optim.SGD(backbone.parameters(), lr=1e-3)
        x = inputs(size=32)
        features = backbone(x)
        assert [tuple(f.shape) for f in features] == [(2, c, 32 // r, 32 // r)
                                                      for c, r in zip(info.channels(), info.reduction())]
        loss = sum(f.pow(2).mean() for f in features)
        loss.backward()
        untrained = [n for n, p in backbone.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
        assert not untrained, f"no gradient reaches {untrained}"
        optimizer.step()
        with torch.no_grad():
            assert sum(f.pow(2).mean() for f in backbone(x)) < loss

    @pytest.mark.parametrize("feature_cls", ["getter", "fx", "hook", "list", "dict"])
    def test_features_only_with_every_timm_feature_class(self, mixer, block, feature_cls):
        name = variant_name(mixer, block, 256, 8, 5, 2)
        torch.manual_seed(0)
        model = timm.create_model(name, **SMALL).eval()
        torch.manual_seed(0)
        backbone = timm.create_model(name, features_only=True, feature_cls=feature_cls, out_indices=(1, 3), **SMALL)
        assert backbone.feature_info.channels() == [32, 32] and backbone.feature_info.reduction() == [2, 2]
        x = inputs()
        with torch.no_grad():
            expected = model.forward_intermediates(x, indices=[1, 3], intermediates_only=True)
            features = backbone.eval()(x)
            assert all(map(torch.equal, features.values() if feature_cls == "dict" else features, expected))
            if feature_cls == "fx":  # timm's FX feature extraction, then TorchScript
                assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(torch.jit.script(backbone)(x), expected))

    def test_torchscript(self, mixer, block):
        model = make(mixer, block).eval()
        buffer = io.BytesIO()
        torch.jit.save(torch.jit.script(model), buffer)
        buffer.seek(0)
        scripted = torch.jit.load(buffer)
        x = inputs()
        with torch.no_grad():
            assert torch.allclose(scripted(x), model(x), atol=1e-5)
        if fixed_grid(mixer):
            with pytest.raises(torch.jit.Error, match=f"mixer '{mixer}' was built for a 8x8 token grid but got 12x12"):
                scripted(inputs(size=24))

    def test_fx_and_fx_then_torchscript(self, mixer, block):
        model = make(mixer, block, drop_path_rate=0.2)
        x = inputs()
        for train in (True, False):
            model.train(train)
            traced = torch.fx.symbolic_trace(model)
            torch.manual_seed(0)
            expected = model(x)
            torch.manual_seed(0)
            assert torch.equal(traced(x), expected)
        scripted = torch.jit.script(traced)
        with torch.no_grad():
            assert torch.allclose(scripted(x), model(x), atol=1e-5)
        if fixed_grid(mixer):
            with pytest.raises(TokenGridError, match="was built for a 8x8 token grid but got 12x12"):
                traced(inputs(size=24))

    def test_export_with_a_dynamic_batch(self, mixer, block):
        model = make(mixer, block).eval()
        exported = torch.export.export(model, (inputs(2),), dynamic_shapes={"x": {0: Dim("batch")}}).module()
        with torch.no_grad():
            for batch in (3, 7):
                assert torch.allclose(exported(inputs(batch)), model(inputs(batch)), atol=1e-5)

    @pytest.mark.slow
    def test_compile_fullgraph_forward_and_backward(self, mixer, block):
        torch._dynamo.reset()
        model = make(mixer, block)
        compiled = torch.compile(copy.deepcopy(model), fullgraph=True, backend="aot_eager")  # a break would raise
        x = inputs()
        model(x).logsumexp(1).sum().backward()
        compiled(x).logsumexp(1).sum().backward()
        grads = dict(model.named_parameters())
        for name, p in compiled.named_parameters():
            assert torch.allclose(p.grad, grads[name.removeprefix("_orig_mod.")].grad, atol=1e-5), name

    def test_grad_checkpointing_recomputes_blocks_with_the_same_gradients(self, mixer, block):
        plain = make(mixer, block, drop_path_rate=0.2).train()
        checkpointed = copy.deepcopy(plain)
        checkpointed.set_grad_checkpointing()
        runs = {}
        for name, model in (("plain", plain), ("checkpointed", checkpointed)):
            counters = [CountRuns(blk) for blk in model.blocks]
            torch.manual_seed(0)  # the same drop-path draws; checkpointing replays them in the recomputation
            model(inputs()).logsumexp(1).sum().backward()
            runs[name] = sum(c.runs for c in counters)
        assert runs == {"plain": 4, "checkpointed": 8}  # every block runs again in backward
        reference = dict(plain.named_parameters())
        for name, p in checkpointed.named_parameters():
            assert torch.allclose(p.grad, reference[name].grad, atol=1e-6), name

    def test_layer_decay_groups_run_from_stem_to_head(self, mixer, block):
        model = make(mixer, block)
        groups = param_groups_layer_decay(model, weight_decay=0.05, no_weight_decay_list=model.no_weight_decay(),
                                          layer_decay=0.5)
        scale = {id(p): g["lr_scale"] for g in groups for p in g["params"]}
        assert sum(len(g["params"]) for g in groups) == len(scale) == len(list(model.parameters()))
        for name, p in model.named_parameters():
            layer = 0 if name.startswith("stem.") else 1 + int(name.split(".")[1]) if name.startswith("blocks.") else 5
            assert scale[id(p)] == 0.5 ** (5 - layer), name  # stem, blocks 0-3, then the head norm and classifier

    def test_weight_decay_spares_biases_norms_position_embeddings_filters_and_layer_scales(self, mixer, block):
        block_kwargs = {"layer_scale_init": 1e-5} if block == "metaformer" else None
        model = make(mixer, block, block_kwargs=block_kwargs)
        spared = model.no_weight_decay()
        params = dict(model.named_parameters())
        assert {n for n, p in params.items() if p.ndim == 1} <= spared  # biases and norm weights
        special = {n for n in params if n.endswith((".token_mixer.mixer.pos", ".token_mixer.filter", ".gamma"))}
        assert special == {n for n in spared if params[n].ndim > 1}  # and no conv or linear weight
        assert bool(special) == (mixer in ("attention", "fourier") or block == "metaformer")
        for recipe in (RecipeConfig(optimizer="adamw", weight_decay=0.05), RecipeConfig(optimizer="sgd")):
            optimizer = build_optimizer(model, recipe)
            decay = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
            assert {n for n, p in params.items() if decay[id(p)] == 0.0} == spared
            assert {decay[id(p)] for n, p in params.items() if n not in spared} == {recipe.weight_decay}
