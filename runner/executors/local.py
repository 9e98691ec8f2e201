"""`local`: cells in worker processes on this machine, one per GPU at once (or `run.parallel`, or `run.cells_per_gpu`
on each GPU, the CPU counting as one device). A data-parallel cell (run.tasks_per_node N) takes N GPUs, or N CPU
processes sharing the cores; its worker is rank 0 and starts the others (runner/ranks.py).

The runner owns its workers: they run in their own session (a Ctrl-C reaches the runner, which stops them in order),
and die with the runner however it ends (see runner/worker.py). A worker that dies (the kernel's OOM killer, a
SIGKILL) costs only the cell it was training, recorded as failed with why; cells it had not started go to another
worker and are never charged an attempt.
"""
from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from harness.attempt import close_dead_attempt
from harness.owner import Owner
from harness.records import HEARTBEAT_STALE_S, PACKAGE_ROOT, heartbeat_age
from harness.runlock import lock_is_held
from harness.status import Status

from ..interrupt import Interrupts
from ..sharing import Mps, sharing_env
from ..spec import Cell, StudyError
from ..state import CellStatus, read_status, run_dir, study_dir
from . import EXECUTORS, Executor

STOP_GRACE_S = 8.0       # after the first signal, workers have this long to end their cells (the 10 s bound)
MAX_SILENT_DEATHS = 3    # workers that die before finishing any cell: then something is wrong with the setup


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


def _signal_name(returncode: int | None) -> str:
    if returncode is not None and returncode < 0:
        name = signal.Signals(-returncode).name
        return f"killed by {name}" + (" (the kernel's out-of-memory killer sends it)" if name == "SIGKILL" else "")
    return f"exited with code {returncode}"


@dataclass
class Worker:
    process: subprocess.Popen
    log: Path
    cell: Cell | None = None
    finished: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def replies(self) -> IO[str]:
        assert self.process.stdout is not None
        return self.process.stdout

    def send(self, cell: Cell, path: Path, world_size: int) -> None:
        assert self.process.stdin is not None
        self.cell = cell
        self.process.stdin.write(json.dumps({"run_dir": str(path), "world_size": world_size}) + "\n")
        self.process.stdin.flush()

    def close(self) -> None:
        """No more cells: the worker ends when its current one does."""
        if self.process.stdin and not self.process.stdin.closed:
            try:
                self.process.stdin.close()
            except BrokenPipeError:
                pass


@EXECUTORS.register("local")
class LocalExecutor(Executor):
    name = "local"

    def __init__(self, spec: Any, where: str = "study"):
        super().__init__(spec, where)
        self.todo: list[Cell] = []
        self.share_env: dict[str, str] = {}  # what workers that share a device are told (runner/sharing.py)

    def check(self, cells: list[Cell]) -> None:
        r = self.spec.run
        if r.gpus_per_node and r.gpus_per_node > (have := gpu_count()):
            raise StudyError(f"{self.where}.run.gpus_per_node: {r.gpus_per_node} GPUs per cell, but this machine "
                             f"has {have}; valid: at most {have}, or 0 for CPU processes")

    def submit(self, cells: list[Cell], interrupts: Interrupts) -> None:
        owner = {**Owner.current().to_dict(), "executor": self.name, "role": "runner"}
        for cell in cells:
            run_dir(self.spec, cell).update_state(f"queued for the {self.name} executor of pid {owner['pid']}",
                                                  status=Status.QUEUED, owner=owner, error=None)
        self.todo = list(cells)

    # --- running the cells ---------------------------------------------------------------------------------------

    def _spawn(self, slot: int, gpus: int, threads: int) -> Worker:
        """Worker `slot`, with GPUs of its own (one per process of its cells) and `threads` per process."""
        log_dir = study_dir(self.spec) / ".local"
        log_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.share_env, "TOKENMIX_RUNNER_PID": str(os.getpid()),
               "PYTHONPATH": os.pathsep.join(filter(None, [str(PACKAGE_ROOT), os.environ.get("PYTHONPATH")]))}
        if gpus:
            world = self.spec.run.world_size
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str((slot * world + i) % gpus) for i in range(world))
        if threads:
            env["OMP_NUM_THREADS"] = str(threads)
        log = log_dir / f"worker-{slot}.log"
        with open(log, "a") as err:
            process = subprocess.Popen([sys.executable, "-m", "runner.worker"], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, stderr=err, env=env, text=True, bufsize=1,
                                       start_new_session=True)  # a terminal's Ctrl-C reaches the runner alone
        return Worker(process, log)

    def wait(self, statuses: list[CellStatus], interrupts: Interrupts) -> list[str]:
        """Run the cells this runner claimed, then wait for local cells other runners are training."""
        todo, self.todo = self.todo, []
        problems = self._run(todo, interrupts) if todo else []
        claimed = {c.run_id for c in todo}
        others = [s for s in statuses if s.cell.run_id not in claimed]
        while others:
            interrupts.check()
            self.reconcile(others, persist=True)
            others = [s for s in others if s.status.active]
            time.sleep(1.0)
        return problems

    def _run(self, cells: list[Cell], interrupts: Interrupts) -> list[str]:
        mps = Mps()
        try:
            return self._drive(cells, interrupts, mps)
        finally:  # the MPS daemon is ours: it ends with the cells, however they end
            mps.stop()

    def _drive(self, cells: list[Cell], interrupts: Interrupts, mps: Mps) -> list[str]:
        from tqdm import tqdm
        gpus, world, per_gpu = gpu_count(), self.spec.run.world_size, self.spec.run.cells_per_gpu
        # slot s: GPUs (s x world + rank) mod gpus; with cells_per_gpu N, N slots per GPU (world is then 1)
        parallel = min(self.spec.run.parallel or max(gpus // world, 1) * per_gpu, len(cells))
        # processes side by side on the CPU or on one GPU share the cores (each torch would otherwise start a thread
        # per core); 0: torch's own
        processes = parallel * world
        threads = max(1, (os.cpu_count() or 1) // processes) if (not gpus or per_gpu > 1) and processes > 1 else 0
        sharing = min(per_gpu, -(-parallel // max(gpus, 1)))  # what a device really holds: fewer cells, fewer sharers
        self.share_env = {**sharing_env(sharing), **mps.start(gpus, sharing, print)}
        pending = deque(cells)
        workers: dict[int, Worker] = {}
        selector = selectors.DefaultSelector()
        silent_deaths, problems, pending_stopped = 0, [], False
        bar = tqdm(total=len(cells), desc=self.spec.name, unit="cell", dynamic_ncols=True)

        def start(slot: int) -> None:
            worker = self._spawn(slot, gpus, threads)
            workers[slot] = worker
            selector.register(worker.replies, selectors.EVENT_READ, slot)

        def force() -> None:  # a second Ctrl-C: end every worker now and record its cell as interrupted
            for worker in workers.values():
                worker.process.kill()
            for worker in workers.values():
                worker.process.wait()
            self._settle(cells, Status.INTERRUPTED, "interrupted: the runner was stopped at once")
        interrupts.on_force(force)

        for slot in range(parallel):
            start(slot)
        stop_deadline: float | None = None
        while workers:
            if interrupts.requested and stop_deadline is None:
                stop_deadline = time.monotonic() + STOP_GRACE_S
                pending.clear()
                for worker in workers.values():
                    worker.close()
                    if worker.cell is not None:
                        worker.process.send_signal(signal.SIGTERM)
            if stop_deadline is not None and time.monotonic() > stop_deadline:
                force()
                break
            for worker in list(workers.values()):  # idle workers take the next cell
                if worker.cell is None:
                    if pending:
                        cell = pending.popleft()
                        worker.send(cell, run_dir(self.spec, cell).path.resolve(), world)
                    else:
                        worker.close()
            for key, _ in selector.select(timeout=0.5):
                slot = key.data
                worker = workers[slot]
                line = worker.replies.readline()
                if line:
                    reply = json.loads(line)
                    if reply.get("unwritable") and not pending_stopped:  # the disk, not the cell: stop handing out
                        problems.append(f"{reply['unwritable']}; the cells not finished are resumable: make room "
                                        f"(or fix the folder) and run the same command again")
                        pending.clear()
                        pending_stopped = True
                    cell, worker.cell = worker.cell, None
                    worker.finished += 1
                    last = (reply["error"] or "").strip().splitlines()[-1:] or [""]
                    bar.write(f"{reply['status']:11s} {cell.run_id}  {describe(cell)}  {last[0]}")
                    bar.update()
                    continue
                # end of the replies: the worker has ended (told to, or killed)
                selector.unregister(worker.replies)
                returncode = worker.process.wait()
                del workers[slot]
                if worker.cell is not None:
                    ended = self._lost(worker, returncode)
                    if ended is not None:
                        bar.write(f"{ended.value:11s} {worker.cell.run_id}  {describe(worker.cell)}  its worker "
                                  f"{_signal_name(returncode)}")
                        bar.update()
                    elif not interrupts.requested:
                        pending.appendleft(worker.cell)  # never started: another worker takes it, free of charge
                    silent_deaths += worker.finished == 0
                    if silent_deaths >= MAX_SILENT_DEATHS:
                        problems.append(f"{MAX_SILENT_DEATHS} local workers died before finishing any cell; the last "
                                        f"one {_signal_name(returncode)}; see {worker.log}")
                        pending.clear()
                    elif pending and not interrupts.requested:
                        start(slot)
        bar.close()
        if interrupts.requested:
            self._settle(cells, Status.INTERRUPTED, "interrupted before it finished")
        else:
            self._settle(cells, Status.NEW, "handed back before it started")
        interrupts.check()
        return problems

    def _lost(self, worker: Worker, returncode: int) -> Status | None:
        """A worker ended while holding a cell: record the cell; returns its status, or None if it never started."""
        cell = worker.cell
        assert cell is not None
        s = read_status(self.spec, [cell])[0]
        if s.status is Status.RUNNING:
            why = f"its worker process {worker.process.pid} {_signal_name(returncode)}; see {worker.log}"
            self._close(s, Status.FAILED, "killed", why)
        return None if s.status is Status.QUEUED else s.status

    def _settle(self, cells: list[Cell], status: Status, why: str) -> None:
        """Cells this runner still holds after the run: queued ones (never started) go back to `status`, NEW or
        INTERRUPTED; running ones whose trainer is gone without a word (it could not write) are interrupted."""
        for s in read_status(self.spec, cells):
            owner = Owner.from_dict(s.state.get("owner"))
            if s.status is Status.QUEUED and owner and owner.pid == os.getpid():
                s.move(status, f"never started: {why}", True,
                       error=None if status is Status.NEW else f"{why} (it had not started)")
            elif s.status is Status.RUNNING and owner and owner.alive() is False:
                self._close(s, Status.INTERRUPTED, "interrupted", "its trainer ended without recording how (it "
                            "could not write its run files?); resumable from its last epoch checkpoint")

    @staticmethod
    def _close(s: CellStatus, status: Status, ending: str, why: str, persist: bool = True) -> None:
        beat = s.run.read_heartbeat()

        def edit(state: dict[str, Any]) -> None:
            close_dead_attempt(state, beat, ending)
            if status is Status.FAILED:
                state["failures"] = state.get("failures", 0) + 1
            state.update(status=status.value, error=why)
        s.edit(why, edit, persist)

    # --- what is real ----------------------------------------------------------------------------------------------

    def reconcile(self, statuses: list[CellStatus], persist: bool) -> None:
        """A cell is on its way only while its process lives: the trainer (running) or the runner that queued it."""
        for s in statuses:
            owner = Owner.from_dict(s.state.get("owner"))
            alive = owner.alive() if owner else False
            if alive is None:  # another host: its heartbeat (running) or nothing (queued) must say
                age = heartbeat_age(s.run.read_heartbeat())
                alive = s.status is Status.RUNNING and age is not None and age < HEARTBEAT_STALE_S
            if s.status is Status.RUNNING and not alive and lock_is_held(s.run):
                alive = True  # the lock is the kernel's word: someone trains it
            if alive:
                continue
            if s.status is Status.RUNNING:
                self._close(s, Status.FAILED, "killed", f"its training process ({owner}) ended without recording "
                            f"why (killed, out of memory, or its machine went down)", persist)
            else:
                s.move(Status.NEW, f"handed back: its runner ({owner}) ended before it started", persist, error=None)

    def cancel(self, statuses: list[CellStatus]) -> None:
        """Ask the processes that own the cells to stop (they record the cells as interrupted)."""
        for s in statuses:
            owner = Owner.from_dict(s.state.get("owner"))
            if owner and owner.alive():
                os.kill(owner.pid, signal.SIGTERM)
