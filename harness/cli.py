"""`mixer-train`: one training run from a config file and/or key=value overrides.

    mixer-train                                   # the embedded default: ConvMixer-256/8 on digits, CPU or GPU
    mixer-train run.yaml recipe.epochs=5 model.mixer=pool --out results/my-run
    torchrun --nproc-per-node 2 -m harness.cli run.yaml   # one run on 2 processes (data-parallel; rank 0 writes)

Exit codes (harness/errors.py): 0 done; 1 the run failed or diverged (the cause, and where it is recorded); 2 a mistake
in the config or the arguments (nothing written); 130 interrupted (resumable from the last epoch checkpoint).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .errors import RunFailed, add_debug_argument, check_output_folder, run_main
from .schema import ConfigError


def main(argv: list[str] | None = None) -> int:
    return run_main("mixer-train", _main, argv)


def _main(argv: list[str]) -> int:
    t0 = time.perf_counter()
    parser = argparse.ArgumentParser(prog="mixer-train", description=__doc__.split("\n\n")[0])
    parser.add_argument("items", nargs="*", metavar="[CONFIG.yaml] [key=value ...]",
                        help="a YAML run config (optional), then dotted overrides such as recipe.epochs=5")
    parser.add_argument("--out", type=Path, default=None, help="run directory (default: results/runs/<run id>)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (one line per epoch remains)")
    add_debug_argument(parser)
    args = parser.parse_intermixed_args(argv)
    file = args.items[0] if args.items and "=" not in args.items[0] else None
    overrides = args.items[1:] if file else args.items

    # validate before importing torch: a typo costs a fraction of a second, not the seconds torch takes to import
    from .config import load_config
    from .schema import parse_overrides
    cfg = load_config(file, parse_overrides(overrides))
    out = args.out or Path("results") / "runs" / cfg.run_id
    check_output_folder(out, "--out" if args.out else "the run directory")

    from .train import in_world, train
    from .validate import check_run
    from .world import World
    world = World.from_env()  # under torchrun: this process's rank; several processes train one run
    cfg = in_world(cfg, world)
    check_run(cfg, file or "config")
    if world.main:
        print(f"mixer-train: run {cfg.run_id} -> {out}" + (f" on {world.size} processes" if world.size > 1 else ""),
              flush=True)
    try:
        result = train(cfg, out, progress=not args.no_progress and sys.stderr.isatty() and world.main,
                       log=lambda line: print(line, flush=True), world=world)
    except (ConfigError, KeyboardInterrupt):
        raise
    except Exception as e:  # recorded in the run directory by train(); here one line and where to look
        raise RunFailed(f"run {cfg.run_id} failed: {type(e).__name__}: {e}; its traceback is recorded in "
                        f"{out / 'result.json'} (reason)") from e
    if not world.main:  # rank 0 reports
        return 0
    m, t = result["metrics"], result["throughput"] or {}
    accuracy = f"{_test_accuracy(m, result.get('data') or {})} after {m['epochs']} epochs; " if m["epochs"] else ""
    print(f"{result['status']}: {accuracy}{result['model']['params'] / 1e6:.3f}M params; inference "
          f"{t.get('infer_img_s') or 0:,.0f} img/s, training {t.get('train_img_s') or 0:,.0f} img/s; "
          f"{time.perf_counter() - t0:.1f} s in all")
    if result["status"] != "done":
        raise RunFailed(f"run {cfg.run_id} {result['status']}: {result.get('reason')}; the record is "
                        f"{out / 'result.json'}, the curves {out / 'metrics.jsonl'}")
    return 0


def _test_accuracy(metrics: dict, data: dict) -> str:
    """Top-1 and top-5 to the resolution of the test set, as the report's tables print them, with its size n."""
    from analysis.metrics import METRICS
    n = data.get("test_size")
    top1, top5 = (METRICS[k].resolved(n).format(metrics[k]) for k in ("test_top1", "test_top5"))
    return f"test top-1 {top1}%, top-5 {top5}%" + (f" (n={n:,})" if n else "")


if __name__ == "__main__":
    sys.exit(main())
