"""Reading a study's result files into tables, figures and a report. Never imports the training code (or torch).

    from analysis import build_report
    paths = build_report(Path("results/mixer_vs_patch"))     # or: python -m analysis results/mixer_vs_patch

writes, under the study folder:

    summary.csv (and summary.parquet with pyarrow)   one row per planned run: axes, seed, config, state, metrics
    tables/cells.csv                                 one row per cell: mean, std, n, 95% CI per metric, statuses,
                                                     comparisons with the control and the column's best, selection
    tables/<metric>.tex|.md, tables/cells.tex|.md    paper tables (booktabs LaTeX, Markdown)
    figures/<name>.png|.pdf                          unless report.figures is false (or --no-figures)
    report.md                                        what ran, the tables, the figures, every unfinished run
"""
from .aggregate import aggregate
from .build import ReportPaths, build_report
from .load import Study, StudyError, load_study, read_curves, read_erf, read_runs
from .pareto import pareto_mask
from .spec import ReportSpec, SpecError, check_report, resolve_spec

__all__ = [
    "ReportPaths", "ReportSpec", "SpecError", "Study", "StudyError", "aggregate", "build_report", "check_report",
    "load_study", "pareto_mask", "read_curves", "read_erf", "read_runs", "resolve_spec",
]
