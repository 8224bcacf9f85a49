"""Resumable P x K sampling, shared by every training set (see :mod:`dataloaders.training_sets`).

A training set is a map-style dataset indexed with ``(index, draw seed)``. :class:`PlaceSampler`
yields every index once per epoch with a seed drawn from ``(seed, epoch)``; the dataset draws
its images and augmentation from that seed, so batches do not depend on the number of workers.
:class:`PlaceBatchSampler` groups them and skips, after a resume, the batches already trained on;
:class:`PlaceLoader` saves where an epoch is in every checkpoint. Under DDP each rank draws its
own share of the order (:class:`PlaceSampler` is a distributed sampler, which Lightning keeps).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import BatchSampler, DataLoader, Dataset, DistributedSampler, Sampler

from utils.errors import UserError

logger = logging.getLogger(__name__)


class PlaceSampler(DistributedSampler):
    """Every place once per epoch, as ``(place index, draw seed)``; under DDP, this rank's share.

    Places come in dataset order, or shuffled when ``shuffle``; both the order and the draw
    seeds depend only on ``(seed, epoch)``. The epoch advances by one per iteration, or is set
    with :meth:`set_epoch` (Lightning calls it before every epoch). With several processes the
    order is padded to a multiple of ``num_replicas`` with its first places, and rank ``r`` takes
    positions ``r, r + num_replicas, ...``: a global step of ``P`` places per rank consumes the
    next ``P * num_replicas`` places of the order, each on one rank. Being a
    ``DistributedSampler``, Lightning uses it as it is instead of wrapping it.

    Args:
        num_places: places of the dataset.
        shuffle: shuffle the order every epoch.
        seed: the order's and the draw seeds' seed.
        num_replicas, rank: the processes and this one's rank; default: from ``torch.distributed``
            when it is initialised, else 1 and 0.
    """

    def __init__(self, num_places: int, shuffle: bool, seed: int, num_replicas: int | None = None,
                 rank: int | None = None) -> None:  # no DistributedSampler.__init__: it wants a process group
        distributed = dist.is_available() and dist.is_initialized()
        self.num_places = num_places
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        self.num_replicas = num_replicas if num_replicas is not None else (dist.get_world_size() if distributed else 1)
        self.rank = rank if rank is not None else (dist.get_rank() if distributed else 0)
        if not 0 <= self.rank < self.num_replicas:
            raise ValueError(f"rank {self.rank} is not in [0, {self.num_replicas})")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(self.num_places / self.num_replicas)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        order = rng.permutation(self.num_places) if self.shuffle else np.arange(self.num_places)
        draw_seeds = rng.integers(0, 2**62, self.num_places)
        padded = np.resize(order, len(self) * self.num_replicas)  # repeats the first places at the end
        for index in padded[self.rank::self.num_replicas]:
            yield int(index), int(draw_seeds[index])


def sampler_epoch(sampler: Sampler | Iterable) -> int:
    """The epoch a :class:`PlaceSampler` (or a distributed wrapper Lightning put around it) will
    iterate next."""
    return int(getattr(sampler, "epoch", 0))


class PlaceBatchSampler(BatchSampler):
    """Batches of places; after a resume, the resumed epoch skips the batches already trained on.

    Only indices are skipped, no image is read. ``len()`` stays the whole epoch's, as Lightning
    counts the resumed epoch's batches from its start.

    Attributes:
        resume_at: ``(epoch, batches)`` to skip at the start of that epoch's iteration (used
            once), or None.
    """

    def __init__(self, sampler: Sampler | Iterable, batch_size: int, drop_last: bool = False) -> None:
        super().__init__(sampler, batch_size, drop_last)
        self.resume_at: tuple[int, int] | None = None

    def skip_for(self, epoch: int) -> int:
        """Batches the iteration of ``epoch`` skips."""
        return self.resume_at[1] if self.resume_at is not None and self.resume_at[0] == epoch else 0

    def __iter__(self) -> Iterator[list]:
        skip, self.resume_at = self.skip_for(sampler_epoch(self.sampler)), None
        for number, batch in enumerate(super().__iter__()):
            if number >= skip:
                yield batch


class PlaceLoader(DataLoader):
    """The training DataLoader of places, resumable mid-epoch.

    Lightning saves :meth:`state_dict` in every checkpoint (under ``loops.fit_loop.state_dict.
    combined_loader``) and passes it to :meth:`load_state_dict` on resume, before iterating:
    the resumed epoch goes on with the next batch of the same order and the same draw seeds
    instead of starting the epoch over. Under DDP the :class:`PlaceSampler` gives each rank its
    share of the order (Lightning keeps it: :attr:`sampler` is it); each rank then skips its own
    batches. Worker seeds come from a generator of the loader's own, so that creating an
    iterator draws nothing from the global RNG (a resumed run draws its dropout masks as the
    uninterrupted one does).

    Args:
        dataset: the places.
        batch_sampler: a :class:`PlaceBatchSampler` over a :class:`PlaceSampler`.
        generator: seeds the workers; default ``torch.Generator().manual_seed(0)``.
        **kwargs: the other DataLoader arguments (``num_workers``, ``pin_memory``, ...).
    """

    def __init__(self, dataset: Dataset, batch_sampler: PlaceBatchSampler, generator: torch.Generator | None = None,
                 **kwargs: Any) -> None:
        super().__init__(dataset, batch_sampler=batch_sampler,
                         generator=generator if generator is not None else torch.Generator().manual_seed(0), **kwargs)
        self._epoch, self._batches_done = sampler_epoch(self.batch_sampler.sampler), 0

    @property
    def sampler(self) -> Sampler | Iterable:
        """The batch sampler's :class:`PlaceSampler`: Lightning sees a distributed sampler and keeps it."""
        return self.batch_sampler.sampler

    @sampler.setter
    def sampler(self, value: Sampler | Iterable) -> None:
        """DataLoader.__init__ assigns its default (sequential) sampler here; the batch sampler's is the one used."""

    def _places_per_batch(self) -> int:
        """Places of the order consumed per batch: ``batch_size`` x the number of processes."""
        return self.batch_sampler.batch_size * int(getattr(self.batch_sampler.sampler, "num_replicas", 1))

    def __iter__(self) -> Iterator:
        self._epoch = sampler_epoch(self.batch_sampler.sampler)
        self._batches_done = self.batch_sampler.skip_for(self._epoch)
        for batch in super().__iter__():
            self._batches_done += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        """Where the training loop is: ``{"epoch", "batches_done", "places_per_batch", "num_places"}``."""
        return {"epoch": self._epoch, "batches_done": self._batches_done,
                "places_per_batch": self._places_per_batch(), "num_places": len(self.dataset)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue from ``state``: its epoch, after its batches (a finished epoch: the next one).

        Raises:
            ValueError: the state is for another number of places (other cities or
                ``min_img_per_place``): its order cannot be continued. The message names the
                dataset's ``order_name`` and ``resume_hint`` attributes where it has them.
        """
        num_places = len(self.dataset)
        if int(state["num_places"]) != num_places:
            what = getattr(self.dataset, "order_name", "training")
            hint = getattr(self.dataset, "resume_hint", "the run's data settings")
            raise UserError(
                f"the checkpoint's data order is over {state['num_places']} {what} places but the data now has "
                f"{num_places}: resume with {hint}"
            )
        epoch, places_done = int(state["epoch"]), int(state["batches_done"]) * int(state["places_per_batch"])
        if places_done >= num_places:
            epoch, places_done = epoch + 1, 0
        if places_done % self._places_per_batch():
            logger.warning("resuming with %d places per step instead of %d: the data order goes on from place %d "
                           "approximately", self._places_per_batch(), state["places_per_batch"], places_done)
        self.batch_sampler.sampler.set_epoch(epoch)
        self.batch_sampler.resume_at = (epoch, places_done // self._places_per_batch())
        self._epoch, self._batches_done = self.batch_sampler.resume_at


def place_loader(dataset: Dataset, batch_size: int, seed: int, shuffle: bool, num_workers: int,
                 persistent_workers: bool, **kwargs: Any) -> PlaceLoader:
    """The resumable loader of ``dataset``: batches of ``batch_size`` indices of a
    :class:`PlaceSampler` seeded with ``seed``, workers seeded from ``seed`` too."""
    places = PlaceSampler(len(dataset), shuffle=shuffle, seed=seed)
    return PlaceLoader(
        dataset, batch_sampler=PlaceBatchSampler(places, batch_size, drop_last=False),
        generator=torch.Generator().manual_seed(seed),
        num_workers=num_workers, pin_memory=torch.cuda.is_available(),
        persistent_workers=persistent_workers and num_workers > 0, **kwargs,
    )
