"""Training sets: the sources of training batches a :class:`~dataloaders.vpr_datamodule.VPRDataModule` holds.

A training set gives, per step, ``images [P, K, 3, H, W]`` and ``labels [P, K]`` (equal labels:
the same place) through a resumable :class:`~dataloaders.place_sampling.PlaceLoader`, so every
set resumes mid-epoch bit-exact and shards under DDP alike. When a run trains on several sets,
each step takes one batch of each, and the model computes one loss per set (labels of two sets
are never compared).

A new training set is one module with a :class:`TrainingSet` subclass and one
``@TRAINING_SETS.register("name")`` line; ``main.py --help`` lists the registered names
(``--data.train_sets``).
"""

from __future__ import annotations

import abc
import inspect
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from PIL import Image
from prettytable import PrettyTable

from dataloaders.constants import POSITIVE_RADIUS_M
from dataloaders.eval_sets import DataRoots
from dataloaders.place_sampling import PlaceLoader, place_loader
from dataloaders.transforms import decode_size

logger = logging.getLogger(__name__)

ImageTransform = Callable[[Image.Image], torch.Tensor]


@dataclass(frozen=True)
class TrainingContext:
    """What the data module gives every training set.

    Attributes:
        img_per_place: ``K``.
        image_size: training ``(height, width)``.
        val_image_size: validation ``(height, width)`` (how a set describes images for mining).
        transform: the training transform (PIL -> ``[3, H, W]``).
        seed: the data seed (orders, draws, augmentation).
        num_workers, persistent_workers: DataLoader settings.
        roots: the data roots (``msls_root`` and the others).
        batches_per_epoch: the first training set's batches per epoch (None for the first set).
    """

    img_per_place: int
    image_size: tuple[int, int]
    val_image_size: tuple[int, int]
    transform: ImageTransform
    seed: int
    num_workers: int
    persistent_workers: bool
    roots: DataRoots
    batches_per_epoch: int | None = None

    @property
    def decode_size(self) -> tuple[int, int] | None:
        return decode_size(self.image_size)


class TrainingSet(abc.ABC):
    """One source of training batches (see the module docstring)."""

    name: str

    @property
    @abc.abstractmethod
    def batches_per_epoch(self) -> int: ...

    @abc.abstractmethod
    def loader(self) -> PlaceLoader:
        """This epoch's loader of ``(images [P, K, 3, H, W], labels [P, K])``."""

    @abc.abstractmethod
    def summary_rows(self) -> list[tuple[str, object]]:
        """``(what, value)`` rows of the set's summary table."""

    def prepare(self, trainer: pl.Trainer | None) -> None:
        """Called before the first loader, with the network built and on its device."""

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs besides the loader's position (saved in checkpoints)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def summary(self) -> str:
        table = PrettyTable([self.name, "value"], align="l")
        for row in self.summary_rows():
            table.add_row(list(row))
        return table.get_string()


class TrainingSetRegistry:
    """Name -> builder ``(context, **options) -> TrainingSet``."""

    def __init__(self) -> None:
        self._builders: dict[str, Callable[..., TrainingSet]] = {}

    def register(self, name: str) -> Callable[[Callable[..., TrainingSet]], Callable[..., TrainingSet]]:
        def decorator(builder: Callable[..., TrainingSet]) -> Callable[..., TrainingSet]:
            if name in self._builders:
                raise ValueError(f"training set {name!r} is registered twice")
            self._builders[name] = builder
            return builder

        return decorator

    def build(self, name: str, context: TrainingContext, **options: Any) -> TrainingSet:
        """The training set ``name`` with ``options``; an unknown name or option is one line."""
        from utils.errors import UserError

        if name not in self._builders:
            raise UserError(f"unknown training set {name!r} in train_sets=; registered: {', '.join(self.names())}")
        builder = self._builders[name]
        known = list(inspect.signature(builder).parameters)[1:]
        unknown = [option for option in options if option not in known]
        if unknown:
            raise UserError(f"train_sets={{{name!r}: ...}} has no option {', '.join(map(repr, unknown))}; "
                            f"its options: {', '.join(known)}")
        return builder(context, **options)

    def names(self) -> list[str]:
        return sorted(self._builders)


TRAINING_SETS = TrainingSetRegistry()


@TRAINING_SETS.register("gsv_cities")
class GSVCitiesTrainingSet(TrainingSet):
    """GSV-Cities places (see :mod:`dataloaders.gsv_cities`); its options are the data module's
    GSV-Cities flags (``data_root``, ``cities``, ``batch_size``, ...)."""

    name = "gsv_cities"

    def __init__(self, context: TrainingContext, data_root: str | os.PathLike[str], cities: list[str] | None = None,
                 batch_size: int = 60, min_img_per_place: int = 4, shuffle_all: bool = False,
                 random_sample_from_each_place: bool = True) -> None:
        from dataloaders.gsv_cities import GSV_CITIES, GSVCitiesDataset

        self.context, self.data_root, self.batch_size, self.shuffle_all = context, data_root, batch_size, shuffle_all
        self.cities = list(GSV_CITIES if cities is None else cities)
        self.dataset = GSVCitiesDataset(
            data_root, cities=self.cities, img_per_place=context.img_per_place, min_img_per_place=min_img_per_place,
            sample="random" if random_sample_from_each_place else "recent", transform=context.transform,
            decode_size=context.decode_size, seed=context.seed)

    @property
    def batches_per_epoch(self) -> int:
        return -(-self.dataset.num_places // self.batch_size)

    def loader(self) -> PlaceLoader:
        return place_loader(self.dataset, self.batch_size, self.context.seed, self.shuffle_all,
                            self.context.num_workers, self.context.persistent_workers)

    def summary_rows(self) -> list[tuple[str, object]]:
        return [("root", self.data_root), (f"cities ({len(self.cities)})", ", ".join(self.cities)),
                ("places", self.dataset.num_places), ("images", self.dataset.num_images),
                ("batch size", f"{self.batch_size} places x {self.context.img_per_place} images"),
                ("sampling", f"{self.dataset.sample}, places {'shuffled' if self.shuffle_all else 'in order'}"),
                ("iterations per epoch", self.batches_per_epoch)]


@TRAINING_SETS.register("msls_cliques")
class MSLSCliquesTrainingSet(TrainingSet):
    """CliqueMining's MSLS batches (see :mod:`dataloaders.msls_cliques`), from ``msls_root``.

    Options: ``cities`` (None: every city of ``train_val``), ``batch_size`` (places per batch),
    ``similar_places``, ``threshold_m``, ``descriptors`` (``training``, a checkpoint file or a
    released model's name), ``descriptors_path`` (a local copy of that release), ``cache_dir`` (of
    the cluster descriptors), ``recompute_descriptors``, ``num_batches`` (per epoch; default: as
    many as the first training set's), ``descriptor_image_size`` (the clusters' images are resized
    to it to be described; None: the validation size) and ``descriptor_batch_size``.
    """

    name = "msls_cliques"

    def __init__(self, context: TrainingContext, cities: list[str] | None = None, batch_size: int = 30,
                 similar_places: int = 15, threshold_m: float = POSITIVE_RADIUS_M, descriptors: str = "training",
                 descriptors_path: str | None = None,
                 cache_dir: str = "logs/descriptor_cache", recompute_descriptors: bool = False,
                 num_batches: int | None = None, descriptor_image_size: tuple[int, int] | None = (322, 322),
                 descriptor_batch_size: int = 64) -> None:
        from dataloaders.msls_cliques import MSLSCliquesDataset
        from utils.errors import UserError

        if context.roots.msls_root is None and context.roots.data_dir is None:
            raise UserError("the msls_cliques training set reads MSLS from msls_root=<folder holding train_val/> "
                            "(or data_dir=<folder holding mapillary/>); set one")
        root = context.roots.msls_root or context.roots.data_dir / "mapillary"
        if num_batches is None:
            num_batches = context.batches_per_epoch or 1000
        self.context, self.root, self.batch_size, self.descriptors = context, root, batch_size, descriptors
        self.cache_dir, self.recompute, self.descriptor_batch_size = cache_dir, recompute_descriptors, descriptor_batch_size
        self.descriptor_image_size = tuple(descriptor_image_size or context.val_image_size)
        self.descriptors_path = descriptors_path
        self.dataset = MSLSCliquesDataset(root, cities, num_batches, batch_size, context.img_per_place, similar_places,
                                          threshold_m, context.transform, context.decode_size)
        self._key = None

    @property
    def batches_per_epoch(self) -> int:
        return len(self.dataset)

    def prepare(self, trainer: pl.Trainer | None) -> None:
        from dataloaders.cluster_descriptors import cluster_descriptors

        if self.dataset.descriptors is not None:
            return
        network = trainer.lightning_module if trainer is not None else None
        descriptors, self._key = cluster_descriptors(
            self.dataset, self.descriptors, network, self.descriptor_image_size, self.cache_dir, self.context.seed,
            batch_size=self.descriptor_batch_size, num_workers=self.context.num_workers,
            device=network.device if network is not None else None, key=self._key, recompute=self.recompute,
            released_path=self.descriptors_path)
        self.dataset.set_descriptors(descriptors)

    def loader(self) -> PlaceLoader:
        from dataloaders.msls_cliques import unwrap_batch

        seed = int(np.random.default_rng([self.context.seed, 2]).integers(2**31))  # apart from GSV-Cities' seeds
        return place_loader(self.dataset, 1, seed, False, self.context.num_workers,
                            self.context.persistent_workers, collate_fn=unwrap_batch)

    def state_dict(self) -> dict[str, Any]:
        return {} if self._key is None else {"descriptor_key": [self._key.set_name, self._key.canonical_json]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        from utils.evaluation.descriptor_cache import CacheKey

        if "descriptor_key" in state:
            self._key = CacheKey(*state["descriptor_key"])

    def summary_rows(self) -> list[tuple[str, object]]:
        data = self.dataset
        return [("root", self.root), (f"cities ({len(data.cities)})", ", ".join(c.name for c in data.cities)),
                ("clusters", sum(c.num_clusters for c in data.cities)), ("images", sum(len(c) for c in data.cities)),
                ("batch size", f"{data.batch_size} cliques x {data.img_per_place} images"),
                ("similar places, threshold", f"{data.similar_places}, {data.threshold_m:g} m"),
                ("cluster descriptors", self.descriptors), ("iterations per epoch", len(data))]
