"""What a job runs: one cell, from its run directory. The same callable serves every executor.

For SLURM it is a submitit checkpointable: on preemption or at the time limit submitit calls `checkpoint`, which
requeues the same job; the training harness then resumes from the cell's last epoch checkpoint.
"""
from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

from harness.config import resolve
from harness.records import RunDir, read_json


class CellJob:
    def __init__(self, run_dir: str | Path):
        self.run_dir = str(run_dir)

    def __call__(self) -> str:
        from harness.train import train  # imported in the job, so that pickling the job stays light
        run = RunDir(self.run_dir)
        stored = read_json(run.config)
        if stored is None:
            raise FileNotFoundError(f"{run.config} is missing: the runner writes it before submitting the cell")
        for module in stored.get("imports", []):  # plugins that register the study's extra mixers or datasets
            importlib.import_module(module)
        cfg = resolve(stored["config"], path=str(run.config))
        if cfg.run_id != stored["run_id"]:
            raise RuntimeError(f"{run.config} resolves to run {cfg.run_id}, not {stored['run_id']}: the config "
                               f"schema changed since submission")
        job_id = _slurm_job_id()
        if job_id:
            run.update_state(job_id=job_id)
        with open(run.log, "a", buffering=1) as log:
            def emit(line: str) -> None:
                print(line, flush=True)
                log.write(line + "\n")
            result = train(cfg, run.path, log=emit)
        return result["status"]

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """submitit's requeue hook: run the same cell again; it resumes from its own checkpoint."""
        import submitit
        return submitit.helpers.DelayedSubmission(CellJob(self.run_dir))


def _slurm_job_id() -> str | None:
    if "SLURM_ARRAY_JOB_ID" in os.environ:
        return f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ.get("SLURM_JOB_ID")
