"""What an executor gives cells that share a device (`run.cells_per_gpu` > 1): the environment that tells each one
so (harness/share.py reads it), and a CUDA MPS daemon for the GPUs where the machine has one.

MPS lets the kernels of the processes that share a GPU run concurrently instead of time-sliced. The daemon is owned
like any child: started before the cells, told to quit after them. It is untested here (no GPU on the CI machine);
where `nvidia-cuda-mps-control` is missing, or no GPU is used, cells share by time-slicing and record `mps: false`.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from typing import Callable

from harness.share import MPS_ENV, SHARE_ENV


def sharing_env(cells_per_device: int) -> dict[str, str]:
    """The environment of a cell among `cells_per_device` on one device; empty for a cell alone."""
    return {SHARE_ENV: str(cells_per_device)} if cells_per_device > 1 else {}


class Mps:
    """A CUDA MPS control daemon with its own pipe and log folders (so it never meets another user's daemon)."""

    def __init__(self) -> None:
        self.control = shutil.which("nvidia-cuda-mps-control")
        self.env: dict[str, str] = {}

    def start(self, gpus: int, cells_per_gpu: int, log: Callable[[str], None]) -> dict[str, str]:
        """The workers' environment for the daemon (empty where none runs)."""
        if cells_per_gpu <= 1 or not gpus:
            return {}
        if self.control is None:
            log("CUDA MPS is not available here (no nvidia-cuda-mps-control): the cells sharing a GPU are "
                "time-sliced; their results record mps: false")
            return {}
        folder = tempfile.mkdtemp(prefix="tokenmix-mps-")  # short: the pipe is a Unix socket (108-byte paths)
        env = {"CUDA_MPS_PIPE_DIRECTORY": f"{folder}/pipe", "CUDA_MPS_LOG_DIRECTORY": f"{folder}/log"}
        for path in env.values():
            os.makedirs(path)
        started = subprocess.run([self.control, "-d"], env={**os.environ, **env}, capture_output=True, text=True,
                                 timeout=60)
        if started.returncode != 0:
            log(f"CUDA MPS did not start ({' '.join((started.stderr or started.stdout).split())}): the cells "
                f"sharing a GPU are time-sliced; their results record mps: false")
            return {}
        self.env = env
        return {**env, MPS_ENV: "1"}

    def stop(self) -> None:
        if self.control and self.env:
            subprocess.run([self.control], input="quit\n", env={**os.environ, **self.env}, capture_output=True,
                           text=True, timeout=60)
            self.env = {}
