"""FLOP counts (mixers.summary) against an independent hand count, the same wherever the model lives, and the README's
table as the code prints it.

The hand count is a formula per layer in multiply-adds x 2, written from the architecture, not from the counter: the
stem's patchify conv, each mixer, each block's pointwise convs or MLP, and the head. Element-wise work (norms,
activations, pooling, softmax, the fourier filter's product) is not counted, and a real FFT of N points over n
transform points costs floor(2.5 N log2 n), the convention mixers/summary.py documents.
"""
from __future__ import annotations

import math
import re
import shlex
from pathlib import Path
from typing import Callable

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from mixers import BLOCKS, MIXERS, MixerNet
from mixers.summary import FLOP_RULES, MODEL_ARGUMENTS, count_flops, format_markdown, main, mixer_table

README = Path(__file__).resolve().parents[1] / "README.md"

# mixer -> FLOPs of one mixer on one image: c channels, n = h * w tokens, kernel k
MIXER_FLOPS: dict[str, Callable[[int, int, int], int]] = {
    "dwconv": lambda c, n, k: 2 * c * n * k * k,  # one k x k filter per channel
    "attention": lambda c, n, k: (2 * n * c * 3 * c  # qkv projection
                                  + 2 * n * n * c  # Q K^T over all heads
                                  + 2 * n * n * c  # attention weights times V
                                  + 2 * n * c * c),  # output projection
    "mlp": lambda c, n, k: 2 * (2 * c * n * (n // 2)),  # N -> N/2 -> N per channel (hidden_ratio 0.5, n even here)
    "identity": lambda c, n, k: 0,
    "pool": lambda c, n, k: 0,  # averaging is element-wise work
    "random": lambda c, n, k: 2 * n * n * c,  # a fixed N x N matrix times the tokens of each channel
    "fourier": lambda c, n, k: 2 * math.floor(2.5 * c * n * math.log2(n)),  # rfft2, then irfft2 of C x N points
}

# block -> FLOPs of one block's channel part: c channels, n tokens
BLOCK_FLOPS: dict[str, Callable[[int, int], int]] = {
    "convmixer": lambda c, n: 2 * n * c * c,  # pointwise conv
    "metaformer": lambda c, n: 2 * (2 * n * c * 4 * c),  # MLP c -> 4c -> c (mlp_ratio 4)
}

# (dim, depth, patch, kernel, image height, width, in channels, classes); the first is the README's model
SIZES = [
    (256, 8, 2, 5, 32, 32, 3, 10),
    (64, 2, 4, 3, 32, 32, 3, 100),
    (32, 3, 1, 7, 12, 8, 1, 4),
]


def hand_count(mixer: str, block: str, dim: int, depth: int, p: int, k: int, h: int, w: int, chans: int,
               classes: int) -> int:
    n = (h // p) * (w // p)
    stem = 2 * chans * p * p * dim * n  # patchify conv, stride p
    head = 2 * dim * classes
    return stem + depth * (MIXER_FLOPS[mixer](dim, n, k) + BLOCK_FLOPS[block](dim, n)) + head


def input_size(size: tuple[int, ...]) -> tuple[int, int, int]:
    dim, depth, p, k, h, w, chans, classes = size
    return chans, h, w


def build(mixer: str, block: str, dim: int, depth: int, p: int, k: int, h: int, w: int, chans: int,
          classes: int) -> MixerNet:
    torch.manual_seed(0)
    return MixerNet(mixer=mixer, block=block, dim=dim, depth=depth, patch_size=p, kernel_size=k, img_size=(h, w),
                    in_chans=chans, num_classes=classes)


def test_every_mixer_and_block_has_a_hand_count() -> None:
    assert sorted(MIXER_FLOPS) == MIXERS.names() and sorted(BLOCK_FLOPS) == BLOCKS.names()


@pytest.mark.parametrize("size", SIZES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("block", BLOCKS.names())
@pytest.mark.parametrize("mixer", MIXERS.names())
def test_flops_equal_the_hand_count(mixer: str, block: str, size: tuple[int, ...]) -> None:
    assert count_flops(build(mixer, block, *size), input_size(size)) == hand_count(mixer, block, *size)


@pytest.mark.parametrize("block", BLOCKS.names())
@pytest.mark.parametrize("mixer", MIXERS.names())
def test_a_real_forward_on_the_cpu_counts_the_same(mixer: str, block: str) -> None:
    """The counter's rules cover every kernel a CPU forward runs (its fused attention kernel included), and the
    model is left as it was: on its device, in its mode, with its weights."""
    size = SIZES[1]
    model = build(mixer, block, *size).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    counted = count_flops(model, input_size(size))
    counter = FlopCounterMode(display=False, custom_mapping=FLOP_RULES)
    model.eval()
    with counter, torch.no_grad():
        model(torch.randn(1, *input_size(size)))
    assert counter.get_total_flops() == counted == hand_count(mixer, block, *size)
    model.train()
    after = model.state_dict()
    assert all(v.device.type == "cpu" and torch.equal(v, after[k]) for k, v in before.items())


def test_a_model_built_on_the_meta_device_counts_the_same() -> None:
    size = SIZES[2]
    for mixer in MIXERS:
        with torch.device("meta"):
            meta = build(mixer, "metaformer", *size)
        assert count_flops(meta, input_size(size)) == hand_count(mixer, "metaformer", *size)


def test_counting_keeps_the_training_mode() -> None:
    model = build("attention", "convmixer", *SIZES[2])
    count_flops(model.train(), input_size(SIZES[2]))
    assert model.training
    count_flops(model.eval(), input_size(SIZES[2]))
    assert not model.training


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("mixer", MIXERS.names())
def test_a_model_on_cuda_counts_the_same(mixer: str) -> None:
    size = SIZES[0]
    model = build(mixer, "metaformer", *size).cuda()
    counter = FlopCounterMode(display=False, custom_mapping=FLOP_RULES)
    with counter, torch.no_grad():
        model.eval()(torch.randn(1, 3, 32, 32, device="cuda"))
    assert counter.get_total_flops() == count_flops(model, (3, 32, 32)) == hand_count(mixer, "metaformer", *size)


def readme_table() -> tuple[str, str]:
    """The README's FLOP table, and the mixer-summary command named in the paragraph above it."""
    text = README.read_text()
    lines = text.splitlines()
    start = lines.index("| block | mixer | params (M) | GFLOPs |")
    end = next(i for i in range(start, len(lines)) if not lines[i].startswith("|"))
    above = text[:text.index(lines[start])].rsplit("\n\n", 2)[-2]
    command = re.search(r"`(mixer-summary [^`]*)`", above)
    assert command, "the paragraph above the FLOP table names no mixer-summary command"
    return "\n".join(lines[start:end]), command.group(1)


def test_readme_flop_table_is_what_mixer_summary_prints(capsys: pytest.CaptureFixture[str]) -> None:
    table, command = readme_table()
    main(shlex.split(command)[1:])
    assert capsys.readouterr().out.strip() == table
    assert table == format_markdown(mixer_table(**MODEL_ARGUMENTS))  # the command is the default model

