"""Memory of one training step with and without `set_grad_checkpointing()`, for every mixer in every block.

Two figures per setting. Saved activations: the bytes of the tensors autograd keeps from forward for backward
(parameters not counted), totalled in this process by a saved-tensors hook. Peak: the most memory the step (forward
and backward) needs on top of the model and the batch, measured in a fresh process per figure: on a CPU the peak
resident set size above the resident size before the step (Linux's VmHWM, reset through /proc/self/clear_refs), with
glibc's mmap threshold fixed so that freed tensors go back to the system and the resident size follows live memory;
on a GPU, `torch.cuda.max_memory_allocated` above the memory allocated before the step.

Checkpointing keeps only each block's input and recomputes the block in backward, so the step's peak must drop: the
script exits 1 if it does not cut the peak by `--target` or more for every row.

    python benchmarks/grad_checkpoint_memory.py [--device cuda] [--batch-size 64] [--target 2.0]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

MODEL = dict(dim=256, depth=8, patch_size=2, kernel_size=5, img_size=32, num_classes=10)  # ConvMixer-256/8, CIFAR


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


def peak_bytes(mixer: str, block: str, checkpointing: bool, batch_size: int, device: str) -> int:
    """Bytes one training step needs above what the model and the batch hold (run it in a fresh process)."""
    import torch

    model, x, y = build(mixer, block, checkpointing, batch_size, device)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        Path("/proc/self/clear_refs").write_text("5")  # the peak RSS (VmHWM) starts again from the current RSS
        before = _status_kib("VmRSS") * 1024
    torch.nn.functional.cross_entropy(model(x), y).backward()
    if device == "cuda":
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    return _status_kib("VmHWM") * 1024 - before


def saved_activation_bytes(mixer: str, block: str, checkpointing: bool, batch_size: int) -> int:
    """Bytes of the tensors (parameters aside) that autograd saves in forward for backward, each storage once."""
    import torch

    model, x, y = build(mixer, block, checkpointing, batch_size, "cpu")
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    return sum(saved.values())


def build(mixer: str, block: str, checkpointing: bool, batch_size: int, device: str) -> tuple:
    import torch

    from mixers import MixerNet
    torch.manual_seed(0)
    model = MixerNet(mixer=mixer, block=block, **MODEL).to(device).train()
    model.set_grad_checkpointing(checkpointing)
    x = torch.randn(batch_size, 3, 32, 32, device=device)
    return model, x, torch.randint(0, 10, (batch_size,), device=device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--target", type=float, default=2.0, help="least peak-memory ratio, plain / checkpointed")
    parser.add_argument("--child", nargs=3, metavar=("MIXER", "BLOCK", "CHECKPOINTING"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mixer, block, checkpointing = args.child
        print(json.dumps(peak_bytes(mixer, block, checkpointing == "1", args.batch_size, args.device)))
        return

    from mixers import BLOCKS, MIXERS

    def peak_in_a_fresh_process(mixer: str, block: str, checkpointing: bool) -> int:
        cmd = [sys.executable, __file__, "--device", args.device, "--batch-size", str(args.batch_size),
               "--child", mixer, block, str(int(checkpointing))]
        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}  # fixed: large frees return to the system
        return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout)

    print(f"one training step of MixerNet h={MODEL['dim']}, d={MODEL['depth']}, p={MODEL['patch_size']}, "
          f"k={MODEL['kernel_size']}, batch {args.batch_size} x 3x32x32; saved activations (CPU) and peak memory "
          f"above the model and batch ({args.device}, a fresh process per figure), MiB")
    print("| block | mixer | saved, plain | saved, checkpointed | peak, plain | peak, checkpointed | peak ratio |\n"
          "|---|---|---:|---:|---:|---:|---:|")
    missed = []
    for block in BLOCKS:
        for mixer in MIXERS:
            saved = [saved_activation_bytes(mixer, block, c, args.batch_size) / 2**20 for c in (False, True)]
            peak = [peak_in_a_fresh_process(mixer, block, c) / 2**20 for c in (False, True)]
            ratio = peak[0] / max(peak[1], 1e-9)
            print(f"| {block} | {mixer} | {saved[0]:,.0f} | {saved[1]:,.0f} | {peak[0]:,.0f} | {peak[1]:,.0f} | "
                  f"{ratio:.1f}x |", flush=True)
            if ratio < args.target:
                missed.append(f"{block}/{mixer} ({ratio:.1f}x)")
    if missed:
        print(f"target missed: checkpointing cut the peak by less than {args.target}x for {', '.join(missed)}")
        sys.exit(1)
    print(f"target met: checkpointing cuts the peak of every step by {args.target}x or more")


if __name__ == "__main__":
    main()
