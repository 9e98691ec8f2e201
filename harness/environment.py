"""Where a run executes: device choice, threads, seeding, and the facts recorded with every result."""
from __future__ import annotations

import os
import platform
import random
import socket
from typing import Any

import torch


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"system.device is {name!r} but torch sees no CUDA device (torch {torch.__version__})")
    return device


def set_threads(threads: int | None) -> None:
    """CPU threads: the config's, else SLURM's cpus-per-task (task/affinity pins us to them), else torch's default."""
    n = threads or int(os.environ.get("SLURM_CPUS_PER_TASK", 0) or 0)
    if n:
        torch.set_num_threads(n)


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    else:
        torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True


def environment(device: torch.device) -> dict[str, Any]:
    on_gpu = device.type == "cuda"
    return {
        "torch": torch.__version__,
        "cuda": torch.version.cuda if on_gpu else None,
        "cudnn": torch.backends.cudnn.version() if on_gpu else None,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if on_gpu else (platform.processor() or platform.machine()),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "hostname": socket.gethostname(),
        "python": platform.python_version(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "code_path": os.path.dirname(os.path.dirname(os.path.abspath(__file__))),  # a study's snapshot, on a cluster
    }
