"""The training data order, a function of the iteration only.

Iteration ``t`` uses the global batch ``t mod n_batches`` of the permutation of epoch
``t // n_batches`` (seeded by ``(seed, epoch)``); rank ``r`` takes its contiguous share of each
accumulation step. The order therefore depends on the iteration only, which is the data-order position
a checkpoint records, and 1 process sees the same global batches as N.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from protoseg.config import ConfigError
from protoseg.data.dataset import SegmentationDataset


class EpochItems(Dataset):
    """Items keyed by ``(epoch, index)``: the augmentation of a sample is fixed by (seed, epoch, index)
    whatever the worker or the resume point."""

    def __init__(self, ds: SegmentationDataset):
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        epoch, i = key
        image, label = self.ds.decoded(i)
        out = self.ds.pipeline(image, label, np.random.default_rng([self.ds.seed, epoch, i]))
        return {"image": out["image"], "label": out["label"]}


class IterationBatchSampler(Sampler[list]):
    """This rank's micro-batches from iteration ``start`` to ``total`` (``grad_accum`` per iteration)."""

    def __init__(self, n: int, *, global_batch: int, grad_accum: int, rank: int, world_size: int,
                 seed: int, start: int, total: int):
        if n < global_batch:
            raise ConfigError(f"train.batch_size={global_batch} exceeds the {n} training images")
        per_rank = global_batch // (grad_accum * world_size)
        if per_rank * grad_accum * world_size != global_batch:
            raise ConfigError(f"train.batch_size={global_batch} is not divisible by grad_accum x world size "
                              f"= {grad_accum} x {world_size}")
        self.n, self.B, self.accum, self.b = n, global_batch, grad_accum, per_rank
        self.rank, self.seed, self.start, self.total = rank, seed, start, total
        self.per_epoch = n // global_batch

    def position(self, iteration: int) -> dict[str, int]:
        return {"iteration": iteration, "epoch": iteration // self.per_epoch,
                "batch_in_epoch": iteration % self.per_epoch}

    def global_batch(self, iteration: int) -> list[int]:
        epoch, j = divmod(iteration, self.per_epoch)
        perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 1_000_003 + epoch))
        return perm[j * self.B:(j + 1) * self.B].tolist()

    def __iter__(self) -> Iterator[list]:
        for t in range(self.start, self.total):
            epoch = t // self.per_epoch
            g = self.global_batch(t)
            for a in range(self.accum):
                micro = g[a * self.B // self.accum:(a + 1) * self.B // self.accum]
                yield [(epoch, i) for i in micro[self.rank * self.b:(self.rank + 1) * self.b]]

    def __len__(self) -> int:
        return (self.total - self.start) * self.accum

