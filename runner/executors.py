"""Where cells run: `local` (child processes on this machine), `slurm` (job arrays through submitit) or `debug`
(in this process, for a debugger). One registry; each executor takes the study and the cells it should run."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Callable

from mixers.registry import Registry

from harness.records import PACKAGE_ROOT, code_version

from .job import CellJob
from .spec import Cell, StudySpec
from .state import run_dir, study_dir

Executor = Callable[[StudySpec, list[Cell]], None]
EXECUTORS: Registry[Executor] = Registry("executor")
PACKAGES = ("mixers", "harness", "runner", "analysis")


def describe(cell: Cell) -> str:
    return " ".join(f"{k.split('.')[-1]}={v}" for k, v in cell.params.items())


def gpu_count() -> int:
    """GPUs visible here, without importing torch (nvidia-smi, narrowed by CUDA_VISIBLE_DEVICES)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(line.startswith("GPU ") for line in out.stdout.splitlines()) if out.returncode == 0 else 0


# --- local ---------------------------------------------------------------------------------------------------------

def _init_worker(slots: Any, threads: int, log_dir: str) -> None:
    """Runs first in each child: pin it to one GPU (or a share of the CPU threads) and send its output to a file."""
    gpu = slots.get()
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
    if threads:
        os.environ["OMP_NUM_THREADS"] = str(threads)
    log = open(os.path.join(log_dir, f"worker-{os.getpid()}.log"), "a", buffering=1)
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)


def _run_in_worker(run_path: str) -> tuple[str, str | None]:
    try:
        return CellJob(run_path)(), None
    except Exception as e:  # recorded in the cell's state and result by the harness; reported, never fatal here
        return "failed", "".join(traceback.format_exception(e))


@EXECUTORS.register("local")
def run_local(spec: StudySpec, cells: list[Cell]) -> None:
    """Cells in child processes, one per GPU at once (or `run.parallel`), with a progress bar over the study.

    The children live across cells, so torch is imported once per child, not once per cell."""
    import multiprocessing

    from tqdm import tqdm
    gpus = gpu_count()
    parallel = spec.run.parallel or max(gpus, 1)
    # CPU cells side by side share the cores (each torch would otherwise start a thread per core); 0: torch's default
    threads = max(1, (os.cpu_count() or 1) // parallel) if not gpus and parallel > 1 else 0
    ctx = multiprocessing.get_context("spawn")  # never fork a process that may hold CUDA or OpenMP state
    slots = ctx.Queue()
    for i in range(parallel):
        slots.put(i % gpus if gpus else None)
    log_dir = study_dir(spec) / ".local"
    log_dir.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=len(cells), desc=spec.name, unit="cell", dynamic_ncols=True)
    with ProcessPoolExecutor(parallel, mp_context=ctx, initializer=_init_worker,
                             initargs=(slots, threads, str(log_dir))) as pool:
        futures = {pool.submit(_run_in_worker, str(run_dir(spec, c).path)): c for c in cells}
        for future in as_completed(futures):
            cell = futures[future]
            try:
                status, error = future.result()
            except Exception as e:  # the child died (killed, out of memory): the cell is failed, the study goes on
                status, error = "failed", f"worker process died: {e!r}"
                run_dir(spec, cell).update_state(status="failed", error=error, event=error)
            last = error.strip().splitlines()[-1] if error else ""
            bar.write(f"{status:9s} {cell.run_id}  {describe(cell)}  {last}")
            bar.update()
    bar.close()


# --- debug ---------------------------------------------------------------------------------------------------------

@EXECUTORS.register("debug")
def run_debug(spec: StudySpec, cells: list[Cell]) -> None:
    """Cells one after another in this process: breakpoints work, and the first error propagates."""
    for cell in cells:
        print(f"debug: {cell.run_id}  {describe(cell)}", flush=True)
        CellJob(run_dir(spec, cell).path)()


# --- slurm ---------------------------------------------------------------------------------------------------------

def snapshot_code(spec: StudySpec) -> Path:
    """A copy of the toolkit's packages under results/<study>/.snapshot/<hash>, so that queued jobs run the code
    as it was at submission however the checkout changes meanwhile. Identical code reuses one snapshot."""
    files = sorted(p for pkg in PACKAGES for p in (PACKAGE_ROOT / pkg).rglob("*.py"))
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(PACKAGE_ROOT)).encode())
        digest.update(path.read_bytes())
    target = study_dir(spec).resolve() / ".snapshot" / digest.hexdigest()[:12]
    if not target.exists():
        tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
        for path in files:
            dest = tmp / path.relative_to(PACKAGE_ROOT)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)
        os.replace(tmp, target)
    return target


def slurm_executor(spec: StudySpec) -> Any:
    import submitit
    r = spec.run
    folder = study_dir(spec).resolve() / ".submitit"
    setup = list(r.setup)
    if r.snapshot:
        code = code_version()
        version = f"{code['commit']}{'+dirty' if code['dirty'] else ''}"
        snapshot = snapshot_code(spec)
        # `python -m` puts the working directory first on sys.path: the job must start inside the snapshot
        setup += [f"cd {snapshot}", f"export PYTHONPATH={snapshot}${{PYTHONPATH:+:$PYTHONPATH}}",
                  f"export TOKENMIX_CODE_VERSION={version}"]
    params: dict[str, Any] = dict(
        name=spec.name, timeout_min=r.timeout_min, cpus_per_task=r.cpus_per_task, mem_gb=r.mem_gb,
        tasks_per_node=1, nodes=1, stderr_to_stdout=True, slurm_array_parallelism=r.array_parallelism,
        slurm_setup=setup, slurm_signal_delay_s=r.signal_delay_s, slurm_additional_parameters=dict(r.sbatch))
    if r.gpus_per_task:
        params["gpus_per_node"] = r.gpus_per_task
    for key in ("partition", "account", "qos", "constraint"):
        if getattr(r, key):
            params[f"slurm_{key}"] = getattr(r, key)
    executor = submitit.AutoExecutor(folder=folder / "%j", cluster="slurm", slurm_max_num_timeout=r.max_num_timeout)
    executor.update_parameters(**params)
    return executor


@EXECUTORS.register("slurm")
def run_slurm(spec: StudySpec, cells: list[Cell]) -> None:
    """Cells as SLURM job arrays (split under the cluster's MaxArraySize), each a checkpointable job."""
    executor = slurm_executor(spec)
    size = spec.run.max_array_size
    for start in range(0, len(cells), size):
        chunk = cells[start:start + size]
        with executor.batch():
            jobs = [executor.submit(CellJob(run_dir(spec, c).path.resolve())) for c in chunk]
        for cell, job in zip(chunk, jobs):
            run_dir(spec, cell).update_state(job_id=job.job_id)
        if len(chunk) == 1:  # submitit sends a batch of one as a plain job
            print(f"submitted 1 cell as SLURM job {jobs[0].job_id}", flush=True)
        else:
            print(f"submitted {len(chunk)} cells as SLURM array {jobs[0].job_id.split('_')[0]} "
                  f"(at most {min(spec.run.array_parallelism, len(chunk))} at once)", flush=True)


def slurm_partitions() -> list[str] | None:
    """The cluster's partitions (sinfo), or None where sinfo cannot be asked."""
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%R"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return sorted(set(out.stdout.split())) if out.returncode == 0 else None


def wait_for_cells(spec: StudySpec, cells: list[Cell], poll_s: float = 2.0) -> None:
    """Block until none of `cells` is queued or running (reading their run files, reconciling lost jobs)."""
    from tqdm import tqdm

    from .state import ACTIVE, read_status, reconcile
    bar = tqdm(total=len(cells), desc=f"{spec.name} (waiting)", unit="cell", dynamic_ncols=True)
    while True:
        statuses = reconcile(spec, read_status(spec, cells))
        finished = sum(s.status not in ACTIVE for s in statuses)
        bar.update(finished - bar.n)
        if finished == len(cells):
            break
        time.sleep(poll_s)
    bar.close()
    sys.stdout.flush()
