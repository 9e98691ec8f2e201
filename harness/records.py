"""The files of one run directory, written so that a half-written file is never read as a result.

    config.json        the resolved config, run id, study cell, code version
    state.json         the run's place in the ledger: status, attempts (and a log of each), job ids, owner, error
    ledger.jsonl       every state.json ever written, one per line: the state is rebuilt from it if state.json is lost
    heartbeat.json     the training process's last sign of life (at least every HEARTBEAT_S seconds and every epoch)
    metrics.jsonl      one line per finished epoch
    result.json        the final record, written once the run has ended
    checkpoint.pt      the state after the last finished epoch (checkpoint.prev.pt: the one before)
    log.txt            what the run printed (when run by an executor)

JSON files are replaced atomically (a temporary file in the same folder, fsync, rename) and created with the
permissions the umask allows, so a lab group can read them. state.json is read-modified-written under an exclusive
lock, so the runner and a job updating it at once lose nothing.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import subprocess
import tempfile
import time
from datetime import datetime, timezone
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from .plugins import plugin_files
from .status import FINAL, Status, parse_status

if TYPE_CHECKING:
    from .config import RunConfig

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
# The packages whose source decides what a run computes: a change there makes earlier results stale.
SOURCE_PACKAGES = ("mixers", "harness")
HEARTBEAT_S = 30.0
# A heartbeat older than this means the process is gone (on a host where its pid cannot be checked).
HEARTBEAT_STALE_S = 4 * HEARTBEAT_S


UNWRITABLE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})


def unwritable(error: BaseException) -> str | None:
    """One line when `error` says the results cannot be written (a full disk, a quota, a read-only or forbidden
    folder): a problem of the place, not of the cell, so it is never charged as a cell failure. None otherwise."""
    if isinstance(error, OSError) and error.errno in UNWRITABLE:
        return f"cannot write {error.filename or 'the results folder'}: {error.strerror}"
    return None


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@cache
def _file_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _file_mode())  # mkstemp makes 0600 files: follow the umask like any other file
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def atomic_write_json(path: Path, obj: Any) -> Path:
    return atomic_write_bytes(path, (json.dumps(obj, indent=1, default=str) + "\n").encode())


def read_json(path: Path) -> Any | None:
    """The file's JSON, or None if it does not exist (a JSON error propagates: never guess)."""
    try:
        with open(path, "rb") as f:
            return json.loads(f.read())
    except FileNotFoundError:
        return None


def append_line(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line and sync it. A line torn by a crash has no newline, and readers skip it."""
    with open(path, "a") as f:
        f.write(json.dumps(record, default=str) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_lines(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """(records, problems) of a JSON-lines file: complete lines that do not parse are problems; a torn last line
    (no newline: a writer died or is writing) is skipped silently."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return [], []
    except (OSError, UnicodeDecodeError) as e:
        return [], [f"{path.name}: unreadable ({e})"]
    lines = text.split("\n")
    records, problems = [], []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError(f"expected an object, got {type(record).__name__}")
            records.append(record)
        except ValueError as e:
            if number < len(lines):  # a newline follows: a complete line that is damaged
                problems.append(f"{path.name} line {number}: {e}")
    return records, problems


def new_state() -> dict[str, Any]:
    return {"status": Status.NEW.value, "attempts": 0, "failures": 0, "attempts_log": [], "job_ids": [],
            "error": None, "last_epoch": None}


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    config = property(lambda self: self.path / "config.json")
    state = property(lambda self: self.path / "state.json")
    ledger = property(lambda self: self.path / "ledger.jsonl")
    heartbeat = property(lambda self: self.path / "heartbeat.json")
    metrics = property(lambda self: self.path / "metrics.jsonl")
    result = property(lambda self: self.path / "result.json")
    checkpoint = property(lambda self: self.path / "checkpoint.pt")
    previous_checkpoint = property(lambda self: self.path / "checkpoint.prev.pt")
    log = property(lambda self: self.path / "log.txt")
    lock = property(lambda self: self.path / ".lock")

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
        """state.json; if it is damaged, the last good state of the ledger, with `damaged` saying what happened.
        A run with neither is new."""
        try:
            state = read_json(self.state)
            if state is not None and not (isinstance(state, dict) and parse_status(state.get("status"))):
                raise ValueError("no valid status")
            if state is not None:
                return {**new_state(), **state}
            problem = None
        except (OSError, ValueError) as e:  # ValueError: JSON and Unicode errors
            problem = f"state.json is unreadable ({type(e).__name__}: {e})"
        entries, _ = read_lines(self.ledger)
        good = [e for e in entries if parse_status(e.get("status"))]
        if good:
            state = {**new_state(), **good[-1]}
            return {**state, "damaged": f"{problem}; recovered from ledger.jsonl" if problem else
                    "state.json is missing; recovered from ledger.jsonl"}
        return {**new_state(), "damaged": problem} if problem else new_state()

    def edit_state(self, event: str, edit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        """Read-modify-write state.json under the run's state lock; the new state is appended to the ledger first."""
        with self._locked():
            state = self.read_state()
            state.pop("damaged", None)  # written out whole again: repaired
            edit(state)
            state.update(event=event, updated=now())
            append_line(self.ledger, state)
            atomic_write_json(self.state, state)
            return state

    def update_state(self, event: str, **changes: Any) -> dict[str, Any]:
        """Merge `changes` into state.json; `job_id=` appends to the job ids."""
        def edit(state: dict[str, Any]) -> None:
            job_id = changes.pop("job_id", None)
            if job_id is not None and job_id not in state["job_ids"]:
                state["job_ids"].append(job_id)
            state.update({k: v.value if isinstance(v, Status) else v for k, v in changes.items()})
        return self.edit_state(event, edit)

    def history(self) -> list[dict[str, Any]]:
        """Every state this run went through (the ledger), oldest first."""
        return read_lines(self.ledger)[0]

    def final_result(self, run_id: str) -> dict[str, Any] | None:
        """result.json if it is a finished (done or diverged) record of this run; None otherwise, damaged included."""
        try:
            result = read_json(self.result)
        except (OSError, ValueError):
            return None
        if isinstance(result, dict) and result.get("run_id") == run_id and parse_status(result.get("status")) in FINAL:
            return result
        return None

    def damage(self) -> list[str]:
        """Run files that exist but do not parse (state.json, result.json, metrics.jsonl): named in --status."""
        problems = []
        for path in (self.state, self.result, self.config, self.heartbeat):
            try:
                read_json(path)
            except (OSError, ValueError) as e:
                problems.append(f"{path.name} is unreadable ({type(e).__name__}: {e})")
        problems += read_lines(self.metrics)[1]
        return problems

    def read_heartbeat(self) -> dict[str, Any] | None:
        try:
            beat = read_json(self.heartbeat)
        except (OSError, ValueError):
            return None
        return beat if isinstance(beat, dict) else None

    def write_metrics(self, history: list[dict[str, Any]]) -> None:
        """Rewrite metrics.jsonl from the epochs so far (on resume, it matches the checkpoint exactly)."""
        atomic_write_bytes(self.metrics, "".join(json.dumps(m) + "\n" for m in history).encode())

    def append_metrics(self, record: dict[str, Any]) -> None:
        append_line(self.metrics, record)

    def read_metrics(self) -> list[dict[str, Any]]:
        """Every complete line; a torn or damaged line is left out."""
        return read_lines(self.metrics)[0]


def heartbeat_age(beat: dict[str, Any] | None) -> float | None:
    """Seconds since the heartbeat was written, or None without one."""
    if not beat or not isinstance(beat.get("unix"), (int, float)):
        return None
    return time.time() - beat["unix"]


class ConfigMismatchError(RuntimeError):
    """The run directory already holds a run of a different config."""


def _source_files(extra: tuple[str, ...] = ()) -> list[Path]:
    files = sorted(p for pkg in SOURCE_PACKAGES for p in (PACKAGE_ROOT / pkg).rglob("*.py"))
    return files + [Path(p) for p in (*plugin_files(), *extra)]


def source_hash(extra: tuple[str, ...] = ()) -> str:
    """12 hex digits of the source that decides what a run computes (the model and harness packages, plus the study's
    plugin files located in this process): the same source, the same results; a git commit that changes only
    documentation changes nothing."""
    digest = hashlib.sha256()
    for path in _source_files(extra):
        name = str(path.relative_to(PACKAGE_ROOT)) if path.is_relative_to(PACKAGE_ROOT) else path.name
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=PACKAGE_ROOT, capture_output=True, text=True, timeout=10,
                          check=True).stdout


@cache
def _git_version() -> dict[str, Any]:
    """commit, dirty and a hash of the uncommitted changes to tracked source, from git (a study's snapshot, which is
    no checkout, gets them from TOKENMIX_CODE_VERSION, set by the runner at submission)."""
    if os.environ.get("TOKENMIX_CODE_VERSION"):
        return json.loads(os.environ["TOKENMIX_CODE_VERSION"])
    try:
        commit = _git("rev-parse", "HEAD").strip()
        diff = _git("diff", "HEAD", "--", *SOURCE_PACKAGES, "runner", "analysis")
        dirty = bool(_git("status", "--porcelain", "--untracked-files=no").strip())
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None, "diff": None}
    return {"commit": commit, "dirty": dirty, "diff": hashlib.sha256(diff.encode()).hexdigest()[:12] if diff else None}


def code_version(extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """The code that runs: git commit, whether the checkout is dirty, a hash of the uncommitted source changes, and
    `source`, the hash that tells whether two runs ran the same code."""
    return {**_git_version(), "source": source_hash(extra)}


def code_label(code: dict[str, Any] | None) -> str:
    """A short human name of a code version: `a1b2c3d4e5f6+dirty (source 0123456789ab)`."""
    if not code:
        return "unknown code"
    commit = (code.get("commit") or "no commit")[:12]
    return f"{commit}{'+dirty' if code.get('dirty') else ''} (source {code.get('source') or '?'})"


def write_config(run: RunDir, cfg: RunConfig, extra: dict[str, Any] | None = None) -> None:
    """config.json: written once; a directory holding another config is refused, never overwritten."""
    try:
        existing = read_json(run.config)
    except ValueError:
        existing = None  # damaged: rewritten below (the run id in the path and in state.json still name the run)
    if existing is not None and existing.get("run_id") != cfg.run_id:
        raise ConfigMismatchError(f"{run.path} holds run {existing.get('run_id')}, not {cfg.run_id}: use another "
                                  f"output directory")
    if existing is None:
        atomic_write_json(run.config, {"run_id": cfg.run_id, **(extra or {}), "config": cfg.to_dict(),
                                       "code": code_version()})
