"""Where a run executes: device choice, threads, seeding, and the facts recorded with every result."""
from __future__ import annotations

import os
import platform
import random
import socket
import subprocess
from pathlib import Path
from typing import Any

import torch

PACKAGE_ROOT = Path(__file__).resolve().parent.parent


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


def code_version() -> dict[str, Any]:
    """The git commit of the code that runs (a study's snapshot records its own through TOKENMIX_CODE_VERSION)."""
    if os.environ.get("TOKENMIX_CODE_VERSION"):
        commit, _, dirty = os.environ["TOKENMIX_CODE_VERSION"].partition("+")
        return {"commit": commit, "dirty": dirty == "dirty"}
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PACKAGE_ROOT, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=PACKAGE_ROOT,
                                capture_output=True, text=True, timeout=10, check=True).stdout
        return {"commit": commit, "dirty": bool(status.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


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
    }
