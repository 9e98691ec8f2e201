"""The README's quickstart figures from one fresh run of the main job: its wall time and its test top-1 table.

Runs `run-study studies/quickstart.yaml` into an empty results folder (its output passed through), then prints the
wall time and the report's test top-1 table (mean ± std over seeds, with n, to the resolution of the test set). Record
it as evidence for the README's quickstart row with:

    python benchmarks/record.py quickstart -- python benchmarks/quickstart_figures.py
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "runner", str(ROOT / "studies" / "quickstart.yaml"),
                               "--results", tmp], cwd=ROOT)
        minutes, seconds = divmod(round(time.perf_counter() - start), 60)
        if done.returncode != 0:
            print(f"quickstart: run-study exited {done.returncode}", file=sys.stderr)
            return done.returncode
        print(f"quickstart: run-study took {minutes} min {seconds} s")
        print((Path(tmp) / "quickstart" / "tables" / "test_top1.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
