"""`run-study STUDY.yaml`: run every cell of a study (skipping finished ones), then build its tables and report.

    run-study studies/quickstart.yaml             # run what is new or failed, wait, aggregate
    run-study studies/quickstart.yaml --dry-run   # the cells that would run, and counts by status
    run-study studies/quickstart.yaml --status    # where every cell stands, from the run files
    run-study studies/quickstart.yaml --report    # rebuild tables, figures and report.md now
"""
from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections import Counter
from pathlib import Path

from harness.records import atomic_write_bytes, code_version
from harness.schema import ConfigError

from .spec import Cell, StudyError, StudySpec, cell_value, expand, load_spec, resolved_study
from .state import CellStatus, claim, read_status, reconcile, run_dir, study_dir, study_lock


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda r: "  ".join(str(x).ljust(w) for x, w in zip(r, widths)).rstrip()
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def _cell_columns(spec: StudySpec, cell: Cell) -> list[str]:
    return [str(cell_value(cell, axis)) for axis in spec.axes] + [str(cell.params["seed"])]


def plan(spec: StudySpec, statuses: list[CellStatus], max_retries: int) -> tuple[list[Cell], dict[str, str]]:
    """The cells to submit now, and why each other cell is left alone."""
    todo, skipped = [], {}
    for s in statuses:
        if s.status == "new":
            todo.append(s.cell)
        elif s.status == "failed":
            if s.attempts > max_retries:
                skipped[s.cell.run_id] = f"gave up after {s.attempts} attempts (run.max_retries={max_retries})"
            else:
                todo.append(s.cell)
        else:
            skipped[s.cell.run_id] = s.status
    return todo, skipped


def print_dry_run(spec: StudySpec, statuses: list[CellStatus], todo: list[Cell]) -> None:
    will_run = {c.run_id for c in todo}
    rows = [[s.cell.run_id, *_cell_columns(spec, s.cell), s.status,
             "submit" if s.cell.run_id in will_run else "skip"] for s in statuses]
    print(_table(rows, ["run id", *spec.axes, "seed", "status", "action"]))
    counts = Counter(s.status for s in statuses)
    print(f"\n{len(statuses)} cells: {len(todo)} would be submitted; "
          + ", ".join(f"{counts[k]} {k}" for k in ("new", "done", "failed", "running", "queued", "diverged")
                      if counts.get(k)))


def print_status(spec: StudySpec, statuses: list[CellStatus]) -> None:
    rows = []
    for s in statuses:
        top1 = f"{s.test_top1:.2f}" if s.test_top1 is not None else ""
        epoch = "" if s.last_epoch is None else str(s.last_epoch)
        rows.append([s.cell.run_id, *_cell_columns(spec, s.cell), s.status, str(s.attempts),
                     ",".join(s.job_ids), epoch, top1])
    print(_table(rows, ["run id", *spec.axes, "seed", "status", "attempts", "job ids", "last epoch", "test top1"]))
    counts = Counter(s.status for s in statuses)
    print(f"\n{len(statuses)} cells: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    for s in statuses:
        if s.error and s.status in ("failed", "diverged"):
            print(f"\n--- {s.cell.run_id} ({s.status}) ---\n{s.error.rstrip()}")


def report(spec: StudySpec) -> bool:
    """Tables, figures and report.md; a failure is reported, and the run files it read stay as they were."""
    from analysis import build_report
    try:
        build_report(study_dir(spec))
    except Exception:
        print(f"run-study: building the report of {spec.name} failed; the run results are complete:\n"
              f"{traceback.format_exc()}", file=sys.stderr)
        return False
    return True


def submit(spec: StudySpec, cells: list[Cell], where: str, executor: str, max_retries: int, wait: bool) -> int:
    from .executors import EXECUTORS, slurm_partitions, wait_for_cells
    from .validation import validate_cells
    validate_cells(spec, cells, where)
    if executor == "slurm" and spec.run.partition:
        partitions = slurm_partitions()
        if partitions is not None and spec.run.partition not in partitions:
            raise StudyError(f"{where}.run.partition: no partition {spec.run.partition!r} on this cluster; "
                             f"partitions: {', '.join(partitions)}")
    with study_lock(spec):
        statuses = reconcile(spec, read_status(spec, cells))
        todo, skipped = plan(spec, statuses, max_retries)
        info = {"study": spec.name, "imports": spec.imports}
        if todo:
            import yaml
            study = resolved_study(spec, cells, code_version())
            atomic_write_bytes(study_dir(spec) / "study.yaml", yaml.safe_dump(study, sort_keys=False).encode())
            for cell in todo:
                claim(spec, cell, executor, {**info, "cell": cell.params})
    if not todo:
        counts = Counter(skipped.values())
        print(f"nothing to submit: {len(cells)} cells, " + ", ".join(f"{n} {k}" for k, n in counts.items()))
    else:
        print(f"{spec.name}: submitting {len(todo)} of {len(cells)} cells to the {executor} executor "
              f"({len(cells) - len(todo)} skipped)", flush=True)
        try:
            EXECUTORS.get(executor)(spec, todo)
        except Exception as e:  # e.g. sbatch refused the job: the claimed cells must not stay "queued"
            for cell in todo:
                if run_dir(spec, cell).read_state()["status"] == "queued":
                    run_dir(spec, cell).update_state(status="failed", error=f"submission failed: {e}",
                                                     event="submission failed")
            raise
        if executor == "slurm" and not wait:
            print(f"follow with: run-study {where} --status   (results in {study_dir(spec)})")
            return 0
        if executor == "slurm":
            wait_for_cells(spec, todo)
    statuses = reconcile(spec, read_status(spec, cells))
    finished = all(s.status in ("done", "diverged") for s in statuses)
    reported = report(spec) if todo or finished else True
    bad = [s for s in statuses if s.status == "failed"]
    if bad:
        print(f"\n{len(bad)} cells failed; see `run-study {where} --status` for their tracebacks")
    return 1 if bad or not reported else 0


def main(argv: list[str] | None = None) -> int:
    t0 = time.perf_counter()
    parser = argparse.ArgumentParser(prog="run-study", description=__doc__.split("\n\n")[0])
    parser.add_argument("study", type=Path, help="a study YAML file (see studies/)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="list the cells that would run; submit nothing")
    mode.add_argument("--status", action="store_true", help="where every cell stands, from its run files")
    mode.add_argument("--report", action="store_true", help="(re)build tables, figures and report.md now")
    parser.add_argument("--executor", choices=["local", "slurm", "debug"], help="override run.executor")
    parser.add_argument("--wait", action="store_true", help="slurm: block until every submitted cell has ended")
    parser.add_argument("--max-retries", type=int, help="override run.max_retries")
    parser.add_argument("--results", type=Path, help="override run.results (the results root folder)")
    args = parser.parse_args(argv)
    where = str(args.study)
    try:
        spec = load_spec(args.study)
        if args.results:
            from dataclasses import replace
            spec = replace(spec, run=replace(spec.run, results=str(args.results)))
        cells = expand(spec, where)
        if args.status:
            print_status(spec, reconcile(spec, read_status(spec, cells)))
            return 0
        if args.report:
            return 0 if report(spec) else 1
        max_retries = spec.run.max_retries if args.max_retries is None else args.max_retries
        if args.dry_run:
            from .validation import validate_cells
            validate_cells(spec, cells, where)
            statuses = read_status(spec, cells)
            print_dry_run(spec, statuses, plan(spec, statuses, max_retries)[0])
            return 0
        code = submit(spec, cells, where, args.executor or spec.run.executor, max_retries, args.wait)
        print(f"run-study: {time.perf_counter() - t0:.1f} s")
        return code
    except ConfigError as e:  # a bad study file, base config or cell (StudyError is one too)
        print(f"run-study: {e}\nnothing was submitted.", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
