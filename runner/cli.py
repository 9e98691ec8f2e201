"""`run-study STUDY.yaml`: run every cell of a study (skipping finished ones), then build its tables and report.

    run-study studies/quickstart.yaml             # run what is new, interrupted or failed; wait; aggregate
    run-study studies/quickstart.yaml --dry-run   # the cells that would run, and counts by status
    run-study studies/quickstart.yaml --status    # where every cell stands, reconciled with what is real
    run-study studies/quickstart.yaml --wait      # wait for every cell on its way, whoever submitted it
    run-study studies/quickstart.yaml --report    # rebuild tables, figures and report.md now
    run-study studies/quickstart.yaml --rerun stale   # also retrain cells finished under other code
    run-study studies/quickstart.yaml recipe.epochs=2 seeds=1 --dry-run   # overrides of the file (recorded)

Exit codes: 0 all went well; 1 a cell or the report failed, or the scheduler refused the cells (the cause in one
line); 2 a mistake in the study file or the command line (nothing was written); 130 interrupted (resumable).
See harness/errors.py: `--debug` (or TOKENMIX_DEBUG=1) shows the traceback of an error.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
import traceback
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from harness.errors import EXIT_FAILED, EXIT_USAGE, add_debug_argument, check_output_folder, debugging, run_main
from harness.records import atomic_write_bytes, code_version, now, unwritable, write_config
from harness.schema import ConfigError
from harness.status import MEANING, Status

from .checks import CONFIRM_CELLS, check_size, warn_unused_rules
from .cost import Estimate, estimate, hours, spent_seconds
from .interrupt import EXIT_INTERRUPTED, Interrupts, StudyInterrupted
from .live import LiveView
from .spec import Cell, StudyError, StudySpec, cell_value, expand, load_spec, resolved_study
from .state import CellStatus, code_versions, counts, study_dir, study_lock, survey
from .validation import load_plugins

if TYPE_CHECKING:
    from .executors import Executor

RERUN = ("failed", "stale", "all")


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda r: "  ".join(str(x).ljust(w) for x, w in zip(r, widths)).rstrip()
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def _cell_columns(spec: StudySpec, cell: Cell) -> list[str]:
    values = ["n/a" if axis in cell.ignored else str(cell_value(cell, axis)) for axis in spec.axes]
    return values + [str(cell.params["seed"])]


def plan(statuses: list[CellStatus], max_retries: int, rerun: str | None,
         source: str) -> tuple[list[CellStatus], dict[str, str]]:
    """The cells to submit now, and why each other cell is left alone."""
    todo, skipped = [], {}
    for s in statuses:
        if s.status in (Status.NEW, Status.INTERRUPTED):
            todo.append(s)
        elif s.status is Status.FAILED:
            if s.failures > max_retries and rerun not in ("failed", "all"):
                skipped[s.cell.run_id] = f"gave up after {s.failures} failures (run.max_retries={max_retries}; " \
                                         f"--rerun failed tries again)"
            else:
                todo.append(s)
        elif s.status.final and (rerun == "all" or (rerun == "stale" and s.stale(source))):
            todo.append(s)
        else:
            skipped[s.cell.run_id] = "stale" if s.status.final and s.stale(source) else s.status.value
    return todo, skipped


def archive(s: CellStatus) -> None:
    """A finished cell rerun on purpose: its result, curves, checkpoints and log move to previous/<n>/, n = 1, 2 ..."""
    previous = s.run.path / "previous"
    target = previous / str(1 + (len(list(previous.iterdir())) if previous.exists() else 0))
    target.mkdir(parents=True)
    for path in (s.run.result, s.run.metrics, s.run.checkpoint, s.run.previous_checkpoint, s.run.log):
        if path.exists():
            shutil.move(str(path), target / path.name)
    s.state = s.run.update_state(f"rerun on purpose: the previous result is in {target}", status=Status.NEW,
                                 error=None, last_epoch=None)
    s.status = Status.NEW


SOURCES = {"finished": "from finished cells of their model", "probe": "from probes", "none": "not probed yet",
           "benchmark only": "benchmark only"}


def _cost_line(estimates: dict[str, Estimate], statuses: list[CellStatus], device: str) -> str:
    """The estimate's total and where its step times came from."""
    known = [estimates[s.cell.run_id].seconds for s in statuses]
    sources = Counter(estimates[s.cell.run_id].source for s in statuses)
    unknown = sum(1 for k in known if k is None)
    return (f"estimated device-hours: {hours(sum(k for k in known if k is not None))}"
            + (f" (+ {unknown} cells without an estimate)" if unknown else "")
            + f"; step times: {', '.join(f'{n} cells {SOURCES[src]}' for src, n in sources.items())}"
            + (f" (probed on this machine's {device})" if {"probe", "none"} & set(sources) else ""))


def print_dry_run(spec: StudySpec, statuses: list[CellStatus], todo: list[CellStatus]) -> None:
    will_run = {s.cell.run_id for s in todo}
    estimates, device = estimate(statuses, allow_probe=True)
    r = spec.run  # what each cell takes: its processes (data-parallel ranks), GPUs and nodes
    takes = [str(r.world_size), str(r.gpus_per_cell), str(r.nodes)]
    rows = [[s.cell.run_id, *_cell_columns(spec, s.cell), *takes, s.status.value,
             "submit" if s.cell.run_id in will_run else "skip", hours(estimates[s.cell.run_id].seconds)]
            for s in statuses]
    print(_table(rows, ["run id", *spec.axes, "seed", "processes", "GPUs", "nodes", "status", "action", "est. h"]))
    submitted = [s for s in statuses if s.cell.run_id in will_run]
    print(f"\n{counts(statuses)}; {len(todo)} would be submitted")
    print(f"{_cost_line(estimates, statuses, device)}; the {len(submitted)} to submit: "
          f"{hours(sum(estimates[s.cell.run_id].seconds or 0.0 for s in submitted))} h")


def print_status(spec: StudySpec, statuses: list[CellStatus], source: str) -> None:
    estimates, device = estimate(statuses, allow_probe=False)
    rows = []
    for s in statuses:
        top1 = s.state.get("test_top1")
        epoch = s.state.get("last_epoch")
        status = s.status.value + (" (stale)" if s.stale(source) else "")
        rows.append([s.cell.run_id, *_cell_columns(spec, s.cell), status, str(s.attempts),
                     ",".join(s.job_ids[-2:]), "" if epoch is None else str(epoch),
                     "" if top1 is None else f"{top1:.2f}", hours(estimates[s.cell.run_id].seconds),
                     hours(spent_seconds(s.state, s.cell.config.system.world_size)), s.note or ""])
    print(_table(rows, ["run id", *spec.axes, "seed", "status", "attempts", "job ids", "last epoch", "test top1",
                        "est. h", "spent h", "now"]))
    print(f"\n{counts(statuses)}")
    print(f"{_cost_line(estimates, statuses, device)}; spent so far: "
          f"{hours(sum(spent_seconds(s.state, s.cell.config.system.world_size) for s in statuses))} h")
    versions = code_versions(statuses)
    if len(versions) > 1 or any(s.stale(source) for s in statuses):
        print("finished cells by code version (current source: " + source + "): "
              + "; ".join(f"{label}: {n}" for label, n in versions.most_common())
              + "\n  stale cells ran other code; `--rerun stale` trains them again")
    for s in statuses:
        if s.problems:
            print(f"\n--- {s.cell.run_id}: damaged run files (the cell counts as not done) ---\n"
                  + "\n".join(s.problems))
        if s.error and s.status in (Status.FAILED, Status.DIVERGED, Status.INTERRUPTED):
            print(f"\n--- {s.cell.run_id} ({s.status.value}) ---\n{s.error.rstrip()}")
    shown = sorted({s.status for s in statuses}, key=list(Status).index)
    print("\n" + "\n".join(f"{st.value:11s} {MEANING[st]}" for st in shown))


def report(spec: StudySpec) -> bool:
    """Tables, figures and report.md; a failure is reported, and the run files it read stay as they were."""
    from analysis import build_report
    try:
        build_report(study_dir(spec))
    except Exception as e:
        detail = unwritable(e) or f"\n{traceback.format_exc()}"
        print(f"run-study: building the report of {spec.name} failed; the run results are complete: {detail}",
              file=sys.stderr)
        return False
    return True


def check_claim(spec: StudySpec, cells: list[Cell], where: str) -> None:
    """A results folder belongs to one study file; another file with the same name is refused, unless it is the same
    study grown (every cell already recorded is still one of its cells)."""
    path = study_dir(spec) / "study.yaml"
    if not path.exists():
        return
    try:
        recorded = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return  # unreadable: this submission rewrites it
    owner = recorded.get("file")
    if not owner or owner == spec.file:
        return
    ids = {c.run_id for c in cells}
    missing = [c["run_id"] for c in recorded.get("cells") or [] if c.get("run_id") not in ids]
    if missing:
        raise StudyError(f"{where}: the results folder {study_dir(spec)} belongs to another study file, {owner}, "
                         f"which has {len(missing)} cells this one lacks; give this study another name (or "
                         f"run.results)")


def submit(spec: StudySpec, cells: list[Cell], where: str, executor_name: str, max_retries: int, rerun: str | None,
           wait: bool, interrupts: Interrupts, code: dict[str, Any]) -> int:
    from .executors import EXECUTORS
    from .validation import validate_cells
    executor = EXECUTORS.get(executor_name)(spec, where)
    validate_cells(spec, cells, where, here=executor_name in ("local", "debug"))
    executor.check(cells)
    check_claim(spec, cells, where)
    with study_lock(spec):
        statuses = survey(spec, cells)
        todo, skipped = plan(statuses, max_retries, rerun, code["source"])
        if todo:
            study = {**resolved_study(spec, cells, code), "file": spec.file, "submitted_at": now()}
            atomic_write_bytes(study_dir(spec) / "study.yaml", yaml.safe_dump(study, sort_keys=False).encode())
            info = {"study": spec.name, "imports": spec.imports, "import_paths": [spec.folder]}
            for s in todo:
                if s.status.final:
                    archive(s)
                write_config(s.run, s.cell.config, {**info, "cell": s.cell.params})
            print(f"{spec.name}: submitting {len(todo)} of {len(cells)} cells to the {executor_name} executor "
                  f"({len(cells) - len(todo)} skipped)", flush=True)
            executor.submit([s.cell for s in todo], interrupts)
    if not todo:
        print(f"nothing to submit: {counts(statuses)}"
              + "".join(f"\n  {reason}" for reason in sorted(set(v for v in skipped.values() if " " in v))))
    interrupts.check()
    problems: list[str] = []
    if executor_name != "slurm" or wait:
        with LiveView(spec, cells):
            problems = wait_all(spec, cells, interrupts, executor)
    else:
        print(f"follow with: run-study {where} --status   (or --wait; results in {study_dir(spec)})")
        return 0
    return finish(spec, cells, where, problems, report_now=bool(todo))


def wait_all(spec: StudySpec, cells: list[Cell], interrupts: Interrupts, submitter: Executor | None = None
             ) -> list[str]:
    """Wait for every cell on its way, by the executor that owns it (the one that just submitted runs its cells);
    what could not run comes back as lines."""
    from .executors import EXECUTORS, by_executor
    problems: list[str] = []
    while True:
        active = [s for s in survey(spec, cells) if s.status.active]
        if not active:
            return problems
        for name, group in by_executor(active).items():
            executor = submitter if submitter and submitter.name == name else EXECUTORS.get(name)(spec)
            problems += executor.wait(group, interrupts)
        if problems:
            return problems


def finish(spec: StudySpec, cells: list[Cell], where: str, problems: list[str], report_now: bool) -> int:
    statuses = survey(spec, cells)
    finished = all(s.status.final for s in statuses)
    reported = report(spec) if report_now or finished else True
    for line in problems:
        print(f"run-study: {line}", file=sys.stderr)
    bad = [s for s in statuses if s.status is Status.FAILED]
    if bad:
        print(f"\n{len(bad)} cells failed; see `run-study {where} --status` for their tracebacks")
    stopped = [s for s in statuses if s.status is Status.INTERRUPTED]
    if stopped:
        print(f"\n{len(stopped)} cells were interrupted (scancel, preemption without requeue, a stopped trainer); "
              f"`run-study {where}` resumes them")
    return 1 if bad or stopped or problems or not reported else 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="run-study", description=__doc__.split("\n\n")[0])
    p.add_argument("study", type=Path, help="a study YAML file (see studies/)")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="overrides of the study file: model.dim=512 (the base), seeds=5, run.executor=local, "
                        "grid.model.mixer=[dwconv,pool] (see runner/overrides.py)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="list the cells that would run; submit nothing")
    mode.add_argument("--status", action="store_true", help="where every cell stands, reconciled with what is real")
    mode.add_argument("--report", action="store_true", help="(re)build tables, figures and report.md now")
    mode.add_argument("--cancel", action="store_true", help="stop every cell on its way (scancel, or SIGTERM to "
                                                            "local trainers); they stay resumable")
    p.add_argument("--executor", choices=["local", "slurm", "debug"], help="override run.executor")
    p.add_argument("--wait", action="store_true", help="block until every cell on its way has ended")
    p.add_argument("--rerun", choices=RERUN, help="also retrain failed cells beyond run.max_retries, finished "
                                                  "cells from other code (stale), or every cell")
    p.add_argument("--max-retries", type=count_argument, help="override run.max_retries (0 or more)")
    p.add_argument("--results", type=Path, help="override run.results (the results root folder)")
    p.add_argument("--yes", action="store_true", help=f"confirm a study of more than {CONFIRM_CELLS:,} cells")
    add_debug_argument(p)
    return p


def count_argument(text: str) -> int:
    """argparse type: an integer >= 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    return run_main("run-study", _main, argv)


def _main(argv: list[str]) -> int:
    t0 = time.perf_counter()
    args = parser().parse_intermixed_args(argv)  # overrides may come after options
    where = str(args.study)
    interrupts = Interrupts().install()
    try:
        spec = load_spec(args.study, args.overrides)
        if args.results:
            spec = replace(spec, run=replace(spec.run, results=str(args.results.resolve())))
        check_size(spec, where, args.yes)
        warn_unused_rules(spec, where)
        # plugins first: their mixers' signatures decide which settings a cell's identity ignores (harness.identity),
        # and their source is part of the code version
        load_plugins(spec, where)
        cells = expand(spec, where)
        code = code_version()
        source = code["source"]
        if args.status:
            with study_lock(spec, blocking=False) as free:  # a submission under way: look without writing
                print_status(spec, survey(spec, cells, persist=free), source)
            return 0
        if args.report:
            if not (study_dir(spec) / "study.yaml").is_file():
                raise StudyError(f"{where}: --report: no cell of {spec.name} was submitted yet ({study_dir(spec)} "
                                 f"has no study.yaml); run the study first")
            with study_lock(spec, blocking=False) as free:
                survey(spec, cells, persist=free)
            return 0 if report(spec) else 1
        if args.cancel:
            return cancel(spec, cells)
        max_retries = spec.run.max_retries if args.max_retries is None else args.max_retries
        if args.dry_run:
            from .validation import validate_cells
            validate_cells(spec, cells, where, download=False)
            statuses = survey(spec, cells, persist=False)
            print_dry_run(spec, statuses, plan(statuses, max_retries, args.rerun, source)[0])
            return 0
        check_output_folder(study_dir(spec), f"{where}.run.results")
        exit_code = submit(spec, cells, where, args.executor or spec.run.executor, max_retries, args.rerun, args.wait,
                           interrupts, code)
        print(f"run-study: {time.perf_counter() - t0:.1f} s")
        return exit_code
    except ConfigError as e:  # a bad study file, base config or cell (StudyError is one too)
        if debugging(argv):
            raise
        print(f"run-study: {e}\nnothing was submitted.", file=sys.stderr)
        return EXIT_USAGE
    except StudyInterrupted as e:
        print(f"run-study: interrupted ({e}); every cell is resumable: run `run-study {where}` again to go on "
              f"(`--status` shows where each stands)", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as e:
        if (line := unwritable(e)) is not None:
            print(f"run-study: {line}; the ledger is as it was before the failed write; fix it and run the same "
                  f"command again", file=sys.stderr)
            return EXIT_FAILED
        raise
    except RuntimeError as e:
        from .executors.slurm import SubmissionError
        if isinstance(e, SubmissionError):
            print(f"run-study: {e}; nothing was charged: fix it and run again", file=sys.stderr)
            return EXIT_FAILED
        raise


def cancel(spec: StudySpec, cells: list[Cell]) -> int:
    from .executors import EXECUTORS, by_executor
    active = [s for s in survey(spec, cells) if s.status.active]
    for name, group in by_executor(active).items():
        EXECUTORS.get(name)(spec).cancel(group)
    print(f"asked {len(active)} cells to stop; `--status` shows them as they end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
