"""Cells that share one device (`run.cells_per_gpu`), and how each still measures its speed alone.

Per device, two lock files in a machine-local folder ($TOKENMIX_SHARE_DIR, keyed by the GPU's UUID, or `cpu`):
- trainers hold LOCK_SH on `<key>.train.lock` while they train;
- a cell that measures (the execution-setting probe, the final throughput) takes LOCK_EX on `<key>.bench.lock`
  (one measurer at a time; trainers seeing it held know to pause), then LOCK_EX on `<key>.train.lock`, which it
  gets once every trainer has paused; it measures, then releases both.
- trainers call `pause_point()` once per step: a non-blocking LOCK_SH on the bench lock; if a measurer holds it,
  the trainer finishes its queued GPU work, lets go of the train lock, waits on the bench lock until the measurer
  is done, and takes the train lock again.
flock locks end with their process, so a measurer that is killed never blocks the others.

Each hold is recorded with wall-clock times taken inside it (after the lock is granted, before it is released), so
result.json can show that no other cell trained while a cell measured: `exclusive` and `trained` intervals.
A cell that does not share gets NO_SHARING, whose methods do nothing.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

if TYPE_CHECKING:  # torch is imported where a device is used: the runner pickles jobs that hold a DeviceShare
    import torch

SHARE_ENV = "TOKENMIX_SHARE"          # cells per device, set by the executor for cells that share one
SHARE_DIR_ENV = "TOKENMIX_SHARE_DIR"  # where the lock files live (machine-local)
MPS_ENV = "TOKENMIX_MPS"              # "1" when the executor runs a CUDA MPS daemon for the device


def default_share_dir() -> Path:
    return Path(tempfile.gettempdir()) / f"tokenmix-share-{os.getuid()}"


def device_key(device: torch.device) -> str:
    """The lock files' name: the same physical GPU has the same key in every process (whatever its index there)."""
    if device.type == "cuda":
        import torch
        return f"gpu-{torch.cuda.get_device_properties(device).uuid}"
    return device.type


class DeviceShare:
    """The protocol for one cell among `cells` sharing its device."""

    def __init__(self, cells: int, folder: Path, mps: bool = False):
        self.cells, self.folder, self.mps = cells, folder, mps
        self.device: torch.device | None = None              # set by training()
        self._bench = self._train = -1                      # lock file descriptors while training()
        self._since: float | None = None                    # when this cell last got the train lock (shared)
        self.trained: list[tuple[float, float]] = []        # [from, to] wall-clock, while holding it shared
        self.exclusive_log: list[dict[str, Any]] = []       # {what, from, to} while holding it exclusively
        self.pauses = 0

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> DeviceShare:
        """The executor's word (environment variables), read once per cell."""
        env = dict(os.environ if env is None else env)
        cells = int(env.get(SHARE_ENV) or 1)
        if cells <= 1:
            return NO_SHARING
        return cls(cells, Path(env.get(SHARE_DIR_ENV) or default_share_dir()), env.get(MPS_ENV) == "1")

    # --- the trainer's side ------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def training(self, device: torch.device) -> Iterator[None]:
        """Hold the device (shared with the other trainers) for the block: the whole training run."""
        self.device = device
        self.folder.mkdir(parents=True, exist_ok=True)
        key = self.folder / device_key(device)
        self._bench = os.open(f"{key}.bench.lock", os.O_RDWR | os.O_CREAT, 0o666)
        self._train = os.open(f"{key}.train.lock", os.O_RDWR | os.O_CREAT, 0o666)
        try:
            self._wait_for_measurer()
            self._take_shared()
            yield
        finally:
            if self._since is not None:
                self._release_shared()
            os.close(self._train)  # closing releases whatever flock is left
            os.close(self._bench)
            self._bench = self._train = -1

    def pause_point(self) -> None:
        """Once per training step: let a waiting measurer have the device alone. Two syscalls when none waits."""
        try:
            fcntl.flock(self._bench, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:  # a measurer holds the bench lock: pause until it is done
            self.pauses += 1
            self._release_shared()
            self._wait_for_measurer()
            self._take_shared()
            return
        fcntl.flock(self._bench, fcntl.LOCK_UN)

    def steps(self, stop: Callable[[], bool]) -> Callable[[], bool]:
        """The trainer's per-step `stop()` callback, with a pause point before it."""
        def stop_or_pause() -> bool:
            self.pause_point()
            return stop()
        return stop_or_pause

    # --- the measurer's side -----------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def exclusive(self, what: str) -> Iterator[None]:
        """Have the device alone for the block (no other sharing cell trains meanwhile); `what` names it in the log."""
        held = self._since is not None
        if held:
            self._release_shared()
        fcntl.flock(self._bench, fcntl.LOCK_EX)   # one measurer at a time; trainers now pause at their next step
        try:
            fcntl.flock(self._train, fcntl.LOCK_EX)  # granted once every trainer has paused
            start = time.time()
            try:
                yield
                self._sync()
            finally:
                self.exclusive_log.append({"what": what, "from": start, "to": time.time()})
                fcntl.flock(self._train, fcntl.LOCK_UN)
        finally:
            fcntl.flock(self._bench, fcntl.LOCK_UN)
        if held:
            self._take_shared()

    def record(self) -> dict[str, Any] | None:
        """result.json's `execution.sharing`: how the device was shared and this attempt's lock holds."""
        return {"cells_per_device": self.cells, "mps": self.mps,
                "throughput": "measured alone: no other sharing cell trained meanwhile (see exclusive)",
                "train_img_s": "the per-epoch figures were measured while sharing the device",
                "pauses": self.pauses, "exclusive": self.exclusive_log, "trained": [list(t) for t in self.trained]}

    # --- the locks ---------------------------------------------------------------------------------------------------

    def _wait_for_measurer(self) -> None:
        fcntl.flock(self._bench, fcntl.LOCK_SH)  # granted once no measurer holds it
        fcntl.flock(self._bench, fcntl.LOCK_UN)

    def _take_shared(self) -> None:
        fcntl.flock(self._train, fcntl.LOCK_SH)
        self._since = time.time()

    def _release_shared(self) -> None:
        self._sync()  # kernels still queued would otherwise run during the measurement
        assert self._since is not None
        self.trained.append((self._since, time.time()))
        self._since = None
        fcntl.flock(self._train, fcntl.LOCK_UN)

    def _sync(self) -> None:
        if self.device is not None and self.device.type == "cuda":
            import torch
            torch.cuda.synchronize(self.device)


class _NoSharing(DeviceShare):
    """A cell alone on its device: nothing to coordinate, nothing paid per step."""

    def __init__(self) -> None:
        super().__init__(1, default_share_dir())

    @contextlib.contextmanager
    def training(self, device: torch.device) -> Iterator[None]:
        yield

    def pause_point(self) -> None:
        pass

    def steps(self, stop: Callable[[], bool]) -> Callable[[], bool]:
        return stop

    @contextlib.contextmanager
    def exclusive(self, what: str) -> Iterator[None]:
        yield

    def record(self) -> dict[str, Any] | None:
        return None


NO_SHARING: DeviceShare = _NoSharing()
