"""The study runner's own overhead on a 1,000-cell grid, each figure the whole command as a user runs it.

Writes a study of 5 mixers x 4 patch sizes x 5 depths x 10 seeds on digits, fills every cell's run files as a
finished study leaves them (config.json, state.json, metrics.jsonl, result.json), then times, in fresh interpreters:
`run-study --dry-run` (the first call checks the distinct models with torch and caches the verdict; later calls
reuse it), `run-study --status` and the aggregation `python -m analysis <study> --no-figures`.

    python benchmarks/runner_overhead.py [--repeat 5]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from harness.records import atomic_write_bytes, atomic_write_json, write_config
from harness.train import final_metrics
from runner.spec import expand, load_spec, resolved_study
from runner.state import run_dir

ROOT = Path(__file__).resolve().parents[1]
STUDY = {
    "name": "overhead",
    "base": {"model": {"block": "convmixer", "dim": 64, "depth": 4}, "data": {"dataset": "digits"},
             "recipe": "small"},
    "grid": {"model.mixer": ["dwconv", "pool", "attention", "mlp", "identity"], "model.patch_size": [1, 2, 4, 8],
             "model.depth": [1, 2, 3, 4, 5]},  # not the kernel size: kernel-free mixers would be listed once
    "seeds": list(range(10)),
}


def fill(study_file: Path) -> int:
    """Every cell's files as a finished study leaves them; the metrics are drawn, the layout is the real one."""
    import random
    spec = load_spec(study_file)
    cells = expand(spec)
    rng = random.Random(0)
    for cell in cells:
        run = run_dir(spec, cell)
        write_config(run, cell.config, {"study": spec.name, "cell": cell.params})
        history = [{"epoch": e, "train_loss": 2.0 / (e + 1), "train_top1": 50 + e, "val_loss": 2.1 / (e + 1),
                    "val_top1": 49 + e + rng.random(), "val_top5": 90.0, "test_loss": 2.0 / (e + 1),
                    "test_top1": 50 + e + rng.random(), "test_top5": 90.0, "lr": 1e-3, "epoch_s": 1.0,
                    "train_s": 0.9, "train_img_s": 1500.0} for e in range(15)]
        run.write_metrics(history)
        atomic_write_json(run.result, {
            "run_id": cell.run_id, "status": "done", "reason": None, "diverged_epoch": None,
            "config": cell.config.to_dict(),
            "metrics": final_metrics(history, has_val=True),
            "data": {"train_size": 1293, "val_size": 144, "test_size": 360, "val_fraction": 0.1, "data_seed": 0},
            "model": {"params": 50_000, "flops": 10**7, "input_size": [1, 8, 8]},
            "throughput": {"infer_img_s": rng.uniform(1e3, 1e4), "train_img_s": rng.uniform(1e2, 1e3),
                           "infer_setting": None, "train_setting": None, "measurements": []},
            "execution": {"layout": "contiguous", "precision": "fp32", "compiled": False, "loader": "device"},
            "timing": {"wall_s": 20.0, "train_s": 15.0, "epoch_s": [1.0] * 15},
            "memory": {"peak_bytes": 10**8, "kind": "cpu_max_rss"}, "env": {"device": "cpu"},
            "code": {"commit": None, "dirty": None}, "finished_at": "2026-11-26T00:00:00+00:00"})
        attempt = {"n": 1, "start": "2026-11-26T00:00:00+00:00", "end": "2026-11-26T00:00:20+00:00", "wall_s": 20.0,
                   "train_s": 15.0, "why": "done"}
        run.update_state("filled as finished by the benchmark", status="done", attempts=1, last_epoch=14,
                         owner={"executor": "local"}, test_top1=history[-1]["test_top1"], attempts_log=[attempt])
    atomic_write_bytes(study_file.parent / "results" / spec.name / "study.yaml",
                       yaml.safe_dump(resolved_study(spec, cells, {"commit": None, "dirty": None})).encode())
    return len(cells)


def timed(command: list[str], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TOKENMIX_CACHE"] = str(Path(tmp) / "cache")  # a cold validation cache for the first dry run
        study_file = Path(tmp) / "overhead.yaml"
        study_file.write_text(yaml.safe_dump({**STUDY, "run": {"results": str(Path(tmp) / "results")}}))
        start = time.perf_counter()
        n = fill(study_file)
        print(f"wrote {n} finished cells in {time.perf_counter() - start:.1f} s ({os.cpu_count()} CPUs, "
              f"load {os.getloadavg()[0]:.1f})")
        run_study = [sys.executable, "-m", "runner", str(study_file)]
        cold = timed([*run_study, "--dry-run"], 1)[0]
        rows = [("run-study --dry-run, first call (checks the models with torch)", [cold]),
                ("run-study --dry-run", timed([*run_study, "--dry-run"], args.repeat)),
                ("run-study --status", timed([*run_study, "--status"], args.repeat)),
                ("python -m analysis <study> --no-figures (aggregation)",
                 timed([sys.executable, "-m", "analysis", str(Path(tmp) / "results" / "overhead"), "--no-figures",
                        "--quiet"], args.repeat))]
        print(f"| command ({n} cells) | median s | fastest s |\n|---|---:|---:|")
        for name, times in rows:
            print(f"| {name} | {statistics.median(times):.2f} | {min(times):.2f} |")


if __name__ == "__main__":
    main()
