"""The order and grouping of a training stage's images: which images each step sees, on which
process, with which augmentation.

Everything here is a function of (seed, epoch, index), not of the process layout or the loader's
workers, so that a resumed run, a run on 2 processes with half the batch each, and an
uninterrupted run on one process see exactly the same augmented images in the same steps.
"""
from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset

from .transforms import TrainTransform


class AugmentedSet(Dataset):
    """A dataset indexed by (epoch, index): the item ``index`` augmented with the randomness of
    (seed, epoch, index). Indexing by the pair keeps augmentation independent of workers."""

    def __init__(self, base, transform: TrainTransform):
        self.base, self.transform = base, transform

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key):
        epoch, index = key
        return self.transform(self.base[index], epoch, index)


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The order in which an epoch visits the n images: fixed by (seed, epoch)."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g)


class ShardedBatches:
    """Batches of one epoch for one process: global batch ``step`` is
    ``perm[step*B:(step+1)*B]`` and process ``rank`` takes its ``rank``-th slice of B/world images,
    so 2 processes x batch 5 see exactly the images of 1 process x batch 10. The last incomplete
    batch is dropped (as Caffe's epoch arithmetic). ``start`` skips steps already done (resume)."""

    def __init__(self, n: int, batch: int, seed: int, epoch: int, rank: int = 0, world: int = 1,
                 start: int = 0):
        if batch % world:
            raise ValueError(f"batch size {batch} is not divisible by the {world} processes")
        self.perm = epoch_permutation(n, seed, epoch).tolist()
        self.batch, self.epoch, self.rank, self.world, self.start = batch, epoch, rank, world, start
        self.steps = n // batch

    def __len__(self) -> int:
        return self.steps - self.start

    def __iter__(self):
        local = self.batch // self.world
        for step in range(self.start, self.steps):
            lo = step * self.batch + self.rank * local
            yield [(self.epoch, i) for i in self.perm[lo:lo + local]]


def collate(items: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.stack([it["image"] for it in items]), torch.stack([it["label"] for it in items])


class _EpochSampler:
    """A :class:`StageLoader`'s batch sampler: the epoch's :class:`ShardedBatches`, replaced
    before each pass (a loader with persistent workers keeps its sampler object)."""

    def __init__(self):
        self.batches: ShardedBatches | None = None

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class StageLoader:
    """One DataLoader for a whole training stage, its workers persistent: they are not started
    again every epoch, and the decoded images a worker caches (``TrainConfig.cache_images``)
    outlive the epoch. Which images and augmentations a step sees depends on (seed, epoch, index)
    only (:class:`AugmentedSet`), so reusing the workers changes nothing in what is trained."""

    def __init__(self, data, workers: int, seed: int, pin_memory: bool = False):
        # A private generator for the loader keeps the global torch RNG (dropout) untouched.
        self.loader = DataLoader(data, batch_sampler=_EpochSampler(), num_workers=workers, collate_fn=collate,
                                 pin_memory=pin_memory, persistent_workers=workers > 0,
                                 generator=torch.Generator().manual_seed(seed))

    def epoch(self, batches: ShardedBatches) -> DataLoader:
        """The loader, set to serve ``batches``."""
        self.loader.batch_sampler.batches = batches
        return self.loader

    def close(self) -> None:
        """Stop the workers (they would otherwise live as long as this object)."""
        iterator = getattr(self.loader, "_iterator", None)
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()
