"""Cluster descriptors of MSLS cliques: one image per ``unique_cluster``, described by a model.

The model is ``"training"`` (the network being trained, as it is when training starts), a
checkpoint file, or a released model's name (e.g. ``dinov2_salad``). Descriptors are cached
(:class:`utils.evaluation.descriptor_cache.DescriptorCache`) under a key naming the weights
(checkpoint SHA-256, released name, or the SHA-256 of the training network's initial
weights), the cities, the chosen images and the image size; a resumed run reads the entry
of its first start by key, so it draws the batches the uninterrupted run would have.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from dataloaders.image_io import load_image
from dataloaders.msls_cliques import MSLSCity, MSLSCliquesDataset
from dataloaders.transforms import EvalPreprocessing
from utils.errors import UserError
from utils.evaluation.descriptor_cache import CacheKey, DescriptorCache, make_cache_key
from utils.evaluation.inference import compute_descriptors

TRAINING_NETWORK = "training"
"""``descriptors=training``: the network being trained, at the start of training."""


def representatives(cities: Sequence[MSLSCity], seed: int) -> list[np.ndarray]:
    """One image row per cluster of every city (``[C]`` per city), drawn at random from ``seed``."""
    chosen = []
    for index, city in enumerate(cities):
        rng = np.random.default_rng([seed, index])
        order = rng.permutation(len(city))
        first = np.full(city.num_clusters, -1, dtype=np.int64)
        first[city.cluster[order[::-1]]] = order[::-1]  # the last write wins: the first in ``order``
        chosen.append(first)
    return chosen


class RepresentativeImages(Dataset):
    """Item ``i``: ``(image [3, H, W], i)`` of the ``i``-th chosen image over all cities."""

    def __init__(self, dataset: MSLSCliquesDataset, rows: Sequence[np.ndarray], preprocessing: EvalPreprocessing) -> None:
        self.paths = [dataset.image_path(city, int(row)) for city, city_rows in zip(dataset.cities, rows) for row in city_rows]
        self.dataset, self.preprocessing = dataset, preprocessing
        self.transform = preprocessing.transform()

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path = self.paths[index]
        if not path.is_file():
            self.dataset.load(path)  # raises the one-line MissingImageError
        return self.transform(load_image(path, min_size=self.preprocessing.decode_size)), index


def weights_identity(model: str, network: torch.nn.Module | None) -> tuple[str | None, dict[str, str]]:
    """``(checkpoint file or None, settings)`` naming the weights for the cache key."""
    if model == TRAINING_NETWORK:
        if network is None:
            raise ValueError("descriptors=training needs the network being trained")
        digest = hashlib.sha256()
        for name, tensor in network.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
        return None, {"weights": f"training network sha256 {digest.hexdigest()}"}
    if Path(model).is_file():
        return model, {"weights": "checkpoint"}
    return None, {"weights": f"released {model}"}  # the release's file is checked against its SHA-256


def descriptor_model(model: str, network: torch.nn.Module | None, released_path: str | None = None) -> torch.nn.Module:
    """The network that describes the clusters (see the module docstring); ``released_path``: a
    local copy of the released model ``model``'s file (nothing is downloaded)."""
    if model == TRAINING_NETWORK:
        assert network is not None
        return network
    from models.loading import load_network
    from models.released import RELEASE_NAMES, paper_architecture

    if Path(model).is_file():
        return load_network(model, architecture=paper_architecture()).network
    if model not in RELEASE_NAMES:
        raise UserError(f"descriptors={model!r} is neither {TRAINING_NETWORK}, a checkpoint file nor a released model "
                        f"({', '.join(RELEASE_NAMES)})")
    return load_network(released_path, release=model).network


def cluster_descriptors(
    dataset: MSLSCliquesDataset, model: str, network: torch.nn.Module | None, image_size: tuple[int, int],
    cache_dir: str | os.PathLike[str], seed: int, batch_size: int = 64, num_workers: int = 0,
    device: torch.device | None = None, key: CacheKey | None = None, recompute: bool = False,
    released_path: str | None = None,
) -> tuple[list[np.ndarray], CacheKey]:
    """``[C, D]`` descriptors per city of ``dataset`` and their cache key.

    Args:
        model: ``training``, a checkpoint file, or a released model's name.
        released_path: a local copy of the released model's file.
        key: a resumed run's key: read that entry (refused in one line when it is gone).
        recompute: describe again even when the cache has the entry.
    """
    rows = representatives(dataset.cities, seed)
    cache = DescriptorCache(cache_dir)
    resumed = key is not None
    if key is None:
        checkpoint, settings = weights_identity(model, network)
        images = RepresentativeImages(dataset, rows, EvalPreprocessing(image_size))
        key = make_cache_key(checkpoint, "msls_cliques", image_size, image_paths=images.paths,
                             cities=[city.name for city in dataset.cities], seed=seed, **settings)
    descriptors = None if recompute else cache.load(key)
    if descriptors is None:
        if resumed and model == TRAINING_NETWORK:
            raise UserError(f"the cluster descriptors of the run being resumed ({key.file_stem}) are not in "
                            f"cache_dir={cache_dir}: resume with the run's cache_dir (they describe the network "
                            f"as it was when the run started)")
        images = RepresentativeImages(dataset, rows, EvalPreprocessing(image_size))
        describer = descriptor_model(model, network, released_path)
        was_training = describer.training
        device = device or next(describer.parameters()).device
        descriptors = compute_descriptors(describer, images, batch_size, num_workers, device,
                                          description="cluster descriptors")
        describer.train(was_training)
        cache.save(key, descriptors)
    splits = np.cumsum([city.num_clusters for city in dataset.cities])[:-1]
    return np.split(np.asarray(descriptors), splits), key
