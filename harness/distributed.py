"""Data-parallel training across processes: the process group, and the collectives the harness needs (sums of
metrics, one decision broadcast from rank 0, BatchNorm over the global batch). NCCL on GPUs, gloo on CPUs.

A world of one (harness/world.py) is the default and costs nothing: no process group, every collective a no-op.
"""
from __future__ import annotations

import contextlib
import datetime
from typing import Any, Iterator

import torch
import torch.distributed as dist
from torch import nn

from .world import World

# how long a rank waits for the others in one collective before giving up (a lost peer ends the run, never hangs it)
COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=10)


def device_of(world: World, device: torch.device) -> torch.device:
    """Each rank's own GPU when training on GPUs: cuda:LOCAL_RANK among the node's GPUs, or the one GPU a scheduler
    bound the process to; the CPU is shared."""
    if device.type == "cuda" and world.size > 1 and device.index is None:
        return torch.device("cuda", world.local_rank if torch.cuda.device_count() > world.local_rank else 0)
    return device


@contextlib.contextmanager
def process_group(world: World, device: torch.device) -> Iterator[None]:
    """The process group for the length of a run (none for a world of one)."""
    if world.size == 1:
        yield
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=world.rank, world_size=world.size,
                            init_method=f"tcp://{world.master_addr}:{world.master_port}", timeout=COLLECTIVE_TIMEOUT)
    try:
        yield
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def leave(world: World) -> None:
    """Every rank has finished training: end the process group here, so rank 0 can go on alone (its benchmark runs
    the model's BatchNorm as plain BatchNorm once no group exists)."""
    if world.size > 1 and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_sum(*tensors: torch.Tensor) -> None:
    """Sum each tensor over the ranks, in place (one collective for all of them)."""
    if not active() or not tensors:
        return
    flat = torch.cat([t.reshape(-1).to(torch.float64) for t in tensors])
    dist.all_reduce(flat)
    start = 0
    for t in tensors:
        t.copy_(flat[start:start + t.numel()].reshape(t.shape).to(t.dtype))
        start += t.numel()


def broadcast(value: Any) -> Any:
    """Rank 0's `value`, on every rank (a small picklable object: a decision, a setting)."""
    if not active():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def average_batchnorm_buffers(model: nn.Module) -> None:
    """Without synchronised BatchNorm each rank's running statistics come from its own share of the batches: average
    them before evaluating or saving, so every rank holds one model (timm's `--dist-bn reduce`)."""
    if not active():
        return
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            for buffer in (module.running_mean, module.running_var):
                if buffer is not None:
                    dist.all_reduce(buffer)
                    buffer.div_(dist.get_world_size())


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the global batch over every rank, on any device and
    backend (torch's SyncBatchNorm needs a GPU): two passes (the mean, then the squared deviations from it), each one
    summed across ranks by an all-reduce that autograd differentiates. With one process it is BatchNorm2d."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and active()):
            return super().forward(x)
        from torch.distributed._functional_collectives import all_reduce  # differentiable (torch >= 2.6)
        dims, world = (0, 2, 3), dist.group.WORLD
        assert world is not None
        count = torch.tensor([x.numel() / x.shape[1]], dtype=x.dtype, device=x.device)
        total = all_reduce(torch.cat([x.sum(dims), count]), "sum", world)
        n, mean = total[-1], total[:-1] / total[-1]
        centred = x - mean[None, :, None, None]
        var = all_reduce((centred * centred).sum(dims), "sum", world) / n
        tracked = self.num_batches_tracked
        if self.running_mean is not None and self.running_var is not None and tracked is not None:
            with torch.no_grad():
                tracked.add_(1)
                factor = self.momentum if self.momentum is not None else 1.0 / float(tracked)
                self.running_mean.lerp_(mean.detach(), factor)
                self.running_var.lerp_(var.detach() * n / (n - 1), factor)  # unbiased, as BatchNorm keeps it
        y = centred * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return y


def synchronise_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """The model with every BatchNorm computing its statistics over the global batch: torch's SyncBatchNorm on GPUs,
    GlobalBatchNorm2d elsewhere. Parameters and buffers are shared with the model, not copied."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for name, child in model.named_children():
        if type(child) is nn.BatchNorm2d:
            new = GlobalBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine,
                                    child.track_running_stats, device=device)
            new.weight, new.bias = child.weight, child.bias
            new.running_mean, new.running_var, new.num_batches_tracked = (
                child.running_mean, child.running_var, child.num_batches_tracked)
            new.train(child.training)
            setattr(model, name, new)
        else:
            synchronise_batchnorm(child, device)
    return model
