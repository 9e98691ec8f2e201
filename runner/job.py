"""What a job runs: one cell, from its run directory. The same callable serves every executor.

For SLURM it is a submitit checkpointable: on preemption or at the time limit submitit calls `checkpoint`, which
requeues the same job; the training harness then resumes from the cell's last epoch checkpoint. Whether the signal
meant a preemption or the time limit is decided from SLURM's own view of the job (its time left), not from
submitit's guess, which takes every signal after min(0.8 T, T - 10 min) for a time limit: with a 10-minute limit,
every preemption would use up a time-limit requeue.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any, Callable

from harness.attempt import never
from harness.config import resolve
from harness.plugins import import_plugins
from harness.records import RunDir, read_json
from harness.share import DeviceShare
from harness.world import SOLO, World


class CellJob:
    def __init__(self, run_dir: str | Path, signal_delay_s: int = 120, max_num_timeout: int = 3):
        self.run_dir = str(run_dir)
        self.signal_delay_s, self.max_num_timeout = signal_delay_s, max_num_timeout
        self.requeue_reason: str | None = None

    def __call__(self, stop: Callable[[], bool] = never, world: World | None = None) -> str:
        """Train the cell as `world`'s rank (None: as the SLURM job's task says); the cell's status, or "" on the
        ranks other than 0."""
        from harness.train import train  # imported in the job, so that pickling the job stays light
        world = world or slurm_world()
        run = RunDir(self.run_dir)
        stored = read_json(run.config)
        if stored is None:
            raise FileNotFoundError(f"{run.config} is missing: the runner writes it before submitting the cell")
        # plugins that register the study's extra mixers or datasets, beside its study file; part of the source hash
        import_plugins(stored.get("imports", []), stored.get("import_paths", []))
        cfg = resolve(stored["config"], path=str(run.config))
        if cfg.run_id != stored["run_id"]:
            raise RuntimeError(f"{run.config} resolves to run {cfg.run_id}, not {stored['run_id']}: the config "
                               f"schema changed since submission")
        if not world.main:  # writes nothing, not even to the log
            train(cfg, run.path, log=lambda line: None, stop=stop, world=world)
            return ""
        with open(run.log, "a", buffering=1) as log:
            def emit(line: str) -> None:
                print(line, flush=True)
                log.write(line + "\n")
            result = train(cfg, run.path, log=emit, stop=stop, job_id=slurm_job_id(),
                           requeued=lambda: self.requeue_reason, world=world, share=DeviceShare.from_env())
        return str(result["status"])

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """submitit's hook on SLURM's warning signal: requeue the same cell (it resumes from its own checkpoint),
        unless the time limit has been hit more than run.max_num_timeout times."""
        import submitit
        self.requeue_reason = requeue_reason([self.run_dir], self.signal_delay_s, self.max_num_timeout)
        if self.requeue_reason is None:
            return None  # submitit then ends the job, and the harness records the failure
        return submitit.helpers.DelayedSubmission(CellJob(self.run_dir, self.signal_delay_s, self.max_num_timeout))


def slurm_world() -> World:
    """This SLURM task's rank in its job (one process, unless the job runs several tasks: a data-parallel cell)."""
    if os.environ.get("SUBMITIT_EXECUTOR") != "slurm" or int(os.environ.get("SLURM_NTASKS", "1")) <= 1:
        return SOLO
    import submitit
    # every task sees the node's GPUs (device_of picks cuda:LOCAL_RANK); the rendezvous is the first node
    submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
    return World.from_env()


def requeue_reason(run_dirs: list[str], signal_delay_s: int, max_num_timeout: int) -> str | None:
    """Why SLURM's warning signal came (preempted, time limit), or None where a cell has used up its time-limit
    requeues (run.max_num_timeout): the job then ends at its limit."""
    if not _near_time_limit(signal_delay_s):
        return "preempted"
    limits = [sum(a.get("why") == "time limit" for a in RunDir(d).read_state().get("attempts_log") or [])
              for d in run_dirs]
    return None if max(limits, default=0) >= max_num_timeout else "time limit"


def slurm_job_id() -> str | None:
    if "SLURM_ARRAY_JOB_ID" in os.environ:
        return f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ.get("SLURM_JOB_ID")


def _seconds(text: str) -> float | None:
    """squeue's time format ([days-]hours:minutes:seconds, or fewer fields) in seconds; None for UNLIMITED."""
    if not text or not text[0].isdigit():
        return None
    days, _, clock = text.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0)
    return (int(days or 0) * 24 + parts[0]) * 3600 + parts[1] * 60 + parts[2]


def _near_time_limit(signal_delay_s: int) -> bool:
    """Whether this job is within its warning time of its time limit, by SLURM's own clock (squeue's time left).
    Where squeue cannot say, the signal is taken for the time limit (the cautious answer: it is counted)."""
    try:
        out = subprocess.run(["squeue", "-h", "-j", os.environ.get("SLURM_JOB_ID", ""), "-o", "%L"],
                             capture_output=True, text=True, timeout=20)
        left = _seconds(out.stdout.strip()) if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return True
    if left is None:
        return out.stdout.strip() != "UNLIMITED"
    return left <= signal_delay_s + 60
