"""One run, from a typed config to a complete result record: `train(config, run_dir)`.

The run resumes from its last epoch checkpoint if the run directory holds one (a killed, preempted or requeued
run picks up where it stopped: model, optimizer, scaler, random streams, batch order and execution setting are
restored, so on a CPU with deterministic settings the resumed run ends exactly like an uninterrupted one).
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import random
import resource
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import torch

from mixers import MixerNet
from mixers.summary import summarize

from .attempt import Attempt, Interrupted, never, totals
from .checkpoint import load_checkpoint, save_checkpoint
from .config import RunConfig
from .data import build_loaders
from .distributed import (
    average_batchnorm_buffers,
    broadcast,
    device_of,
    leave,
    process_group,
    synchronise_batchnorm,
)
from .engine import evaluate, train_one_epoch
from .environment import environment, resolve_device, seed_everything, set_threads
from .erf import effective_receptive_field, erf_images, save_erf
from .execution import choose_setting
from .optim import LrSchedule, build_optimizer
from .records import RunDir, atomic_write_json, code_version, now, unwritable, write_config
from .runlock import run_lock
from .schema import ConfigError
from .share import NO_SHARING, DeviceShare
from .status import Status
from .throughput import Setting, bench_defaults, benchmark, candidate_settings, memory_format
from .tracking import Trackers
from .world import SOLO, World


def build_model(cfg: RunConfig, in_chans: int, num_classes: int, img_size: int) -> MixerNet:
    m = cfg.model
    return MixerNet(mixer=m.mixer, block=m.block, dim=m.dim, depth=m.depth, patch_size=m.patch_size,
                    kernel_size=m.kernel_size, act=m.act, num_classes=num_classes, in_chans=in_chans,
                    img_size=img_size, mixer_kwargs=m.mixer_kwargs, block_kwargs=m.block_kwargs,
                    drop_path_rate=m.drop_path_rate, drop_rate=m.drop_rate)


def _rng_state(device: torch.device) -> dict[str, Any]:
    return {"python": random.getstate(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


def _peak_memory(device: torch.device) -> dict[str, Any]:
    if device.type == "cuda":
        return {"peak_bytes": torch.cuda.max_memory_allocated(device), "kind": "cuda_max_allocated"}
    return {"peak_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "kind": "cpu_max_rss"}


def train(cfg: RunConfig, run_dir: str | Path, progress: bool = False, log: Callable[[str], None] = print,
          stop: Callable[[], bool] = never, job_id: str | None = None,
          requeued: Callable[[], str | None] = lambda: None, world: World = SOLO,
          share: DeviceShare = NO_SHARING) -> dict[str, Any]:
    """Train, evaluate and benchmark one run; returns (and writes) its result record.

    Only one process trains a run directory at a time (its lock; a second one raises RunBusyError, naming the
    first). A run whose result is final is not trained again: its result is returned untouched. `stop()` is checked
    at every step: when it turns true the run ends `interrupted`, resumable from its last epoch checkpoint.
    `requeued()` names why the scheduler requeued this job (preempted, time limit) if it did. `share` coordinates
    with the cells that share this device (harness/share.py): the throughput is measured while none of them trains.

    Data-parallel (`world` of several processes, each calling this): rank 0 holds the lock, writes every file and
    returns the record; the other ranks train their share of each batch and return an empty record, {}.
    """
    cfg = in_world(cfg, world)
    run = RunDir(run_dir)
    if world.size == 1:
        return _lead(cfg, run, progress, log, stop, job_id, requeued, world, share)
    device = device_of(world, resolve_device(cfg.system.device))
    with process_group(world, device):
        if world.main:
            return _lead(cfg, run, progress, log, stop, job_id, requeued, world, share)
        if broadcast(None):  # rank 0 trains: so do we
            _train(cfg, run, device, None, False, lambda line: None, stop, world, share)
        return {}


def in_world(cfg: RunConfig, world: World) -> RunConfig:
    """The config as run by `world`'s processes; refused where the run's identity names another world size."""
    if world.size == cfg.system.world_size:
        return cfg
    actual = dataclasses.replace(cfg, system=dataclasses.replace(cfg.system, world_size=world.size))
    if actual.run_id != cfg.run_id:
        raise ConfigError(f"system.world_size: run {cfg.run_id} trains on {cfg.system.world_size} processes, each "
                          f"with its own BatchNorm batch (system.sync_bn false), so it cannot run on {world.size}; "
                          f"valid: {cfg.system.world_size} processes, or system.sync_bn true (a new run)")
    return actual


def _lead(cfg: RunConfig, run: RunDir, progress: bool, log: Callable[[str], None], stop: Callable[[], bool],
          job_id: str | None, requeued: Callable[[], str | None], world: World,
          share: DeviceShare) -> dict[str, Any]:
    """Rank 0 (or the only process): the lock, the ledger and every file of the run. The other ranks learn from
    one broadcast whether to train with it."""
    told = False

    def tell(go: bool) -> None:
        nonlocal told
        if not told:
            told = True
            broadcast(go)
    try:
        if (final := _final(run, cfg, log)) is not None:
            return final
        with run_lock(run, job_id) as owner:
            if (final := _final(run, cfg, log)) is not None:  # finished by the holder we waited for
                return final
            write_config(run, cfg)
            with contextlib.suppress(FileNotFoundError):
                run.result.unlink()  # a failed or damaged record of an earlier attempt: not to be read as this one's
            attempt = Attempt(run, owner, job_id)
            attempt.start()
            device = torch.device("cpu")
            try:
                device = device_of(world, resolve_device(cfg.system.device))
                tell(True)
                with share.training(device):
                    result = _train(cfg, run, device, attempt, progress, log, share.steps(stop), world, share)
            except BaseException as e:
                _end_attempt_early(cfg, run, attempt, device, e, requeued(), log)
                raise
            atomic_write_json(run.result, result)  # the result first: a crash before the state write still finds it
            attempt.end(Status(result["status"]), result["status"], error=result["reason"],
                        test_top1=result["metrics"].get("test_top1"))  # for status views that read only state.json
            return result
    finally:
        tell(False)  # rank 0 ends before training (a final result, a busy lock, an error): so do the others


def _final(run: RunDir, cfg: RunConfig, log: Callable[[str], None]) -> dict[str, Any] | None:
    """The run's final result, with state.json brought in line with it (a crash may have come in between)."""
    final = run.final_result(cfg.run_id)
    if final is None:
        return None
    if run.read_state().get("status") != final["status"]:
        run.update_state("its result is final", status=final["status"], error=final.get("reason"))
    log(f"run {cfg.run_id} has already finished ({final['status']}); its result is final: {run.result}")
    return final


def _end_attempt_early(cfg: RunConfig, run: RunDir, attempt: Attempt, device: torch.device, error: BaseException,
                       requeue_reason: str | None, log: Callable[[str], None]) -> None:
    """Record how an attempt that did not finish ended: interrupted, requeued by the scheduler, or failed."""
    try:
        if requeue_reason:  # submitit requeued the job (preemption, time limit) and exits: the cell waits again
            attempt.end(Status.QUEUED, requeue_reason)
        elif (line := unwritable(error)) is not None:
            attempt.end(Status.INTERRUPTED, "unwritable", error=f"{line}; resumable once it can write again")
            log(f"run {cfg.run_id}: {line}; it resumes from its last epoch checkpoint when run again")
        elif isinstance(error, (Interrupted, KeyboardInterrupt, SystemExit)):
            attempt.end(Status.INTERRUPTED, "interrupted", error=f"interrupted ({type(error).__name__}); resumable "
                                                                 f"from its last epoch checkpoint")
            log(f"run {cfg.run_id}: interrupted; it resumes from its last epoch checkpoint when run again")
        else:
            reason = "".join(traceback.format_exception(error))
            atomic_write_json(run.result, _record(cfg, device, run, attempt, status="failed", reason=reason))
            attempt.end(Status.FAILED, "failed", error=reason)
    except OSError as e:  # a full disk or a lost folder: the next command's reconciliation records the end
        log(f"run {cfg.run_id}: could not record how it ended ({e}); the next run-study command will")


def _train(cfg: RunConfig, run: RunDir, device: torch.device, attempt: Attempt | None, progress: bool,
           log: Callable[[str], None], stop: Callable[[], bool], world: World = SOLO,
           share: DeviceShare = NO_SHARING) -> dict[str, Any]:
    """The training itself. On ranks other than 0 (`attempt` None) it writes nothing and returns {}."""
    set_threads(cfg.system.threads)
    seed_everything(cfg.seed, cfg.system.deterministic)  # the same on every rank: one initial model
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    if cfg.bench.only:
        assert attempt is not None, "a benchmark-only cell runs as one process"
        return _benchmark_only(cfg, device, run, attempt, log, share)
    loaders = build_loaders(cfg.data, cfg.recipe, device, cfg.seed, world.rank, world.size)
    geo = loaders.geometry
    input_size = (geo.channels, geo.image_size, geo.image_size)
    model = build_model(cfg, geo.channels, geo.num_classes, geo.image_size).to(device)
    summary = summarize(model, input_size)
    steps_per_epoch = len(loaders.train)
    if steps_per_epoch == 0:
        raise ValueError(f"recipe.batch_size {cfg.recipe.batch_size} is larger than the training split "
                         f"({loaders.train.size} images)")

    ckpt = load_checkpoint(run, cfg.run_id, device, log)  # every rank reads it (rank 0 holds the lock meanwhile)
    resumed_at = broadcast(ckpt["epoch"] if ckpt is not None else None)
    if (ckpt["epoch"] if ckpt is not None else None) != resumed_at:
        raise RuntimeError(f"rank {world.rank} found another checkpoint of {run.path} than rank 0 did")
    if ckpt is not None:
        setting, probe = Setting(**ckpt["setting"]), ckpt["probe"]
    else:  # rank 0 measures (alone on a shared device); every rank trains with its choice
        with share.exclusive("setting probe"):
            setting, probe = broadcast(choose_setting(model, cfg.system, device, cfg.per_rank_batch, input_size,
                                                      geo.num_classes) if world.main else None)
    fmt = memory_format(setting.layout)
    model = model.to(memory_format=fmt)
    loaders.set_layout(fmt)
    optimizer = build_optimizer(model, cfg.recipe)
    scaler = torch.amp.GradScaler(device.type, enabled=setting.precision == "fp16")
    schedule = LrSchedule(cfg.recipe, steps_per_epoch)
    history: list[dict[str, Any]] = []
    start_epoch = 0
    # validation images when there are some; the test images otherwise (only looked at, never chosen on)
    erf_loader = loaders.val or loaders.test
    erf_init = (effective_receptive_field(model, erf_images(erf_loader))
                if cfg.bench.erf and ckpt is None and world.main else None)
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scaler.load_state_dict(ckpt["scaler"])
        loaders.train.load_state_dict(ckpt["loader"])
        _set_rng_state(ckpt["rng"], device)
        history, start_epoch, erf_init = ckpt["history"], ckpt["epoch"], ckpt.get("erf_init")
        if attempt is not None:
            attempt.resume(ckpt.get("trained_by"), start_epoch)
            run.write_metrics(history)
            log(f"resumed {cfg.run_id} after epoch {start_epoch - 1} (attempt {attempt.number})")
    elif attempt is not None:
        run.write_metrics([])
    if world.rank:  # dropout and drop-path masks of their own; the data's draws stay shared (the loaders' generator)
        torch.manual_seed(cfg.seed * 1_000_003 + world.rank * 7919 + start_epoch)
    step_model = _parallel(model, cfg, device, world)
    step_model = torch.compile(step_model) if setting.compiled else step_model
    log(f"run {cfg.run_id}: {cfg.model.mixer}/{cfg.model.block} h={cfg.model.dim} d={cfg.model.depth} "
        f"p={cfg.model.patch_size} k={cfg.model.kernel_size} on {cfg.data.dataset} {geo.image_size}px, "
        f"{summary['params'] / 1e6:.3f}M params, {summary['flops'] / 1e9:.3f} GFLOPs; {device}, {setting.layout}/"
        f"{setting.precision}{'/compiled' if setting.compiled else ''}, {loaders.kind} data"
        + (f", {world.size} processes x {cfg.per_rank_batch} images" if world.size > 1 else ""))

    status, diverged_epoch = "done", None
    trackers = Trackers(cfg.system.tracking if world.main else [], run.path, cfg.run_id, cfg.to_dict())
    for epoch in range(start_epoch, cfg.recipe.epochs):
        if attempt is not None:
            attempt.begin_epoch(epoch)
        te = time.perf_counter()
        stats = train_one_epoch(model, step_model, loaders.train, optimizer, schedule, scaler, cfg.recipe, setting,
                                device, epoch, progress, stop)
        train_time = time.perf_counter() - te
        nonfinite = stats.pop("nonfinite")
        if not cfg.system.sync_bn:
            average_batchnorm_buffers(model)
        for split, loader in loaders.evaluated.items():
            stats.update(evaluate(model, loader, setting, device, split, progress, stop))
        epoch_s = time.perf_counter() - te
        record = {"epoch": epoch, **stats, "epoch_s": epoch_s, "train_s": train_time,
                  "train_img_s": loaders.train.num_samples / train_time}
        history.append(record)
        if attempt is None:
            if nonfinite:
                break
            continue
        if nonfinite:
            status, diverged_epoch = "diverged", epoch
            run.append_metrics(record)
            attempt.end_epoch(epoch)
            log(f"epoch {epoch}: the training loss became NaN or infinite; stopping (diverged)")
            break
        if cfg.system.checkpoint:
            save_checkpoint(run, {
                "epoch": epoch + 1, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict(), "loader": loaders.train.state_dict(), "rng": _rng_state(device),
                "history": history, "setting": asdict(setting), "probe": probe, "run_id": cfg.run_id,
                "erf_init": erf_init, "trained_by": {"attempt": attempt.number, "first_epoch": start_epoch}})
        run.append_metrics(record)
        trackers.log(epoch, record)
        attempt.end_epoch(epoch)
        scores = "  ".join(f"{split}_loss {stats[f'{split}_loss']:.4f}  {split}_top1 {stats[f'{split}_top1']:6.2f}"
                           for split in ("train", *loaders.evaluated))
        log(f"epoch {epoch:3d}  {scores}  lr {stats['lr']:.2e}  {epoch_s:6.2f} s  {record['train_img_s']:,.0f} img/s")
    trackers.close()
    leave(world)  # no collective after this: rank 0 measures and writes alone
    if attempt is None:
        return {}

    throughput = None
    if status == "done":  # a diverged cell measures nothing, so it never makes the cells sharing its device pause
        with share.exclusive("throughput"):
            throughput = _benchmark(cfg, model, input_size, geo.num_classes, device)
    if erf_init is not None and status == "done":
        save_erf(run.path / "erf.npz", erf_init, effective_receptive_field(model, erf_images(erf_loader)))
    metrics = final_metrics(history, has_val=loaders.val is not None)
    if loaders.val is None:
        log(f"run {cfg.run_id}: no validation split (data.val_fraction 0): the selected epoch is the final one")
    return _record(
        cfg, device, run, attempt, status=status, diverged_epoch=diverged_epoch,
        reason=f"training loss became NaN or infinite at epoch {diverged_epoch}" if status == "diverged" else None,
        metrics=metrics, data=loaders.sizes(cfg.data),
        model={**summary, "input_size": list(input_size)}, throughput=throughput,
        execution={**asdict(setting), "loader": loaders.kind, "probe": probe, "sharing": share.record()},
        distributed={"world_size": world.size, "per_rank_batch": cfg.per_rank_batch, "sync_bn": cfg.system.sync_bn,
                     "backend": "nccl" if device.type == "cuda" and world.size > 1 else
                     "gloo" if world.size > 1 else None},
        timing={"epoch_s": [h["epoch_s"] for h in history]}, history=history)


def _parallel(model: torch.nn.Module, cfg: RunConfig, device: torch.device, world: World) -> torch.nn.Module:
    """What runs the training steps: the model itself, or (several processes) the model with its BatchNorm made
    global where asked, wrapped in DistributedDataParallel (which averages the gradients, and at construction gives
    every rank rank 0's parameters)."""
    if world.size == 1:
        return model
    if cfg.system.sync_bn:
        synchronise_batchnorm(model, device)
    # buffers are not broadcast every step: synchronised BatchNorm keeps them equal, and without it they are
    # averaged before each evaluation (average_batchnorm_buffers)
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None,
                                                     broadcast_buffers=False)


FINAL_KEYS = ("train_loss", "train_top1", "val_loss", "val_top1", "val_top5", "test_loss", "test_top1", "test_top5")


def final_metrics(history: list[dict[str, Any]], has_val: bool) -> dict[str, Any]:
    """result.json's `metrics`: the final epoch's, and the test metrics at the epoch of best validation top-1 (the
    earliest of equal ones). Only validation numbers choose the epoch; without a validation split it is the final
    epoch (`selected_by` says which rule chose)."""
    last = history[-1]
    # a diverged epoch's NaN weights still give some accuracy: epochs whose validation loss is not finite never win
    candidates = [h for h in history if math.isfinite(h["val_loss"])] if has_val else []
    selected = max(candidates, key=lambda h: h["val_top1"]) if candidates else last  # max: the first of equal ones
    return {**{k: last.get(k) for k in FINAL_KEYS}, "epochs": len(history),
            "selected_epoch": selected["epoch"], "selected_by": "val_top1" if candidates else "final epoch",
            "val_top1_selected": selected.get("val_top1"), "test_top1_selected": selected["test_top1"],
            "test_top5_selected": selected["test_top5"]}


def _record(cfg: RunConfig, device: torch.device, run: RunDir, attempt: Attempt, **parts: Any) -> dict[str, Any]:
    """result.json: the parts of this run plus what every record holds. Wall and training time are summed over
    every attempt (a resumed run counts the time of the attempts before), and each attempt is listed."""
    state = run.read_state()
    earlier = totals(state)
    attempts = [*state["attempts_log"][:-1], {**state["attempts_log"][-1], "train_s": attempt.train_time()}]
    record = {"run_id": cfg.run_id, "status": "done", "reason": None, "diverged_epoch": None,
              "config": cfg.to_dict(), **parts}
    record["timing"] = {"wall_s": earlier["wall_s"] + attempt.wall_time(), "train_s": earlier["train_s"]
                        + attempt.train_time(), "attempts": len(attempts), **parts.get("timing", {})}
    return {**record, "attempts": attempts, "memory": _peak_memory(device), "env": environment(device),
            "code": code_version(), "finished_at": now()}


def _benchmark_only(cfg: RunConfig, device: torch.device, run: RunDir, attempt: Attempt,
                    log: Callable[[str], None], share: DeviceShare) -> dict[str, Any]:
    """A throughput-study cell: the model's size and speed, no training (so no accuracy)."""
    from .validate import check_data
    geo = check_data(cfg)
    input_size = (geo.channels, geo.image_size, geo.image_size)
    model = build_model(cfg, geo.channels, geo.num_classes, geo.image_size).to(device)
    summary = summarize(model, input_size)
    log(f"run {cfg.run_id}: benchmark only, {cfg.model.mixer}/{cfg.model.block} h={cfg.model.dim} "
        f"d={cfg.model.depth} p={cfg.model.patch_size} k={cfg.model.kernel_size} at {geo.image_size}px on {device}")
    with share.exclusive("throughput"):
        throughput = _benchmark(cfg, model, input_size, geo.num_classes, device)
    log(f"inference {throughput['infer_img_s'] or 0:,.0f} img/s, training {throughput['train_img_s'] or 0:,.0f} img/s")
    return _record(cfg, device, run, attempt, metrics={"epochs": 0}, model={**summary, "input_size": list(input_size)},
                   throughput=throughput, execution={"sharing": sharing} if (sharing := share.record()) else None)


def _benchmark(cfg: RunConfig, model: torch.nn.Module, input_size: tuple[int, int, int], num_classes: int,
               device: torch.device) -> dict[str, Any] | None:
    if not cfg.bench.enabled:
        return None
    b, defaults = cfg.bench, bench_defaults(device)
    size = (input_size[0], b.img_size or input_size[1], b.img_size or input_size[2])
    model = model.to(memory_format=torch.contiguous_format)
    return benchmark(model, size, device, candidate_settings(device), b.batch_size or defaults["batch_size"],
                     b.warmup or defaults["warmup"], b.iters or defaults["iters"], num_classes, b.compile)
