"""Parameters and FLOPs of a model at a given input size, and a table of them for every mixer and block.

FLOPs are counted by `torch.utils.flop_counter` (convolutions, matmuls, attention), plus the real FFTs of the
`fourier` mixer at 2.5 N log2 N; element-wise work (norms, pooling, activations) is not counted, as in timm's
and fvcore's figures. One multiply-add is 2 FLOPs, so GMACs (the paper's unit) are GFLOPs / 2.

    python -m mixers.summary --dim 256 --depth 8 --patch-size 2 --kernel-size 5 --img-size 32
"""
from __future__ import annotations

import argparse
import math
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .base import MIXERS
from .blocks import BLOCKS
from .model import MixerNet


def _fft_flops(input_shape: Any, dim: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    """2.5 N log2(n) for a real FFT of N points over transform sizes n (the classic split-radix estimate)."""
    shape = input_shape if math.prod(input_shape) >= math.prod(out_shape) else out_shape
    n = math.prod(shape[d] for d in dim)
    return int(2.5 * math.prod(shape) * math.log2(max(n, 2)))


_CUSTOM_FLOPS = {torch.ops.aten._fft_r2c: _fft_flops, torch.ops.aten._fft_c2r: _fft_flops}


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_flops(model: nn.Module, input_size: tuple[int, int, int]) -> int:
    """Forward FLOPs for one image of shape (C, H, W), in eval mode."""
    was_training = model.training
    model.eval()
    param = next(model.parameters())
    x = torch.zeros(1, *input_size, device=param.device, dtype=param.dtype)
    counter = FlopCounterMode(display=False, custom_mapping=_CUSTOM_FLOPS)
    with counter:
        model(x)
    model.train(was_training)
    return counter.get_total_flops()


def summarize(model: nn.Module, input_size: tuple[int, int, int]) -> dict[str, int]:
    return {"params": count_params(model), "flops": count_flops(model, input_size)}


def mixer_table(**model_kwargs: Any) -> list[dict[str, Any]]:
    """One row per (mixer, block): params and FLOPs of MixerNet(**model_kwargs) at its own image size."""
    rows = []
    for block in BLOCKS:
        for mixer in MIXERS:
            torch.manual_seed(0)
            model = MixerNet(mixer=mixer, block=block, **model_kwargs)
            size = (model.in_chans, *model.img_size)
            rows.append({"mixer": mixer, "block": block, **summarize(model, size)})
    return rows


def format_markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| block | mixer | params (M) | GFLOPs |", "|---|---|---:|---:|"]
    lines += [f"| {r['block']} | {r['mixer']} | {r['params'] / 1e6:.3f} | {r['flops'] / 1e9:.3f} |" for r in rows]
    return "\n".join(lines)


# the command-line model of mixer-summary and mixer-bench: ConvMixer-256/8 on CIFAR-shaped inputs
MODEL_ARGUMENTS = {"dim": 256, "depth": 8, "patch_size": 2, "kernel_size": 5, "img_size": 32, "in_chans": 3,
                   "num_classes": 10}


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    for name, default in MODEL_ARGUMENTS.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=default)


def model_arguments(args: argparse.Namespace) -> dict[str, int]:
    return {name: getattr(args, name) for name in MODEL_ARGUMENTS}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_arguments(parser)
    args = parser.parse_args(argv)
    rows = mixer_table(**model_arguments(args))
    print(f"MixerNet h={args.dim}, d={args.depth}, p={args.patch_size}, k={args.kernel_size}, "
          f"{args.in_chans}x{args.img_size}x{args.img_size} input, {args.num_classes} classes")
    print(format_markdown(rows))


if __name__ == "__main__":
    main()
