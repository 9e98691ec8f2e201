"""Seconds a fresh interpreter takes to import torch, timm, and what the commands that do not train import.

Each figure is the median over `--repeat` fresh interpreters (`python -c "import X"`, the interpreter's own start
included), run one after another in one call, so that they can be compared with each other.

    python benchmarks/import_time.py [--repeat 5]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

MODULES = {  # what is imported -> why it is timed
    "torch": "the training code's base",
    "timm": "imports torch too",
    "runner.cli": "run-study --dry-run / --status (torch-free)",
    "analysis.cli": "study-report (torch-free)",
}


def seconds(module: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", f"import {module}"], check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    seconds("torch")  # warm the page cache: the first import after a boot reads the libraries from disk
    print(f"| import | what | median s ({args.repeat} fresh interpreters) | fastest s |\n|---|---|---:|---:|")
    for module, what in MODULES.items():
        times = [seconds(module) for _ in range(args.repeat)]
        print(f"| `{module}` | {what} | {statistics.median(times):.2f} | {min(times):.2f} |", flush=True)


if __name__ == "__main__":
    main()
