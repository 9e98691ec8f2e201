"""report.md: what a study ran (grid, recipe, hardware), its tables and figures, and every run not finished."""
from __future__ import annotations

import re
from collections import Counter
from typing import TYPE_CHECKING, Any

import pandas as pd

from .aggregate import STATUSES
from .load import Study, flatten
from .metrics import axis_label, axis_name, metric
from .spec import ReportSpec
from .tables import Table, format_value, to_markdown

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
    if study.code:
        dirty = " with uncommitted changes" if study.code.get("dirty") else ""
        lines.append(f"- Code: commit `{study.code.get('commit') or 'unknown'}`{dirty}")
    lines += _hardware(runs)
    return lines + [""]


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


_MD_SPECIALS = re.compile(r"[\\`*_|<>\[\]]")  # would format or break a Markdown table row


def _unfinished(runs: pd.DataFrame, axes: list[str]) -> list[str]:
    todo = runs[runs["status"] != "done"]
    lines = ["## Runs not finished", ""]
    if todo.empty:
        return lines + ["None: every planned run is done.", ""]
    header = ["Run", *(axis_label(a) for a in axes), "Seed", "Status", "Attempts", "Epochs done", "Reason"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    columns = ["run_id", *axes, "seed", "status", "attempts", "last_epoch", "recipe.epochs", "reason"]
    for row in todo[[c for c in columns if c in todo]].to_dict("records"):
        reason = "" if pd.isna(row["reason"]) else _MD_SPECIALS.sub(r"\\\g<0>", _last_line(str(row["reason"])))
        planned = _int(row.get("recipe.epochs"))
        epochs = "" if pd.isna(row["last_epoch"]) else f"{int(row['last_epoch']) + 1}/{planned}"
        values = [f"`{row['run_id']}`", *(format_value(row[a]) for a in axes), format_value(row["seed"]),
                  row["status"], _int(row["attempts"]), epochs, reason]
        lines.append("| " + " | ".join(values) + " |")
    return lines + [""]


def _last_line(text: str, limit: int = 200) -> str:
    """The last non-empty line (of a traceback: the exception and its message), at most `limit` characters."""
    line = next((line.strip() for line in reversed(text.splitlines()) if line.strip()), "")
    return line if len(line) <= limit else line[:limit - 1] + "…"


def _int(value: Any) -> str:
    return "" if pd.isna(value) else str(int(value))


def render_report(study: Study, runs: pd.DataFrame, cells: pd.DataFrame, spec: ReportSpec, tables: list[Table],
                  figures: FigureSet | None, strays: list[str], problems: list[str], built_at: str) -> str:
    lines = [f"# Study `{study.name}`", ""]
    if study.description:
        lines += [study.description.strip(), ""]
    lines += [f"Built {built_at} from the result files: {status_line(runs)}.", ""]
    lines += _what_was_run(study, runs)

    lines += ["## Tables", "", "LaTeX versions of each table are in `tables/`; per-cell statistics (mean, std, n, "
              "95% Student t interval) in `tables/cells.csv`, one row per run in `summary.csv`.", ""]
    for table in tables:
        lines += [f"### {table.title}", "", to_markdown(table)]
    main, speed = metric(spec.metric), metric("infer_img_s")
    lines += ["### Pareto front", "", f"Cells no other cell beats on both {main.label.lower()} and "
              f"{speed.label.lower()} (means over seeds):", ""]
    lines += [f"- {', '.join(f'{axis_name(a)} {format_value(c[a])}' for a in study.axes) or 'all runs'}: "
              f"{main.format(c[f'{main.key}_mean'])} {main.unit}, {speed.format(c['infer_img_s_mean'])} {speed.unit}"
              for c in cells[cells["pareto"]].to_dict("records")] or ["- none yet (no cell has both numbers)"]
    lines.append("")

    lines += ["## Figures", ""]
    if figures is None:
        lines += ["Not built this time (`--no-figures`).", ""]
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
