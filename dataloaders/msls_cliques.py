"""MSLS clique batches: CliqueMining's training data (Izquierdo & Civera, "Close, But Not There").

MSLS ``train_val`` in its raw layout: ``<root>/train_val/<city>/{database,query}/`` with
``postprocessed.csv`` (``key, easting, northing, unique_cluster, ...``), ``raw.csv`` (``key, ...,
pano``) and ``images/<key>.jpg``. Panoramas are dropped; the database and query sides of a city
are one pool of images.

One batch of ``P`` places x ``K`` images (:func:`draw_clique_batch`):

1. a city, drawn in proportion to its number of clusters, never twice in one batch;
2. one of its clusters at random, and ``similar_places`` more drawn without replacement with a
   probability that rises with descriptor similarity (``max distance - distance``);
3. the images of those clusters, joined when closer than ``threshold_m`` metres (UTM);
4. cliques of ``K`` images (``networkx.find_cliques``), each one place of the batch; a clique
   and its neighbours leave the graph, so no two places of a batch are within the threshold;
5. the next city, until the batch has ``P`` places.

Item ``(b, seed)`` of :class:`MSLSCliquesDataset` is batch ``b`` drawn from ``seed`` (what
:class:`~dataloaders.place_sampling.PlaceSampler` yields), so batches are generated in the
DataLoader's worker processes and reproduce from the run's seed. Labels are
``b * P + place``: unique in a step on every rank.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import networkx
import numpy as np
import pandas as pd
import torch
from PIL import Image
from scipy.spatial.distance import pdist, squareform
from torch.utils.data import Dataset

from dataloaders.image_io import ImageDecodeError, load_image
from dataloaders.msls_csv import msls_flags, msls_integers, msls_positions, read_msls_csv
from utils.errors import UserError, UserFileError

logger = logging.getLogger(__name__)

POSTPROCESSED_COLUMNS: tuple[str, ...] = ("key", "easting", "northing", "unique_cluster")
SIDES: tuple[str, ...] = ("database", "query")
ImageTransform = Callable[[Image.Image], torch.Tensor]


class MissingImageError(UserFileError):
    """An MSLS image listed in a city's CSVs cannot be read. One line, also when a DataLoader
    worker raised it (the main process re-raises it with the worker's traceback in the text)."""

    def __init__(self, message: str) -> None:
        if "Original Traceback" in message:
            message = message.strip().splitlines()[-1].split(f"{type(self).__name__}: ", 1)[-1]
        super().__init__(message)


@dataclass(frozen=True)
class MSLSCity:
    """The images of one MSLS training city, panoramas dropped.

    ``files [N]`` paths relative to ``<root>/train_val`` (UTF-8 bytes), ``xy [N, 2]`` UTM easting,
    northing (m), ``cluster [N]`` the image's cluster as an index ``0..num_clusters-1`` (the
    ``unique_cluster`` values in increasing order).
    """

    name: str
    files: np.ndarray
    xy: np.ndarray
    cluster: np.ndarray
    num_clusters: int

    def __len__(self) -> int:
        return len(self.files)


def msls_train_val(root: str | os.PathLike[str]) -> Path:
    """``<root>/train_val``, or a ``UserFileError`` naming it."""
    folder = Path(root) / "train_val"
    if not folder.is_dir():
        raise UserFileError(f"MSLS: {folder} is not a folder; msls_root must hold MSLS's train_val/<city>/ folders")
    return folder


def msls_cities(root: str | os.PathLike[str]) -> list[str]:
    """Every city of ``<root>/train_val`` (folders with ``database/postprocessed.csv``), sorted."""
    folder = msls_train_val(root)
    return sorted(path.name for path in folder.iterdir() if (path / "database" / "postprocessed.csv").is_file())


def read_msls_city(root: str | os.PathLike[str], city: str) -> MSLSCity:
    """One city's images, both sides, without panoramas.

    Raises:
        UserFileError: the city's folder or a CSV is absent.
        UserError: a CSV is refused by :mod:`dataloaders.msls_csv` (unreadable, no row, a column
            missing, a position, cluster id or pano flag that is not one), or a key of
            postprocessed.csv is not in raw.csv.
    """
    city_dir = msls_train_val(root) / city
    if not city_dir.is_dir():
        raise UserFileError(f"MSLS: no city {city!r}: {city_dir} is not a folder")
    files, xy, clusters = [], [], []
    for side in SIDES:
        post_path, raw_path = city_dir / side / "postprocessed.csv", city_dir / side / "raw.csv"
        post = read_msls_csv(post_path, POSTPROCESSED_COLUMNS)
        raw = read_msls_csv(raw_path, ("key", "pano"))
        if raw["key"].duplicated().any():
            key = raw["key"][raw["key"].duplicated()].iloc[0]
            raise UserError(f"MSLS: key {key} is listed twice in {raw_path}; restore it from the MSLS download")
        pano = post["key"].map(pd.Series(msls_flags(raw, "pano", raw_path), index=raw["key"]))
        if pano.isna().any():
            key = post["key"][pano.isna()].iloc[0]
            raise UserError(f"MSLS: key {key} of {post_path} is not in {raw_path}; restore both from the MSLS download")
        keep = ~pano.to_numpy(dtype=bool)
        files += [f"{city}/{side}/images/{key}.jpg".encode() for key in post["key"][keep]]
        xy.append(msls_positions(post, post_path)[keep])
        clusters.append(msls_integers(post, "unique_cluster", post_path)[keep])
    values, cluster = np.unique(np.concatenate(clusters), return_inverse=True)
    return MSLSCity(name=city, files=np.array(files, dtype=object).astype(bytes), xy=np.concatenate(xy),
                    cluster=cluster.astype(np.int64), num_clusters=len(values))


def adjacency(xy: np.ndarray, threshold_m: float) -> np.ndarray:
    """``[N, N]`` bool: images closer than ``threshold_m`` (no self-loops). ``xy [N, 2]``."""
    if len(xy) < 2:
        return np.zeros((len(xy), len(xy)), dtype=bool)
    near = squareform(pdist(xy)) < threshold_m
    np.fill_diagonal(near, False)
    return near


def first_clique(near: np.ndarray, size: int) -> list[int] | None:
    """The first maximal clique (networkx's order) of at least ``size`` nodes, or None."""
    for clique in networkx.find_cliques(networkx.from_numpy_array(near)):
        if len(clique) >= size:
            return clique
    return None


def check_city_has_a_clique(city: MSLSCity, size: int, threshold_m: float, where: Path) -> None:
    """Refuse a city where no ``size`` images are pairwise closer than ``threshold_m``: it could
    never give a place. Tried cluster by cluster, then over the whole city."""
    for cluster in range(city.num_clusters):
        rows = np.flatnonzero(city.cluster == cluster)
        if len(rows) >= size and first_clique(adjacency(city.xy[rows], threshold_m), size) is not None:
            return
    if first_clique(adjacency(city.xy, threshold_m), size) is None:
        raise UserError(f"MSLS: city {city.name} ({where}) has no {size} images within {threshold_m:g} m of each "
                        f"other, so no place of img_per_place={size}; leave it out of cities=")


def draw_similar_clusters(rng: np.random.Generator, descriptors: np.ndarray, cluster: int, count: int) -> np.ndarray:
    """``cluster`` then up to ``count`` other clusters drawn without replacement, with probability
    proportional to ``max distance - distance`` in descriptor space. ``descriptors [C, D]``."""
    distances = np.linalg.norm(descriptors - descriptors[cluster], axis=1)
    weights = np.where(distances != 0, distances.max() - distances, 0.0)
    weights[cluster] = 0.0
    count = min(count, int(np.count_nonzero(weights)))
    others = rng.choice(len(weights), size=count, replace=False, p=weights / weights.sum()) if count else []
    return np.concatenate([[cluster], np.asarray(others, dtype=np.int64)]).astype(np.int64)


@dataclass(frozen=True)
class CliquePlace:
    """One place of a batch: ``city`` (index into the batch's cities) and ``rows [K]`` (its images)."""

    city: int
    rows: np.ndarray


def draw_clique_batch(rng: np.random.Generator, cities: Sequence[MSLSCity], descriptors: Sequence[np.ndarray],
                      batch_size: int, img_per_place: int, similar_places: int, threshold_m: float) -> list[CliquePlace]:
    """One batch of ``batch_size`` cliques (see the module docstring).

    Raises:
        UserError: every city was drawn and the batch still has fewer than ``batch_size`` places.
    """
    weights = np.array([city.num_clusters for city in cities], dtype=np.float64)
    places: list[CliquePlace] = []
    while len(places) < batch_size:
        if not weights.any():
            raise UserError(f"MSLS cliques: {len(cities)} cities gave only {len(places)} places for a batch of "
                            f"batch_size={batch_size}; lower batch_size or add cities")
        index = int(rng.choice(len(cities), p=weights / weights.sum()))
        weights[index] = 0.0  # no city twice in a batch
        city = cities[index]
        clusters = draw_similar_clusters(rng, descriptors[index], int(rng.integers(city.num_clusters)), similar_places)
        rows = np.flatnonzero(np.isin(city.cluster, clusters))
        near = adjacency(city.xy[rows], threshold_m)
        while len(places) < batch_size:
            clique = first_clique(near, img_per_place)
            if clique is None:
                break
            chosen = rng.choice(np.asarray(clique), img_per_place, replace=False)
            neighbours = np.flatnonzero(near[chosen].any(axis=0))
            places.append(CliquePlace(index, rows[chosen]))
            for removed in (chosen, neighbours):
                near[removed, :] = False
                near[:, removed] = False
    return places


class MSLSCliquesDataset(Dataset):
    """Batches of MSLS cliques; item ``(b, seed)`` is ``(images [P, K, 3, H, W], labels [P, K])``.

    Args:
        root: the folder holding ``train_val/``.
        cities: city folders to use; None: every city of ``train_val``.
        num_batches: batches per epoch.
        batch_size: ``P``, places per batch.
        img_per_place: ``K``, images per place.
        similar_places: clusters drawn by similarity besides the random one.
        threshold_m: images closer than this many metres are one place.
        transform: PIL image -> ``[3, H, W]``.
        decode_size: ``min_size`` for JPEG draft decoding.

    :meth:`set_descriptors` must be called (one ``[C, D]`` array per city) before drawing.
    """

    order_name = "MSLS-clique"
    resume_hint = "the run's msls_cliques options"

    def __init__(self, root: str | os.PathLike[str], cities: Sequence[str] | None, num_batches: int, batch_size: int,
                 img_per_place: int, similar_places: int, threshold_m: float, transform: ImageTransform,
                 decode_size: tuple[int, int] | None) -> None:
        if batch_size < 1 or num_batches < 1 or img_per_place < 2:
            raise UserError(f"MSLS cliques: batch_size={batch_size} and num_batches={num_batches} must be at least 1, "
                            f"img_per_place={img_per_place} at least 2")
        self.root = Path(root)
        names = list(cities) if cities is not None else msls_cities(root)
        if not names:
            raise UserFileError(f"MSLS: no city under {msls_train_val(root)}; expected <city>/database/postprocessed.csv")
        self.cities = [read_msls_city(root, name) for name in names]
        for city in self.cities:
            check_city_has_a_clique(city, img_per_place, threshold_m, self.root / "train_val" / city.name)
        self.num_batches, self.batch_size, self.img_per_place = num_batches, batch_size, img_per_place
        self.similar_places, self.threshold_m = similar_places, threshold_m
        self.transform, self.decode_size = transform, decode_size
        self.descriptors: list[np.ndarray] | None = None

    def set_descriptors(self, descriptors: Sequence[np.ndarray]) -> None:
        """One ``[C, D]`` array of cluster descriptors per city, in :attr:`cities` order."""
        if [len(d) for d in descriptors] != [city.num_clusters for city in self.cities]:
            raise ValueError("one descriptor per cluster of every city is needed")
        self.descriptors = [np.asarray(d, dtype=np.float32) for d in descriptors]

    def image_path(self, city: MSLSCity, row: int) -> Path:
        return self.root / "train_val" / city.files[row].decode()

    def __len__(self) -> int:
        return self.num_batches

    def draw(self, index: int, draw_seed: int) -> list[CliquePlace]:
        """The places of batch ``index`` drawn from ``draw_seed`` (no image read)."""
        if self.descriptors is None:
            raise RuntimeError("MSLSCliquesDataset: set_descriptors() first")
        rng = np.random.default_rng([draw_seed, index])
        return draw_clique_batch(rng, self.cities, self.descriptors, self.batch_size, self.img_per_place,
                                 self.similar_places, self.threshold_m)

    def load(self, path: Path) -> Image.Image:
        try:
            return load_image(path, min_size=self.decode_size)
        except (ImageDecodeError, FileNotFoundError) as error:
            raise MissingImageError(f"MSLS: cannot read {path} ({type(error).__name__}); restore it, or delete its "
                                    f"row from the city's postprocessed.csv") from None

    def __getitem__(self, index: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        batch_index, draw_seed = index
        places = self.draw(batch_index, draw_seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(draw_seed % 2**62)
            images = torch.stack([
                torch.stack([self.transform(self.load(self.image_path(self.cities[p.city], row))) for row in p.rows])
                for p in places])
        labels = batch_index * self.batch_size + torch.arange(self.batch_size, dtype=torch.int64)
        return images, labels[:, None].expand(-1, self.img_per_place).contiguous()


def unwrap_batch(items: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Collate of a loader whose every item is already a batch (its batches hold one item)."""
    (batch,) = items
    return batch
