"""Throughput measured like timm's benchmark.py: a fixed batch already on the device, warm-up steps, then timed
steps closed by a device synchronisation; inference under `inference_mode`, training with SGD on random targets.

Each measurement records its conditions (mode, layout, precision, compiled, batch, resolution, device). A model is
measured under every memory layout and, where available, bf16, then compiled in its best eager setting, and the best
is reported, so a mixer is never called slow because of a layout it did not have to use (a k=9 depthwise convolution
runs up to 8x slower in channels_last bf16 on an H100/H200).

    mixer-bench                     # every mixer at h=256, d=8, p=2, k=5 on 32x32 inputs, on this machine
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import sys
import time
from dataclasses import asdict, dataclass, replace
from typing import Any, Iterator, Literal

import torch
import torch.nn.functional as F
from torch import nn

Mode = Literal["infer", "train"]
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Setting:
    layout: Literal["contiguous", "channels_last"] = "contiguous"
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    compiled: bool = False


@dataclass
class Measurement:
    mode: Mode
    layout: str
    precision: str
    compiled: bool
    batch_size: int
    img_size: int
    img_s: float | None      # images per second, None if the setting failed
    step_ms: float | None
    device: str
    error: str | None = None
    compile_s: float | None = None  # warm-up time beyond an eager warm-up (compilation), when compiled


def memory_format(layout: str) -> torch.memory_format:
    return torch.channels_last if layout == "channels_last" else torch.contiguous_format


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def bf16_supported(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.is_bf16_supported()


def candidate_settings(device: torch.device, precision: str = "auto", layout: str = "auto") -> list[Setting]:
    """The eager settings worth measuring on `device`, given fixed or "auto" choices: both layouts, and bf16 as well
    as fp32 on a GPU that supports it (on a CPU, bf16 autocast rarely pays off)."""
    layouts = ["contiguous", "channels_last"] if layout == "auto" else [layout]
    precisions = (["fp32", "bf16"] if bf16_supported(device) else ["fp32"]) if precision == "auto" else [precision]
    return [Setting(layout, precision) for layout in layouts for precision in precisions]  # type: ignore[arg-type]


def tries_compile(device: torch.device, compile: bool | str) -> bool:
    """Whether compiled execution is measured: when asked for, and by default ("auto") on GPUs only."""
    return compile is True or (compile == "auto" and device.type == "cuda")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def _isolated_rng(device: torch.device) -> Iterator[None]:
    """Benchmarks draw random inputs; they must not move the training run's random streams."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        yield


def measure(model: nn.Module, mode: Mode, setting: Setting, batch_size: int, input_size: tuple[int, int, int],
            device: torch.device, warmup: int, iters: int, num_classes: int, budget_s: float = 5.0) -> Measurement:
    """One timed measurement on a copy of `model` (the model itself is left untouched): up to `warmup` warm-up steps,
    then up to `iters` timed steps closed by a device synchronisation, fewer where steps are slow (`budget_s`)."""
    fmt = memory_format(setting.layout)
    record: dict[str, Any] = dict(mode=mode, layout=setting.layout, precision=setting.precision,
                                  compiled=setting.compiled, batch_size=batch_size, img_size=input_size[-1],
                                  device=str(device))
    with _isolated_rng(device):
        try:
            net = copy.deepcopy(model).to(device).to(memory_format=fmt)
            net.train(mode == "train")
            run = torch.compile(net) if setting.compiled else net
            x = torch.randn(batch_size, *input_size, device=device).contiguous(memory_format=fmt)
            y = torch.randint(0, max(num_classes, 1), (batch_size,), device=device)
            opt = torch.optim.SGD(net.parameters(), lr=1e-4) if mode == "train" else None
            scaler = torch.amp.GradScaler(device.type, enabled=setting.precision == "fp16" and mode == "train")

            def step() -> None:
                if opt is None:
                    with torch.inference_mode(), autocast(device, setting.precision):
                        run(x)
                    return
                with autocast(device, setting.precision):
                    loss = F.cross_entropy(run(x).float(), y) if num_classes else run(x).float().mean()
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()

            # warm-up (compilation and cuDNN autotuning fall here), cut short once it has used half the budget
            t0 = time.perf_counter()
            done = 0
            while done < warmup and (done < 2 or time.perf_counter() - t0 < budget_s / 2):
                step()
                synchronize(device)
                done += 1
            warm_s = time.perf_counter() - t0
            # one timed step sizes the timed run: a slow setting (an 8x slower layout) gets fewer steps
            t0 = time.perf_counter()
            step()
            synchronize(device)
            first = time.perf_counter() - t0
            n = max(2, min(iters, int(budget_s / max(first, 1e-9))))
            t0 = time.perf_counter()
            for _ in range(n):
                step()
            synchronize(device)
            elapsed = time.perf_counter() - t0
        except torch.OutOfMemoryError as e:
            return Measurement(**record, img_s=None, step_ms=None, error=f"out of memory: {str(e).splitlines()[0]}")
        except Exception as e:  # a setting that cannot run here (e.g. no compiler for inductor) is recorded, not fatal
            return Measurement(**record, img_s=None, step_ms=None, error=f"{type(e).__name__}: {e}")
        finally:
            if device.type == "cuda":
                torch.cuda.empty_cache()
    step_s = elapsed / n
    compile_s = max(0.0, warm_s - done * step_s) if setting.compiled else None
    return Measurement(**record, img_s=batch_size / step_s, step_ms=1000 * step_s, compile_s=compile_s)


def measure_with_retry(model: nn.Module, mode: Mode, setting: Setting, batch_size: int, **kwargs: Any) -> Measurement:
    """Like timm's benchmark: on out-of-memory, halve the batch and try again (down to 1)."""
    while True:
        m = measure(model, mode, setting, batch_size, **kwargs)
        if m.error is None or not m.error.startswith("out of memory") or batch_size == 1:
            return m
        batch_size //= 2


def best(measurements: list[Measurement], mode: Mode) -> Measurement | None:
    ok = [m for m in measurements if m.mode == mode and m.img_s is not None]
    return max(ok, key=lambda m: m.img_s or 0.0) if ok else None


def search(model: nn.Module, mode: Mode, device: torch.device, settings: list[Setting], compile: bool | str,
           batch_size: int, input_size: tuple[int, int, int], warmup: int, iters: int, num_classes: int,
           budget_s: float = 5.0) -> list[Measurement]:
    """Every eager setting, then (where compilation is tried) the compiled version of the fastest one only:
    compiling takes tens of seconds per setting, and only the best eager setting can become the best compiled one."""
    kwargs = dict(input_size=input_size, device=device, warmup=warmup, iters=iters, num_classes=num_classes,
                  budget_s=budget_s)
    measurements = [measure_with_retry(model, mode, s, batch_size, **kwargs) for s in settings]
    if tries_compile(device, compile):
        top = best(measurements, mode)
        base = Setting(top.layout, top.precision) if top else settings[0]  # type: ignore[arg-type]
        measurements.append(measure_with_retry(model, mode, replace(base, compiled=True), batch_size, **kwargs))
    return measurements


def benchmark(model: nn.Module, input_size: tuple[int, int, int], device: torch.device, settings: list[Setting],
              batch_size: int, warmup: int, iters: int, num_classes: int, compile: bool | str = "auto",
              modes: tuple[Mode, ...] = ("infer", "train"), budget_s: float = 5.0) -> dict[str, Any]:
    """Every mode under every setting; the result as recorded in result.json's `throughput`."""
    measurements = [m for mode in modes for m in search(model, mode, device, settings, compile, batch_size,
                                                        input_size, warmup, iters, num_classes, budget_s)]
    out: dict[str, Any] = {"measurements": [asdict(m) for m in measurements]}
    for mode in modes:
        top = best(measurements, mode)
        out[f"{mode}_img_s"] = top.img_s if top else None
        out[f"{mode}_setting"] = ({k: getattr(top, k) for k in ("layout", "precision", "compiled", "batch_size")}
                                  if top else None)
    return out


def bench_defaults(device: torch.device) -> dict[str, int]:
    """timm's defaults on a GPU; on a CPU small enough that a per-run benchmark takes seconds."""
    if device.type == "cuda":
        return dict(batch_size=256, warmup=10, iters=40)
    return dict(batch_size=32, warmup=2, iters=5)


def main(argv: list[str] | None = None) -> int:
    from .errors import run_main
    return run_main("mixer-bench", _main, argv)


def _main(argv: list[str]) -> int:
    from mixers import MIXERS, MixerNet
    from mixers.summary import add_model_arguments, checked_model, model_arguments, positive_int

    from .errors import add_debug_argument
    from .schema import ConfigError
    parser = argparse.ArgumentParser(prog="mixer-bench",
                                     description="Inference and training throughput of every mixer (or some).")
    parser.add_argument("--mixers", nargs="+", default=None, help="default: every registered mixer")
    parser.add_argument("--block", default="convmixer")
    add_model_arguments(parser)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=positive_int, default=None, help="default: 256 on a GPU, 8 on a CPU")
    parser.add_argument("--warmup", type=positive_int, default=None, help="default: 10 on a GPU, 2 on a CPU")
    parser.add_argument("--iters", type=positive_int, default=None, help="default: 40 on a GPU, 5 on a CPU")
    parser.add_argument("--budget-s", type=float, default=1.0,
                        help="seconds per measurement at most (fewer steps when steps are slow; default 1)")
    parser.add_argument("--precision", default="auto", choices=["auto", *PRECISIONS])
    parser.add_argument("--layout", default="auto", choices=["auto", "contiguous", "channels_last"])
    parser.add_argument("--compile", default="auto", choices=["auto", "yes", "no"])
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    if not args.budget_s > 0:
        raise ConfigError(f"--budget-s: must be > 0, got {args.budget_s}")
    names = args.mixers or MIXERS.names()
    for name in names:
        if name not in MIXERS:
            raise ConfigError(f"--mixers: {MIXERS.unknown_message(name)}")

    from .environment import environment, resolve_device
    try:
        device = resolve_device(args.device)
    except RuntimeError as e:
        raise ConfigError(f"--device: {e}; valid here: auto, cpu") from None
    defaults = bench_defaults(device)
    # a CPU's default batch here is 8, not a run's 32, so that every mixer is measured within a minute on 2 cores
    batch = args.batch_size or (defaults["batch_size"] if device.type == "cuda" else 8)
    warmup, iters = args.warmup or defaults["warmup"], args.iters or defaults["iters"]
    compile_choices: dict[str, bool | str] = {"auto": "auto", "yes": True, "no": False}
    compile_choice = compile_choices[args.compile]
    settings = candidate_settings(device, args.precision, args.layout)
    torch.manual_seed(0)
    build = lambda name: lambda: MixerNet(mixer=name, block=args.block, **model_arguments(args))
    models = {name: checked_model(build(name), args) for name in names}  # all checked before the first measurement
    env = environment(device)
    print(f"{env['device_name']} ({env['device']}, torch {env['torch']}, {env['threads']} threads); "
          f"h={args.dim} d={args.depth} p={args.patch_size} k={args.kernel_size} block={args.block}, "
          f"{args.img_size}x{args.img_size}, batch {batch}, {warmup} warm-up + {iters} timed steps, at most "
          f"{args.budget_s:g} s per setting", flush=True)
    print("| mixer | infer img/s | infer setting | train img/s | train setting | all settings (infer / train img/s) |")
    print("|---|---:|---|---:|---|---|")
    for i, (name, model) in enumerate(models.items()):
        print(f"mixer-bench: [{i + 1}/{len(models)}] {name}: {2 * len(settings)} settings ...", file=sys.stderr,
              flush=True)
        result = benchmark(model, (args.in_chans, args.img_size, args.img_size), device, settings, batch, warmup,
                           iters, args.num_classes, compile_choice, budget_s=args.budget_s)
        by_setting: dict[str, list[str]] = {}
        for m in result["measurements"]:
            by_setting.setdefault(_label(m), []).append(f"{m['img_s']:.0f}" if m["img_s"] else "failed")
        all_settings = "; ".join(f"{k}: {' / '.join(v)}" for k, v in by_setting.items())
        print(f"| {name} | {_fmt(result['infer_img_s'])} | {_label(result['infer_setting'])} | "
              f"{_fmt(result['train_img_s'])} | {_label(result['train_setting'])} | {all_settings} |", flush=True)
    return 0


def _fmt(value: float | None) -> str:
    return f"{value:,.0f}" if value else "failed"


def _label(setting: dict[str, Any] | None) -> str:
    if not setting:
        return "-"
    return f"{setting['layout']}/{setting['precision']}{'/compiled' if setting['compiled'] else ''}"


if __name__ == "__main__":
    sys.exit(main())
