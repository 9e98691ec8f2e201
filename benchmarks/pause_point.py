"""The per-step cost of sharing a device: `DeviceShare.pause_point()` when no measurer waits (the common case: two
flock syscalls on a machine-local file), against a cell alone (NO_SHARING's step callback is the trainer's own).

    python benchmarks/pause_point.py [--calls 200000] [--repeat 5]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from harness.share import NO_SHARING, DeviceShare


def per_call_us(step: object, calls: int) -> float:
    assert callable(step)
    t0 = time.perf_counter()
    for _ in range(calls):
        step()
    return (time.perf_counter() - t0) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    never = lambda: False  # noqa: E731
    with tempfile.TemporaryDirectory() as folder:
        share = DeviceShare(2, Path(folder))
        with share.training(torch.device("cpu")):
            shared = [per_call_us(share.steps(never), args.calls) for _ in range(args.repeat)]
    alone = [per_call_us(NO_SHARING.steps(never), args.calls) for _ in range(args.repeat)]
    print(f"per training step, median of {args.repeat} x {args.calls:,} calls:")
    print(f"  sharing (pause_point, no measurer waiting): {statistics.median(shared):.2f} us "
          f"(min {min(shared):.2f}, max {max(shared):.2f})")
    print(f"  alone (NO_SHARING: the trainer's own stop callback): {statistics.median(alone):.3f} us")


if __name__ == "__main__":
    main()
