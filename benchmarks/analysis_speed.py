"""How long `python -m analysis <study> --no-figures` takes on 1,000 result records, as a user runs it.

Writes a finished study of 5 mixers x 4 patch sizes x 5 kernel sizes x 10 seeds = 1,000 runs, in the exact
result layout, into a temporary folder; then times the whole command in a fresh interpreter (imports included),
several times, and prints the median and the fastest.

    python benchmarks/analysis_speed.py [--repeat 5] [--figures]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the result writer lives with the tests, which are not an installed package

from tests.analysis_fixtures import write_study  # noqa: E402

MIXERS = ("dwconv", "pool", "attention", "mlp", "identity")
PATCH_SIZES = (1, 2, 4, 8)
KERNEL_SIZES = (3, 5, 7, 9, 11)
SEEDS = tuple(range(10))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=25, help="lines per metrics.jsonl")
    parser.add_argument("--figures", action="store_true", help="time the full build, figures included")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        study = write_study(Path(tmp), "speed", mixers=MIXERS, patch_sizes=PATCH_SIZES, kernel_sizes=KERNEL_SIZES,
                            seeds=SEEDS, epochs=args.epochs)
        records = len(list((study / "runs").iterdir()))
        print(f"wrote {records} run folders in {time.perf_counter() - start:.1f} s")
        command = [sys.executable, "-m", "analysis", str(study), "--quiet", *([] if args.figures else ["--no-figures"])]
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            subprocess.run(command, check=True, cwd=ROOT)
            times.append(time.perf_counter() - start)
        print(f"{' '.join(['python', *command[1:3], '<study>', *command[4:]])}: {records} records, "
              f"median {statistics.median(times):.2f} s, fastest {min(times):.2f} s over {args.repeat} runs")


if __name__ == "__main__":
    main()
