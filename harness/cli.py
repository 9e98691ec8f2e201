"""`mixer-train`: one training run from a config file and/or key=value overrides.

    mixer-train                                   # the embedded default: ConvMixer-256/8 on digits, CPU or GPU
    mixer-train run.yaml recipe.epochs=5 model.mixer=pool --out results/my-run
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    t0 = time.perf_counter()
    parser = argparse.ArgumentParser(prog="mixer-train", description=__doc__.split("\n\n")[0])
    parser.add_argument("items", nargs="*", metavar="[CONFIG.yaml] [key=value ...]",
                        help="a YAML run config (optional), then dotted overrides such as recipe.epochs=5")
    parser.add_argument("--out", type=Path, default=None, help="run directory (default: results/runs/<run id>)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (one line per epoch remains)")
    args = parser.parse_args(argv)
    file = args.items[0] if args.items and "=" not in args.items[0] else None
    overrides = args.items[1:] if file else args.items

    # validate before importing torch: a typo costs a fraction of a second, not the seconds torch takes to import
    from .config import load_config
    from .datasets import DatasetError
    from .schema import ConfigError, parse_overrides
    try:
        cfg = load_config(file, parse_overrides(overrides))
    except (ConfigError, DatasetError, OSError) as e:
        print(f"mixer-train: {e}", file=sys.stderr)
        return 2

    from .records import ConfigMismatchError
    from .train import train
    from .validate import ModelConfigError, check_run
    try:
        check_run(cfg)
    except (ModelConfigError, DatasetError) as e:
        print(f"mixer-train: {e}", file=sys.stderr)
        return 2
    out = args.out or Path("results") / "runs" / cfg.run_id
    print(f"mixer-train: run {cfg.run_id} -> {out}", flush=True)
    try:
        result = train(cfg, out, progress=not args.no_progress and sys.stderr.isatty(),
                       log=lambda line: print(line, flush=True))
    except ConfigMismatchError as e:
        print(f"mixer-train: {e}", file=sys.stderr)
        return 2
    m, t = result["metrics"], result["throughput"] or {}
    accuracy = f"{_test_accuracy(m, result.get('data') or {})} after {m['epochs']} epochs; " if m["epochs"] else ""
    print(f"{result['status']}: {accuracy}{result['model']['params'] / 1e6:.3f}M params; inference "
          f"{t.get('infer_img_s') or 0:,.0f} img/s, training {t.get('train_img_s') or 0:,.0f} img/s; "
          f"{time.perf_counter() - t0:.1f} s in all")
    return 0 if result["status"] == "done" else 3


def _test_accuracy(metrics: dict, data: dict) -> str:
    """Top-1 and top-5 to the resolution of the test set, as the report's tables print them, with its size n."""
    from analysis.metrics import METRICS
    n = data.get("test_size")
    top1, top5 = (METRICS[k].resolved(n).format(metrics[k]) for k in ("test_top1", "test_top5"))
    return f"test top-1 {top1}%, top-5 {top5}%" + (f" (n={n:,})" if n else "")


if __name__ == "__main__":
    sys.exit(main())
