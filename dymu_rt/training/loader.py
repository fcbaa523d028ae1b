"""The training input pipeline: a resumable-by-step stream of batches through a DataLoader.

Which samples make step s's global batch is a pure function of (seed, s): epoch e =
s // steps_per_epoch shuffles the dataset with a generator seeded by (seed, e), and
step s takes the next ``batch`` indices of that order (the tail that does not fill a
batch is dropped). A run resumed at step k therefore sees exactly the batches an
unstopped run would have seen from step k on.

Augmentation (random scale/crop/flip) draws from torch's RNG. Each sample is loaded with
that RNG seeded from (seed, step, position in the global batch) and restored afterwards,
so a sample's augmentation depends neither on the worker that loads it, nor on the number
of workers or ranks, nor on the trainer's own RNG. The same stream comes out of one
process with ``workers=0`` and of any number of worker processes and ranks.

With ``rank``/``world_size`` (data-parallel training), rank r receives the r-th contiguous
slice of every global batch. Procedural scenes are rendered inside the workers; on CUDA
the batches come from pinned memory so the copy to the GPU overlaps compute.
"""

from __future__ import annotations

import random
from typing import Iterator, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

# Largest seed torch.manual_seed and numpy accept alike.
_SEED_MOD = 2**63 - 1


def collate(samples: list[dict]) -> dict:
    """Stack a list of samples (image, targets, masks) into a batch."""
    return torch.utils.data.default_collate(samples)


def sample_seed(seed: int, step: int, position: int) -> int:
    """The augmentation seed of the sample at ``position`` of global batch ``step``."""
    return int(np.random.SeedSequence([int(seed), int(step), int(position)]).generate_state(2, np.uint64)[0]
               % _SEED_MOD)


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffled sample order of ``epoch`` (deterministic given seed and epoch)."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g)


class StepBatchSampler(Sampler):
    """Yields, for step = start_step, start_step+1, ..., this rank's slice of the global batch
    as a list of ``(dataset index, augmentation seed)`` pairs. Infinite unless ``steps``."""

    def __init__(self, n: int, batch_size: int, seed: int, start_step: int = 0, rank: int = 0,
                 world_size: int = 1, steps: Optional[int] = None) -> None:
        if n < 1:
            raise ValueError("the training split is empty")
        if batch_size % world_size:
            raise ValueError(f"global batch {batch_size} does not split over {world_size} ranks")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.start_step, self.rank, self.world_size, self.steps = start_step, rank, world_size, steps
        self.per_epoch = max(1, n // batch_size)
        self.local = batch_size // world_size

    def _slice(self, step: int, order: list[int]) -> list[tuple[int, int]]:
        """This rank's (index, augmentation seed) pairs of ``step`` from its epoch's order."""
        within = step % self.per_epoch
        lo = within * self.batch_size + self.rank * self.local
        return [(i, sample_seed(self.seed, step, self.rank * self.local + k))
                for k, i in enumerate(order[lo:lo + self.local])]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        step = self.start_step
        # One permutation per epoch, not per step: sampling stays O(batch) per step.
        cached_epoch, order = None, []
        while self.steps is None or step < self.start_step + self.steps:
            epoch = step // self.per_epoch
            if epoch != cached_epoch:
                cached_epoch, order = epoch, epoch_order(self.n, self.seed, epoch).tolist()
            yield self._slice(step, order)
            step += 1

    def __len__(self) -> int:  # DataLoader asks; the stream is as long as the stage
        if self.steps is None:
            raise TypeError("an infinite step sampler has no length")
        return self.steps


class SeededSamples(Dataset):
    """``dataset[i]`` loaded with torch's RNG seeded for that sample (then restored)."""

    def __init__(self, dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        index, seed = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.dataset[index]


def _seed_worker(base: int, worker_id: int) -> None:
    """Deterministic global RNGs in each worker (augmentation is seeded per sample anyway;
    this covers any other randomness a dataset might draw)."""
    s = int(np.random.SeedSequence([base, worker_id]).generate_state(1)[0])
    random.seed(s)
    np.random.seed(s)
    torch.manual_seed(s)


class BatchStream:
    """Iterator over this rank's batches from ``start_step`` on, backed by a DataLoader.

    ``workers`` > 0 loads (and renders) samples in that many worker processes, kept alive
    for the whole stage; ``pin_memory`` when the batches go to a GPU. Call :meth:`close`
    (or use it as a context manager) to stop the workers.
    """

    def __init__(self, dataset, batch_size: int, seed: int, start_step: int = 0, workers: int = 0,
                 rank: int = 0, world_size: int = 1, pin_memory: bool = False,
                 prefetch: int = 2, steps: Optional[int] = None) -> None:
        self.sampler = StepBatchSampler(len(dataset), batch_size, seed, start_step, rank, world_size, steps)
        kw = {}
        if workers > 0:
            kw = {"persistent_workers": True, "prefetch_factor": prefetch,
                  "worker_init_fn": _WorkerInit(seed * 7919 + rank)}
        # A generator of its own: a DataLoader iterator otherwise draws its base seed from
        # torch's global RNG, so opening the stream of a resumed stage would shift the
        # trainer's random stream (Gumbel noise) by one draw against an unstopped run.
        self.loader = DataLoader(SeededSamples(dataset), batch_sampler=self.sampler, num_workers=workers,
                                 collate_fn=collate, pin_memory=pin_memory,
                                 generator=torch.Generator().manual_seed(int(seed) % _SEED_MOD), **kw)
        self._it = iter(self.loader)

    def __iter__(self) -> "BatchStream":
        return self

    def __next__(self) -> dict:
        return next(self._it)

    def close(self) -> None:
        """Stop the worker processes (idempotent)."""
        it, self._it = self._it, iter(())
        shutdown = getattr(it, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()

    def __enter__(self) -> "BatchStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _WorkerInit:
    """Picklable worker_init_fn (spawned workers cannot take a lambda)."""

    def __init__(self, base: int) -> None:
        self.base = base

    def __call__(self, worker_id: int) -> None:
        _seed_worker(self.base, worker_id)


def infinite_batches(dataset, batch_size: int, seed: int, start_step: int = 0) -> Iterator[dict]:
    """Single-process stream of whole global batches (the reference the loader matches)."""
    return BatchStream(dataset, batch_size, seed, start_step)
