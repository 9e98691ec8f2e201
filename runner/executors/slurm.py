"""`slurm`: cells as SLURM job arrays through submitit (split under the cluster's MaxArraySize), each a checkpointable
job that requeues itself on preemption or at its time limit and resumes from its last epoch checkpoint.

Submission is written to the ledger around `sbatch`: each cell is `submitting` (with the job name that will find its
job again) before sbatch runs, and `queued` with its job id after; both under the study lock. A runner that dies in
between leaves cells `submitting`, which the next command resolves from squeue/sacct by that job name. A failed
sbatch hands its cells back as they were (no attempt is charged) and says sbatch's own words in one line.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from harness.attempt import close_dead_attempt
from harness.owner import Owner
from harness.records import HEARTBEAT_STALE_S, PACKAGE_ROOT, code_version, heartbeat_age
from harness.status import Status

from ..group import CellGroupJob
from ..interrupt import Interrupts
from ..job import CellJob
from ..spec import Cell, StudyError, StudySpec
from ..state import CellStatus, read_status, run_dir, study_dir
from . import EXECUTORS, Executor

PACKAGES = ("mixers", "harness", "runner", "analysis")
# squeue reasons that never clear by themselves: such a job is cancelled and its cell failed, never waited on
NEVER_STARTS = {"PartitionConfig", "PartitionNodeLimit", "PartitionTimeLimit", "BadConstraints",
                "DependencyNeverSatisfied", "InvalidAccount", "InvalidQOS", "AccountNotAllowed", "QOSNotAllowed"}
# ... or only when a person acts: reported, and not waited for
HELD = {"JobHeldUser", "JobHeldAdmin"}
# sacct's end states of a job that left the queue without its cell recording an end, and how the cell ends
ENDED = {"CANCELLED": (Status.INTERRUPTED, "cancelled"), "PREEMPTED": (Status.INTERRUPTED, "preempted"),
         "TIMEOUT": (Status.FAILED, "time limit"), "COMPLETED": (Status.FAILED, "killed")}
# job states (squeue's and sacct's) of a job still on its way
ON_ITS_WAY = {"PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "COMPLETING", "SUSPENDED",
              "CONFIGURING", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED"}
UNLIMITED_TIMEOUTS = 10 ** 6  # submitit's own time-limit count is replaced by CellJob's (see runner/job.py)


class SubmissionError(RuntimeError):
    """sbatch refused a chunk of cells; its own message, in one line."""


def _run(cmd: list[str]) -> subprocess.CompletedProcess | None:
    """A SLURM command's output, or None where it cannot be asked (not installed, no answer)."""
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return out


def squeue(job_ids: list[str] | None = None, names: list[str] | None = None) -> dict[str, dict[str, str]] | None:
    """{job id: {state, reason, name}} of the jobs slurmctld knows (on their way, or ended a few minutes ago); None
    where it cannot answer."""
    # every state: slurmctld keeps an ended job (MinJobAge, 300 s by default) before accounting may have it
    cmd = ["squeue", "-h", "-r", "-t", "all", "-o", "%i|%T|%r|%j"]
    if job_ids is not None:
        cmd += ["-j", ",".join(job_ids)]
    if names is not None:
        cmd += ["-n", ",".join(names)]
    out = _run(cmd)
    if out is None or (out.returncode != 0 and "Invalid job id" not in out.stderr):
        return None
    jobs = {}
    for line in out.stdout.splitlines():
        job, state, reason, name = (line.split("|") + ["", "", ""])[:4]
        jobs[job] = {"state": state, "reason": reason, "name": name}
    return jobs


def sacct(job_ids: list[str] | None = None, names: list[str] | None = None) -> dict[str, dict[str, str]] | None:
    """{job id: {state, name}} from accounting; None where accounting does not answer."""
    cmd = ["sacct", "-n", "-X", "-P", "-o", "JobID,State,JobName", "-S", "2000-01-01"]
    if job_ids is not None:
        cmd += ["-j", ",".join(job_ids)]
    if names is not None:
        cmd += ["--name", ",".join(names)]
    out = _run(cmd)
    if out is None or out.returncode != 0:
        return None
    jobs = {}
    for line in out.stdout.splitlines():
        job, state, name = (line.split("|") + ["", ""])[:3]
        jobs[job] = {"state": state.split()[0] if state else "", "name": name}
    return jobs


def _sinfo(*args: str, waits: tuple[float, ...] = (1.0, 3.0, 8.0)) -> subprocess.CompletedProcess | None:
    """sinfo's answer, asked again after each of `waits` while it has none: a controller that is busy or restarting
    is not a missing cluster, and a study refused for it would be refused for nothing. None: no answer at all."""
    if shutil.which("sinfo") is None:
        return None
    for wait in (*waits, 0.0):
        out = _run(["sinfo", "-h", *args])
        if out is not None and out.returncode == 0:
            return out
        time.sleep(wait)
    return None


def partition_nodes(partition: str | None) -> tuple[str, list[dict[str, Any]]] | None:
    """(partition, [{cpus, mem_mb, gpus} per node]) of `partition` (the default one if None); None without sinfo."""
    out = _sinfo("-N", "-o", "%P|%N|%c|%m|%G")
    if out is None:
        return None
    nodes: dict[str, list[dict[str, Any]]] = {}
    default = None
    for line in out.stdout.splitlines():
        part, node, cpus, mem, gres = line.split("|")
        if part.endswith("*"):
            part = default = part[:-1]
        gpus = sum(int(m.group(1)) for m in re.finditer(r"gpu(?::[^:,(]+)?:(\d+)", gres))
        nodes.setdefault(part, []).append({"node": node, "cpus": int(cpus.rstrip("+")),
                                           "mem_mb": int(mem.rstrip("+")), "gpus": gpus})
    name = partition or default
    return (name, nodes[name]) if name in nodes else (name or "", [])


def _source_files(spec: StudySpec) -> list[tuple[Path, Path]]:
    """(file, its path inside the snapshot): the toolkit's packages and the study's plugin modules."""
    files = [(p, p.relative_to(PACKAGE_ROOT)) for pkg in PACKAGES for p in sorted((PACKAGE_ROOT / pkg).rglob("*.py"))]
    folder = Path(spec.folder)
    for module in spec.imports:
        parts = module.split(".")
        for i in range(1, len(parts) + 1):  # the module and the packages above it, where they live beside the study
            base = folder.joinpath(*parts[:i])
            for candidate in (base.with_suffix(".py"), base / "__init__.py"):
                if candidate.is_file():
                    files.append((candidate, candidate.relative_to(folder)))
    return files


def snapshot_code(spec: StudySpec) -> Path:
    """A copy of the toolkit's packages (and the study's plugins) under <study>/.snapshot/<source hash>, so that queued
    jobs run the code as it was at submission however the checkout changes meanwhile. Same code, same snapshot."""
    files = _source_files(spec)
    digest = hashlib.sha256()
    for path, inside in files:
        digest.update(str(inside).encode() + b"\0" + path.read_bytes() + b"\0")
    target = study_dir(spec).resolve() / ".snapshot" / digest.hexdigest()[:12]
    if not target.exists():
        tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
        for path, inside in files:
            dest = tmp / inside
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)
        os.replace(tmp, target)
    return target


@EXECUTORS.register("slurm")
class SlurmExecutor(Executor):
    name = "slurm"

    # --- before anything is written ---------------------------------------------------------------------------------

    def check(self, cells: list[Cell]) -> None:
        r, where = self.spec.run, f"{self.where}.run"
        found = partition_nodes(r.partition)
        if found is None:
            raise StudyError(f"{where}.executor: slurm, but no SLURM cluster answers `sinfo` on this machine (is "
                             f"slurm installed and slurmctld up?); use run.executor: local here")
        partition, nodes = found
        if not nodes:
            known = sorted(set(line.split("|")[0].rstrip("*") for line in
                               (_sinfo("-o", "%P|") or subprocess.CompletedProcess([], 0, "")).stdout.splitlines()))
            raise StudyError(f"{where}.partition: no partition {partition!r} on this cluster; partitions: "
                             f"{', '.join(known)}")
        gpu_key = "gpus_per_node" if r.gpus_per_node else "gpus_per_task"
        for key, asked, have, unit in (
                ("cpus_per_task", r.cpus_per_task * r.tasks_per_node, max(n["cpus"] for n in nodes), "CPUs"),
                ("mem_gb", r.mem_gb, max(n["mem_mb"] for n in nodes) / 1024, "GB of memory"),
                (gpu_key, r.gpus_per_node or r.gpus_per_task, max(n["gpus"] for n in nodes), "GPUs")):
            if asked > have:
                per_node = f" ({r.tasks_per_node} tasks per node)" if key == "cpus_per_task" and r.tasks_per_node > 1 \
                    else ""
                raise StudyError(f"{where}.{key}: {asked:g}{per_node} is more than any node of partition "
                                 f"{partition!r} has (the largest has {have:g} {unit}); valid: at most {have:g}")
        if r.nodes > len(nodes):
            raise StudyError(f"{where}.nodes: {r.nodes} nodes per cell, but partition {partition!r} has "
                             f"{len(nodes)}; valid: at most {len(nodes)}")

    # --- submission ------------------------------------------------------------------------------------------------

    def _executor(self) -> Any:
        import submitit
        r = self.spec.run
        setup = [f"cd {shlex.quote(self.spec.folder)}", *r.setup]  # setup lines run from the study file's folder
        if r.snapshot:
            snapshot = snapshot_code(self.spec)
            # `python -m` puts the working directory first on sys.path: the job must start inside the snapshot
            setup += [f"cd {snapshot}", f"export PYTHONPATH={snapshot}${{PYTHONPATH:+:$PYTHONPATH}}",
                      f"export TOKENMIX_CODE_VERSION={shlex.quote(json.dumps(code_version()))}"]
        params: dict[str, Any] = dict(
            timeout_min=r.timeout_min, cpus_per_task=r.cpus_per_task, mem_gb=r.mem_gb,
            tasks_per_node=r.tasks_per_node, nodes=r.nodes,
            stderr_to_stdout=True, slurm_array_parallelism=r.array_parallelism, slurm_setup=setup,
            slurm_signal_delay_s=r.signal_delay_s, slurm_additional_parameters=dict(r.sbatch))
        if r.gpus_per_node or r.gpus_per_task:
            params["gpus_per_node"] = r.gpus_per_node or r.gpus_per_task
        for key in ("partition", "account", "qos", "constraint"):
            if getattr(r, key):
                params[f"slurm_{key}"] = getattr(r, key)
        executor = submitit.AutoExecutor(folder=study_dir(self.spec).resolve() / ".submitit" / "%j", cluster="slurm",
                                         slurm_max_num_timeout=UNLIMITED_TIMEOUTS)
        executor.update_parameters(**params)
        return executor

    def submit(self, cells: list[Cell], interrupts: Interrupts) -> None:
        """Chunks of at most run.max_array_size array tasks, each one sbatch; a task trains run.cells_per_gpu cells
        side by side. Between chunks a stop request is honoured (the chunk under way is always recorded whole)."""
        executor = self._executor()
        owner = {**Owner.current().to_dict(), "executor": self.name, "role": "runner"}
        size = self.spec.run.max_array_size * self.spec.run.cells_per_gpu
        for start in range(0, len(cells), size):
            if interrupts.requested:
                break
            self._submit_chunk(executor, cells[start:start + size], owner)

    def _submit_chunk(self, executor: Any, chunk: list[Cell], owner: dict[str, Any]) -> None:
        name = f"tokenmix-{self.spec.name}-{secrets.token_hex(4)}"
        executor.update_parameters(name=name)
        runs = [run_dir(self.spec, c) for c in chunk]
        before = [r.read_state() for r in runs]
        r = self.spec.run
        per = r.cells_per_gpu  # cells i*per .. i*per+per-1 are array task i
        tasks = (len(runs) + per - 1) // per
        for i, run in enumerate(runs):  # the intent, before sbatch
            run.update_state(f"submitting as {name}[{i // per}]", status=Status.SUBMITTING, owner=owner, error=None,
                             submission={"name": name, "index": i // per, "size": tasks,
                                         "was": before[i]["status"]})
        groups = [[run.path.resolve() for run in runs[i:i + per]] for i in range(0, len(runs), per)]
        jobs_fn = [CellJob(g[0], r.signal_delay_s, r.max_num_timeout) if len(g) == 1 else
                   CellGroupJob(g, r.signal_delay_s, r.max_num_timeout) for g in groups]
        captured = io.StringIO()
        try:
            with contextlib.redirect_stderr(captured), executor.batch():  # submitit echoes sbatch's stderr: keep it
                jobs = [executor.submit(fn) for fn in jobs_fn]
        except Exception as e:
            for run, state in zip(runs, before):  # handed back as they were: a refused submission is no attempt
                run.update_state(f"submission refused: {e}", status=state["status"], submission=None)
            message = " ".join(str(e).split()) or " ".join(captured.getvalue().split())
            raise SubmissionError(f"sbatch refused {len(chunk)} cells: {message}") from None
        for i, run in enumerate(runs):
            job = jobs[i // per]
            run.update_state(f"submitted as SLURM job {job.job_id}", status=Status.QUEUED, job_id=job.job_id,
                             submission=None)
        cells = f"{len(chunk)} cell{'s' if len(chunk) > 1 else ''}" + (f", {per} per job," if per > 1 else "")
        if tasks == 1:  # submitit sends a batch of one as a plain job
            print(f"submitted {cells} as SLURM job {jobs[0].job_id}", flush=True)
        else:
            print(f"submitted {cells} as SLURM array {jobs[0].job_id.split('_')[0]} "
                  f"(at most {min(r.array_parallelism, tasks)} jobs at once)", flush=True)

    # --- what is real ----------------------------------------------------------------------------------------------

    def reconcile(self, statuses: list[CellStatus], persist: bool) -> None:
        submitting = [s for s in statuses if s.status is Status.SUBMITTING]
        if submitting:
            self._find_submissions(submitting, persist)
        tracked = [s for s in statuses if s.status in (Status.QUEUED, Status.RUNNING) and s.job_ids]
        if not tracked:
            return
        ids = [s.job_ids[-1] for s in tracked]
        queue = squeue(ids)
        if queue is None:
            for s in tracked:
                s.note = "squeue does not answer: its state is as last recorded"
            return
        gone = [s for s in tracked if queue.get(s.job_ids[-1], {}).get("state") not in ON_ITS_WAY]
        accounting = sacct([s.job_ids[-1] for s in gone if s.job_ids[-1] not in queue]) if gone else {}
        for s in tracked:
            job = s.job_ids[-1]
            if queue.get(job, {}).get("state") in ON_ITS_WAY:
                info = queue[job]
                s.note = f"SLURM job {job} {info['state'].lower()}" + (
                    f" ({info['reason']})" if info["state"] == "PENDING" and info["reason"] not in ("", "None") else "")
                if s.status is Status.RUNNING and info["state"] == "PENDING":  # requeued under a trainer's feet
                    self._end(s, Status.QUEUED, "requeued", f"SLURM requeued job {job} while it trained", persist)
                continue
            self._left_queue(s, job, queue.get(job) or (accounting or {}).get(job), persist)

    def _left_queue(self, s: CellStatus, job: str, record: dict[str, str] | None, persist: bool) -> None:
        """A job squeue no longer lists, while its cell says queued or running."""
        fresh = read_status(self.spec, [s.cell])[0]  # squeue can lag the job's own last write
        if not fresh.status.active:
            s.status, s.state = fresh.status, fresh.state
            return
        state = (record or {}).get("state", "")
        if state in ON_ITS_WAY:
            return  # accounting still sees it on its way: squeue's view is late
        if not state:
            age = heartbeat_age(s.run.read_heartbeat())
            if s.status is Status.RUNNING and age is not None and age < HEARTBEAT_STALE_S:
                return  # accounting is off or late, and the trainer beat a moment ago
            why = f"SLURM job {job} left the queue without a result and with no record of how it ended"
            if s.status is Status.QUEUED:  # it never started: nothing to charge
                self._end(s, Status.INTERRUPTED, "vanished", f"{why}, before it started", persist)
            else:
                self._end(s, Status.FAILED, "killed", why, persist)
            return
        status, why = ENDED.get(state, (Status.FAILED, "killed"))
        if state == "COMPLETED":
            reason = f"SLURM job {job} completed but the cell recorded no end (its process was killed?)"
        else:
            reason = f"SLURM job {job} ended {state}" + (" before it started" if s.status is Status.QUEUED else "")
        self._end(s, status, why, reason, persist)

    def _end(self, s: CellStatus, status: Status, why: str, reason: str, persist: bool) -> None:
        beat = s.run.read_heartbeat()

        def edit(state: dict[str, Any]) -> None:
            close_dead_attempt(state, beat, why)
            if status is Status.FAILED:
                state["failures"] = state.get("failures", 0) + 1
            state.update(status=status.value, error=None if status is Status.QUEUED else reason)
        s.edit(reason, edit, persist)

    def _find_submissions(self, statuses: list[CellStatus], persist: bool) -> None:
        """Cells left `submitting` by a runner that died around sbatch: found by their job name, or handed back."""
        names = sorted({(s.state.get("submission") or {}).get("name", "") for s in statuses} - {""})
        queue = squeue(names=names) if names else {}
        accounting = sacct(names=names) if names else {}
        for s in statuses:
            sub = s.state.get("submission") or {}
            found = {job: info for source in (queue or {}, accounting or {}) for job, info in source.items()
                     if info.get("name") == sub.get("name")}
            job = _job_of(found, sub.get("index", 0), sub.get("size", 1))
            was = Status(sub.get("was") or Status.NEW.value)
            if job and self._has_task(job):
                s.move(Status.QUEUED, f"its submission was found: SLURM job {job}", persist, job_id=job,
                       submission=None)
            elif job:  # submitit hands a job its task after sbatch returns: the runner died in between
                if persist:
                    self.cancel_jobs([job])
                s.move(was, f"its SLURM job {job} was submitted but never given its task (its runner died after "
                       f"sbatch): cancelled, and the cell handed back", persist, submission=None)
            elif queue is not None and accounting is not None:
                s.move(was, "its submission never reached the cluster: handed back", persist, submission=None)
            else:
                s.note = "submitting: squeue/sacct do not answer, so whether its job exists is not known yet"

    def _has_task(self, job: str) -> bool:
        """Whether submitit gave the job its pickled task (it does so right after sbatch returns the job id)."""
        return (study_dir(self.spec).resolve() / ".submitit" / job / f"{job}_submitted.pkl").exists()

    # --- waiting and cancelling ----------------------------------------------------------------------------------

    def wait(self, statuses: list[CellStatus], interrupts: Interrupts, poll_s: float = 2.0) -> list[str]:
        """Until every cell here has ended: progress, squeue's reasons for pending cells; a cell that cannot start is
        cancelled and failed, a held one reported and no longer waited for."""
        from tqdm import tqdm
        cells = [s.cell for s in statuses]
        bar = tqdm(total=len(cells), desc=f"{self.spec.name} (waiting)", unit="cell", dynamic_ncols=True)
        problems: list[str] = []
        held: set[str] = set()
        while True:
            interrupts.check()
            current = read_status(self.spec, cells)
            self.reconcile([s for s in current if s.status.active], persist=True)
            for s in current:
                reason = _pending_reason(s)
                if reason in NEVER_STARTS:
                    self.cancel([s])
                    self._end(s, Status.FAILED, "cancelled", f"SLURM job {s.job_ids[-1]} can never start: squeue "
                              f"says {reason} (the request does not fit the partition); it was cancelled", True)
                    problems.append(f"{s.cell.run_id}: {s.error}")
                elif reason in HELD and s.cell.run_id not in held:
                    held.add(s.cell.run_id)
                    problems.append(f"{s.cell.run_id}: SLURM job {s.job_ids[-1]} is held ({reason}); release it with "
                                    f"`scontrol release {s.job_ids[-1]}` and wait again")
            waiting = [s for s in current if s.status.active and s.cell.run_id not in held]
            bar.update(len(cells) - len(waiting) - bar.n)
            notes = sorted({s.note.split(") ")[0] + ")" for s in waiting if s.note and "(" in (s.note or "")})
            bar.set_postfix_str("; ".join(notes)[:80], refresh=True)
            if not waiting:
                break
            time.sleep(poll_s)
        bar.close()
        sys.stdout.flush()
        return problems

    def cancel(self, statuses: list[CellStatus]) -> None:
        self.cancel_jobs([s.job_ids[-1] for s in statuses if s.job_ids])

    @staticmethod
    def cancel_jobs(jobs: list[str]) -> None:
        if jobs:
            subprocess.run(["scancel", *jobs], capture_output=True, timeout=60)


def _pending_reason(s: CellStatus) -> str | None:
    if s.status is not Status.QUEUED or not s.note or "pending (" not in s.note:
        return None
    return s.note.rsplit("(", 1)[1].rstrip(")")


def _job_of(found: dict[str, dict[str, str]], index: int, size: int) -> str | None:
    """The job id of array task `index` among the jobs of one submission (a one-cell chunk is a plain job)."""
    if not found:
        return None
    if size == 1:
        return next(iter(found))
    array = next(iter(found)).split("_")[0]
    return f"{array}_{index}"

