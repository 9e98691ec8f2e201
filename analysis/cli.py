"""`study-report results/<study>` (or `python -m analysis`): (re)build a study's summary, tables, figures and
report.md. Exit codes as every command's (harness/errors.py): 2 for a folder that is not a study's or a report key
that names no column, 1 when building failed."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from harness.errors import add_debug_argument, run_main  # torch-free: the exit codes every command shares

from .build import build_report
from .load import StudyError
from .spec import SpecError


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="study-report", description=__doc__.split("\n")[0])
    p.add_argument("study_dir", help="a study's results folder, e.g. results/mixer_vs_patch")
    p.add_argument("--figures", action=argparse.BooleanOptionalAction, default=None,
                   help="draw the figures, or with --no-figures only summary.csv, tables and report.md (fast); "
                        "default: the study's report.figures (true)")
    p.add_argument("--rows", help="axis down the tables (default: the study's report.table.rows, else model.mixer)")
    p.add_argument("--columns", help="axis across the tables (default: report.table.columns, else model.patch_size)")
    p.add_argument("--metric", help="the tables' and plots' main metric (default: report.table.metric, test_top1)")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing")
    add_debug_argument(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    return run_main("study-report", _main, argv, user_errors=(StudyError, SpecError))


def _main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    build_report(args.study_dir, figures=args.figures, rows=args.rows, columns=args.columns,
                 metric_key=args.metric, echo=None if args.quiet else sys.stdout)
    return 0
