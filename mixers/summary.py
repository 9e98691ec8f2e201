"""Parameters and FLOPs of a model at a given input size, and a table of them for every mixer and block.

FLOPs are counted by `torch.utils.flop_counter` (convolutions, matmuls, attention's QK^T and AV products), plus the
real FFTs of the `fourier` mixer at 2.5 N log2 N; element-wise work (norms, pooling, activations, softmax, the
fourier filter's product) is not counted, as in timm's and fvcore's figures. One multiply-add is 2 FLOPs, so GMACs
(the paper's unit) are GFLOPs / 2.

The forward pass is counted on the meta device with the model's parameters and buffers swapped for meta tensors,
so the figure depends on the model alone, not on the device it lives on or the attention kernel that device would
pick, and counting a large model costs neither memory nor time. `FLOP_RULES` also registers the kernels the
counter does not know (the CPU's fused attention, the FFTs), so a count of a real forward on any device agrees.

    mixer-summary --dim 256 --depth 8 --patch-size 2 --kernel-size 5 --img-size 32   # the README's table
"""
from __future__ import annotations

import argparse
import itertools
import math
from typing import Any, Callable, TypeVar

import torch
from torch import nn
from torch.func import functional_call
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from .base import MIXERS
from .blocks import BLOCKS
from .model import MixerNet


def _fft_flops(input_shape: Any, dim: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    """2.5 N log2(n) for a real FFT of N points over transform sizes n (the classic split-radix estimate)."""
    shape = input_shape if math.prod(input_shape) >= math.prod(out_shape) else out_shape
    n = math.prod(shape[d] for d in dim)
    return int(2.5 * math.prod(shape) * math.log2(max(n, 2)))


def _sdpa_flops(query_shape: Any, key_shape: Any, value_shape: Any, *args: Any, **kwargs: Any) -> int:
    """QK^T and AV: 4 N^2 C per image, the rule the counter applies to the CUDA attention kernels."""
    return sdpa_flop_count(query_shape, key_shape, value_shape)


# Kernels torch's counter has no rule for. Without the CPU attention kernel a CPU count leaves out 4 N^2 C per block.
FLOP_RULES: dict[Any, Callable[..., int]] = {
    torch.ops.aten._fft_r2c: _fft_flops,
    torch.ops.aten._fft_c2r: _fft_flops,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_flops,
}


T = TypeVar("T")


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_flops(model: nn.Module, input_size: tuple[int, int, int]) -> int:
    """Forward FLOPs for one image of shape (C, H, W), in eval mode, counted on the meta device."""
    meta = {name: torch.empty_like(t, device="meta")
            for name, t in itertools.chain(model.named_parameters(), model.named_buffers())}
    dtype = next(iter(meta.values())).dtype if meta else torch.float32
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False, custom_mapping=FLOP_RULES)
    try:
        with counter:
            functional_call(model, meta, (torch.zeros(1, *input_size, device="meta", dtype=dtype),))
    finally:
        model.train(was_training)
    return counter.get_total_flops()


def summarize(model: nn.Module, input_size: tuple[int, int, int]) -> dict[str, int]:
    return {"params": count_params(model), "flops": count_flops(model, input_size)}


def mixer_table(**model_kwargs: Any) -> list[dict[str, Any]]:
    """One row per (mixer, block): params and FLOPs of MixerNet(**model_kwargs) at its own image size."""
    rows = []
    for block in BLOCKS:
        for mixer in MIXERS:
            with torch.device("meta"):  # sizes only: no weights to allocate or initialise
                model = MixerNet(mixer=mixer, block=block, **model_kwargs)
            size = (model.in_chans, *model.img_size)
            rows.append({"mixer": mixer, "block": block, **summarize(model, size)})
    return rows


def significant(value: float, digits: int = 3) -> str:
    """`value` to `digits` significant figures in plain notation (0.0213, 0.594, 3.17, 42.2, 1,234)."""
    if value == 0:
        return "0"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(value))))
    return f"{value:,.{decimals}f}"


def format_markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| block | mixer | params (M) | GFLOPs |", "|---|---|---:|---:|"]
    lines += [f"| {r['block']} | {r['mixer']} | {significant(r['params'] / 1e6)} | {significant(r['flops'] / 1e9)} |"
              for r in rows]
    return "\n".join(lines)


# the command-line model of mixer-summary and mixer-bench: ConvMixer-256/8 on CIFAR-shaped inputs
MODEL_ARGUMENTS = {"dim": 256, "depth": 8, "patch_size": 2, "kernel_size": 5, "img_size": 32, "in_chans": 3,
                   "num_classes": 10}


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    for name, default in MODEL_ARGUMENTS.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=positive_int, default=default)


def model_arguments(args: argparse.Namespace) -> dict[str, int]:
    return {name: getattr(args, name) for name in MODEL_ARGUMENTS}


def checked_model(build: Callable[[], T], args: argparse.Namespace) -> T:
    """`build()`, with a model the arguments do not allow (a patch larger than the image ...) a ConfigError."""
    from harness.schema import ConfigError
    try:
        return build()
    except ValueError as e:
        given = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in model_arguments(args).items())
        raise ConfigError(f"{given}: {e}") from None


def main(argv: list[str] | None = None) -> int:
    from harness.errors import run_main  # the exit codes and messages every command shares
    return run_main("mixer-summary", _main, argv)


def _main(argv: list[str]) -> int:
    from harness.errors import add_debug_argument
    parser = argparse.ArgumentParser(prog="mixer-summary", description=__doc__.split("\n\n")[0])
    add_model_arguments(parser)
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    rows = checked_model(lambda: mixer_table(**model_arguments(args)), args)
    print(format_markdown(rows))  # the README's table, as it stands there
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
