"""The files of one run directory, written so that a half-written file is never read as a result.

    config.json    the resolved config, run id, study cell, code version and environment
    state.json     status, attempts, job ids, last epoch, error: updated by the runner and by the run itself
    metrics.jsonl  one line per finished epoch
    result.json    the final record, written once the run has ended
    checkpoint.pt  the state after the last finished epoch
    log.txt        what the run printed (when run by an executor)

JSON files are replaced atomically (write a temporary file in the same folder, fsync, rename). state.json is
read-modified-written under an exclusive lock, so the runner and a job updating it at once lose nothing.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:
    from .config import RunConfig

PACKAGE_ROOT = Path(__file__).resolve().parent.parent



def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1, default=str) + "\n").encode())


def read_json(path: Path) -> Any | None:
    """The file's JSON, or None if it does not exist (a JSON error propagates: never guess)."""
    try:
        with open(path, "rb") as f:
            return json.loads(f.read())
    except FileNotFoundError:
        return None


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    config = property(lambda self: self.path / "config.json")
    state = property(lambda self: self.path / "state.json")
    metrics = property(lambda self: self.path / "metrics.jsonl")
    result = property(lambda self: self.path / "result.json")
    checkpoint = property(lambda self: self.path / "checkpoint.pt")
    log = property(lambda self: self.path / "log.txt")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / ".state.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def read_state(self) -> dict[str, Any]:
        return read_json(self.state) or {"status": "pending", "attempts": 0, "job_ids": [], "error": None,
                                         "last_epoch": None}

    def update_state(self, **changes: Any) -> dict[str, Any]:
        """Merge `changes` into state.json; `job_id=` appends to the job ids, `event=` to the history."""
        with self._locked():
            state = self.read_state()
            if "job_id" in changes:
                job_id = changes.pop("job_id")
                if job_id not in state["job_ids"]:
                    state["job_ids"].append(job_id)
            if "event" in changes:
                state.setdefault("history", []).append({"time": now(), "event": changes.pop("event")})
            state.update(changes, updated=now())
            atomic_write_json(self.state, state)
            return state

    def write_metrics(self, history: list[dict[str, Any]]) -> None:
        """Rewrite metrics.jsonl from the epochs so far (on resume, it matches the checkpoint exactly)."""
        atomic_write_bytes(self.metrics, "".join(json.dumps(m) + "\n" for m in history).encode())

    def append_metrics(self, record: dict[str, Any]) -> None:
        with open(self.metrics, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def read_metrics(self) -> list[dict[str, Any]]:
        """Every complete line; a torn last line (a run killed mid-write) is left out."""
        try:
            lines = self.metrics.read_text().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            with contextlib.suppress(json.JSONDecodeError):
                out.append(json.loads(line))
        return out


class ConfigMismatchError(RuntimeError):
    """The run directory already holds a run of a different config."""


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


def write_config(run: RunDir, cfg: RunConfig, extra: dict[str, Any] | None = None) -> None:
    """config.json: written once; a directory holding another config is refused, never overwritten."""
    existing = read_json(run.config)
    if existing is not None and existing.get("run_id") != cfg.run_id:
        raise ConfigMismatchError(f"{run.path} holds run {existing.get('run_id')}, not {cfg.run_id}: use another "
                                  f"output directory")
    if existing is None:
        atomic_write_json(run.config, {"run_id": cfg.run_id, **(extra or {}), "config": cfg.to_dict(),
                                       "code": code_version()})
