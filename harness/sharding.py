"""Which images each data-parallel rank loads: the batch sampler of the DataLoader path (`HostLoader`).

`batch_size` is the global batch, the one the recipe names. Training: every rank draws the same permutation from the
loader's generator (each rank holds the same generator state), cuts it into global batches, the last partial one
dropped, and rank r takes the r-th of `world` equal slices of each: step by step, the ranks' slices together are the
batch a single process would train on. Evaluation: the images in order, in global batches, each cut into `world`
nearly equal slices (sizes differing by at most one); a rank whose slice is empty (a last batch smaller than `world`)
skips it, so every image is evaluated exactly once across the ranks.
"""
from __future__ import annotations

from typing import Iterator

import torch


def rank_slice(n: int, rank: int, world: int) -> slice:
    """Rank `rank`'s contiguous share of `n` items split as evenly as they go (equal shares when `world` divides n)."""
    return slice(rank * n // world, (rank + 1) * n // world)


class ShardedBatches(torch.utils.data.Sampler[list[int]]):
    """Index batches of rank `rank` out of `world` (see the module docstring)."""

    def __init__(self, n: int, batch_size: int, train: bool, generator: torch.Generator, rank: int = 0,
                 world: int = 1):
        if not 0 <= rank < world:
            raise ValueError(f"rank must be in [0, {world}), got {rank}")
        if train and batch_size % world:
            raise ValueError(f"the global batch {batch_size} does not divide over {world} ranks")
        self.n, self.batch_size, self.train, self.generator = n, batch_size, train, generator
        self.rank, self.world = rank, world

    def __len__(self) -> int:
        if self.train:
            return self.n // self.batch_size
        return sum(len(self._eval_batch(start)) > 0 for start in range(0, self.n, self.batch_size))

    def __iter__(self) -> Iterator[list[int]]:
        if self.train:
            order = torch.randperm(self.n, generator=self.generator).tolist()
            for start in range(0, self.n - self.batch_size + 1, self.batch_size):
                yield order[start:start + self.batch_size][rank_slice(self.batch_size, self.rank, self.world)]
            return
        for start in range(0, self.n, self.batch_size):
            part = self._eval_batch(start)
            if len(part):
                yield part

    def _eval_batch(self, start: int) -> list[int]:
        """This rank's share of the evaluation batch that starts at `start` (empty when the batch has fewer images
        than there are ranks)."""
        batch = range(start, min(start + self.batch_size, self.n))
        return list(batch[rank_slice(len(batch), self.rank, self.world)])
