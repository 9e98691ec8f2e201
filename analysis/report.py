"""report.md: the findings, what a study ran (grid, recipe, code versions, hardware), how settings were chosen and
sizes matched, its tables and figures, and every run not finished."""
from __future__ import annotations

import re
from collections import Counter
from typing import TYPE_CHECKING, Any

import pandas as pd

from .aggregate import STATUSES
from .load import Study, flatten
from .metrics import axis_label, axis_name, metric
from .spec import ReportSpec
from .tables import Table, format_value, split_size, to_markdown

if TYPE_CHECKING:  # the figures module is only imported when figures are built (it pulls in matplotlib)
    from .figures import FigureSet


def status_line(runs: pd.DataFrame) -> str:
    """"40 of 60 runs done; 2 failed, 18 missing"."""
    counts = Counter(runs["status"])
    others = [f"{counts[s]} {s}" for s in [*STATUSES, *sorted(set(counts) - set(STATUSES))]
              if s != "done" and counts[s]]
    return f"{counts['done']} of {len(runs)} runs done" + (f"; {', '.join(others)}" if others else "")


def _values(runs: pd.DataFrame, key: str) -> str:
    """The distinct values of a column, in order of appearance (all missing values as one "none")."""
    return ", ".join(dict.fromkeys(format_value(v) for v in runs[key].tolist()))


def _device(run: dict[str, Any]) -> str:
    if str(run["device"]).startswith("cuda"):
        return format_value(run["device_name"])
    return f"CPU {format_value(run['device_name'])} with {_int(run['cpu_count'])} cores"


def _what_was_run(study: Study, runs: pd.DataFrame) -> list[str]:
    lines = ["## What was run", ""]
    for axis in study.axes:
        lines.append(f"- {axis_label(axis)} (`{axis}`): {_values(runs, axis)}")
    lines.append(f"- Seeds: {', '.join(map(str, study.seeds)) or _values(runs, 'seed')}; {len(runs)} runs in all")
    base = flatten(study.base)
    for section in ("model", "data", "recipe"):
        fixed = [f"{k.split('.', 1)[1]}={format_value(v)}" for k, v in base.items()
                 if k.startswith(f"{section}.") and k not in study.axes]
        if fixed:
            lines.append(f"- {section.capitalize()} (shared by all runs): `{', '.join(fixed)}`")
    lines += _code_versions(study, runs)
    lines += _hardware(runs)
    return lines + [""]


def _code(commit: Any, dirty: Any, source: Any) -> str:
    return (f"source `{source or 'unknown'}` (commit `{commit or 'unknown'}`"
            + (" with uncommitted changes)" if dirty else ")"))


def _code_versions(study: Study, runs: pd.DataFrame) -> list[str]:
    """The code of the latest submission, and each code version the finished runs were trained under with its
    cell and run counts; runs of other code are stale."""
    lines = []
    if study.code:
        code = _code(*(study.code.get(k) for k in ("commit", "dirty", "source")))
        lines.append(f"- Code of the latest submission: {code}")
    done = runs[runs["status"] == "done"]
    if done.empty:
        return lines
    cell_of = done[study.axes].apply(lambda row: tuple(map(str, row)), axis=1) if study.axes else pd.Series(
        [()] * len(done), index=done.index)
    versions = []
    for (source, commit, dirty), group in done.groupby(["source", "commit", "dirty"], dropna=False, sort=False):
        stale = bool(group["stale"].any())
        versions.append(f"{_code(commit, dirty, source)}{' **stale**' if stale else ''}: "
                        f"{cell_of[group.index].nunique()} cells, {len(group)} runs")
    n_stale = int(done["stale"].sum())
    lines.append("- Code versions of the finished runs: " + "; ".join(versions))
    if n_stale:
        lines.append(f"- **{n_stale} finished runs are stale** (trained under other code than the latest "
                     "submission's): their numbers are in the tables and figures, marked †; `run-study FILE "
                     "--rerun stale` retrains them.")
    return lines


def _selection_and_matching(study: Study, spec: ReportSpec, cells: pd.DataFrame) -> list[str]:
    lines = []
    if spec.select_over:
        m = metric(spec.select_metric)
        lines += ["## Selection", "", f"For every combination of the other axes, the setting of "
                  f"{', '.join(f'`{o}`' for o in spec.select_over)} with the best mean {m.label.lower()} over seeds "
                  "was chosen (ties: the first in grid order); no test metric is ever read to choose. Every table "
                  "reports the test metrics of the chosen settings, listed in the table of chosen settings; "
                  "`tables/cells.csv` has every setting, with `selected`.", ""]
    if study.match:
        kind = next((k for k in ("params", "flops") if k in study.match), None)
        if kind is None:
            return lines
        target = float(study.match[kind])
        m = metric(kind).fitted([target])
        solve = study.match.get("solve")
        lines += ["## Matched size", "", f"Target: {m.format(target)} {m.unit} {m.label.lower()}"
                  + (f", reached by solving `{solve}` per cell" if solve else "") + ". Achieved per cell:", ""]
        header = [*(axis_name(a) for a in study.axes), *([axis_name(solve)] if solve else []),
                  f"{m.label} ({m.unit})", "vs target"]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for cell in cells.to_dict("records"):
            achieved = cell[f"{kind}_mean"]
            off = f"{100 * (achieved / target - 1):+.1f}%" if achieved == achieved else "–"
            values = [*(format_value(cell[a]) for a in study.axes),
                      *([format_value(cell.get(solve))] if solve else []),
                      m.format(achieved) if achieved == achieved else cell["status"], off]
            lines.append("| " + " | ".join(values) + " |")
        lines.append("")
    return lines


def _hardware(runs: pd.DataFrame) -> list[str]:
    done = runs[runs["status"] == "done"]
    if done.empty:
        return ["- Hardware: no run has finished yet"]
    # to_dict and itertuples only over the columns used: on 1,000 runs of 90 columns they cost tenths of a second
    devices = Counter(_device(run) for run in done[["device", "device_name", "cpu_count"]].to_dict("records"))
    versions = ", ".join(f"{name} {_values(done, name)}" for name in ("torch", "cuda", "python")
                         if done[name].notna().any())
    lines = [f"- Hardware: {'; '.join(f'{d} ({k} runs)' for d, k in devices.most_common())} "
             f"on {done['hostname'].nunique()} host(s); {versions}"]
    settings = Counter(
        f"{format_value(r.infer_layout)}, {format_value(r.infer_precision)}, "
        f"{'compiled' if r.infer_compiled is True else 'eager'}, batch {format_value(r.infer_batch_size)}"
        for r in done[[f"infer_{f}" for f in ("layout", "precision", "compiled", "batch_size")]].itertuples())
    lines.append(f"- Inference throughput measured with: {'; '.join(settings)}")
    if len(devices) > 1:
        lines.append("- **Runs finished on different devices: compare throughput only within one device.**")
    return lines


# What an unfinished run's status means to the reader of the report (the ledger's vocabulary).
STATUS_MEANINGS = {
    "new": "planned, not submitted yet",
    "submitting": "being handed to the scheduler right now",
    "queued": "waiting for the scheduler to start it",
    "running": "training now",
    "interrupted": "stopped on purpose; running the study again resumes it from its last checkpoint",
    "failed": "stopped by an error; running the study again retries it",
    "diverged": "stopped by a NaN or infinite loss; final, not retried",
    "unreadable": "its run files do not parse; it counts as not done",
    "missing": "no run folder yet",
}

_MD_SPECIALS = re.compile(r"[\\`*_|<>\[\]]")  # would format or break a Markdown table row


def _unfinished(runs: pd.DataFrame, axes: list[str]) -> list[str]:
    todo = runs[runs["status"] != "done"]
    lines = ["## Runs not finished", ""]
    if todo.empty:
        return lines + ["None: every planned run is done.", ""]
    header = ["Run", *(axis_label(a) for a in axes), "Seed", "Status", "Attempts", "Epochs done", "Reason"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    columns = ["run_id", *axes, "seed", "status", "attempts", "last_epoch", "recipe.epochs", "reason"]
    legend = [f"{s}: {STATUS_MEANINGS[s]}" for s in STATUS_MEANINGS if (todo["status"] == s).any()]
    for row in todo[[c for c in columns if c in todo]].to_dict("records"):
        reason = "" if pd.isna(row["reason"]) else _MD_SPECIALS.sub(r"\\\g<0>", _last_line(str(row["reason"])))
        planned = _int(row.get("recipe.epochs"))
        epochs = "" if pd.isna(row["last_epoch"]) else f"{int(row['last_epoch']) + 1}/{planned}"
        values = [f"`{row['run_id']}`", *(format_value(row[a]) for a in axes), format_value(row["seed"]),
                  row["status"], _int(row["attempts"]), epochs, reason]
        lines.append("| " + " | ".join(values) + " |")
    return lines + ([""] + ["- " + item for item in legend] if legend else []) + [""]


def _last_line(text: str, limit: int = 200) -> str:
    """The last non-empty line (of a traceback: the exception and its message), at most `limit` characters."""
    line = next((line.strip() for line in reversed(text.splitlines()) if line.strip()), "")
    return line if len(line) <= limit else line[:limit - 1] + "…"


def _int(value: Any) -> str:
    return "" if pd.isna(value) else str(int(value))


def render_report(study: Study, runs: pd.DataFrame, cells: pd.DataFrame, spec: ReportSpec, findings: list[str],
                  tables: list[Table], figures: FigureSet | None, strays: list[str], problems: list[str],
                  built_at: str) -> str:
    """`cells`: the reported ones (with a selection, the chosen settings); `findings`: the Findings lines."""
    lines = [f"# Study `{study.name}`", ""]
    if study.description:
        lines += [study.description.strip(), ""]
    lines += [f"Built {built_at} from the result files: {status_line(runs)}.", ""]
    lines += findings
    lines += _what_was_run(study, runs)
    lines += _selection_and_matching(study, spec, cells)

    compared = (" With a control, `delta_vs_control`, `delta_ci_low`, `delta_ci_high`, `p_value`, `p_holm` and "
                "`seeds_needed` are in `tables/cells.csv` per cell, and the first five on each run's row of "
                "`summary.csv`." if spec.control else "")
    lines += ["## Tables", "", "LaTeX versions of each table are in `tables/`; per-cell statistics (mean, std, n, "
              "95% Student t interval) in `tables/cells.csv`, one row per run in `summary.csv`." + compared, ""]
    for table in tables:
        lines += [f"### {table.title}", "", to_markdown(table)]
    main, speed = metric(spec.metric), metric("infer_img_s")
    lines += ["### Pareto front", "", f"Cells no other cell beats on both {main.label.lower()} and "
              f"{speed.label.lower()} (means over seeds):", ""]
    lines += [f"- {', '.join(f'{axis_name(a)} {format_value(c[a])}' for a in study.axes) or 'all runs'}: "
              f"{main.resolved(split_size(c, main)).format(c[f'{main.key}_mean'])} {main.unit}, "
              f"{speed.format(c['infer_img_s_mean'])} {speed.unit}"
              for c in cells[cells["pareto"]].to_dict("records")] or ["- none yet (no cell has both numbers)"]
    lines.append("")

    lines += ["## Figures", ""]
    if figures is None:
        lines += [f"Not built this time (`report.figures: false` or `--no-figures`); `study-report {study.dir} "
                  "--figures` draws them.", ""]
    else:
        for name, paths in figures.written.items():
            lines += [f"![{name}](figures/{paths[0].name})", "", f"*{figures.captions[name]}* "
                      f"([PDF](figures/{paths[1].name}))", ""]
        lines += [f"- Skipped `{name}`: {reason}." for name, reason in figures.skipped.items()]
        lines.append("")

    lines += _unfinished(runs, study.axes)
    if strays:
        lines += [f"Run folders not in the current grid (ignored): {', '.join(f'`{s}`' for s in strays)}.", ""]
    if problems:
        lines += ["Problems met while reading:", "", *(f"- {p}" for p in problems), ""]
    return "\n".join(lines)
