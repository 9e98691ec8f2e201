"""`python -m analysis results/<study>`: (re)build a study's summary, tables, figures and report.md."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .build import build_report
from .load import StudyError
from .spec import SpecError


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m analysis", description=__doc__)
    p.add_argument("study_dir", help="a study's results folder, e.g. results/mixer_vs_patch")
    p.add_argument("--no-figures", action="store_true", help="only summary.csv, tables and report.md (fast)")
    p.add_argument("--rows", help="axis down the tables (default: the study's report.table.rows, else model.mixer)")
    p.add_argument("--columns", help="axis across the tables (default: report.table.columns, else model.patch_size)")
    p.add_argument("--metric", help="the tables' and plots' main metric (default: report.table.metric, test_top1)")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        build_report(args.study_dir, figures=not args.no_figures, rows=args.rows, columns=args.columns,
                     metric_key=args.metric, echo=None if args.quiet else sys.stdout)
    except (StudyError, SpecError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
