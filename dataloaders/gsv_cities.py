"""GSV-Cities training data: places of P x K batches, as in the published training recipe.

The dataset lives under a root with ``Dataframes/<City>.csv`` (one row per image, columns
``place_id, year, month, northdeg, city_id, lat, lon, panoid``) and
``Images/<city_id>/<file name>``, file names rebuilt from the CSV row (see
:func:`image_file_name`). Place ids repeat across cities; they are made unique as
``city_index * 10**5 + place_id`` with ``city_index`` the city's position in the list used.

One item is one place: ``K`` of its images (``[K, 3, H, W]``) and its id repeated ``K`` times.
The images are drawn at random without replacement, anew every epoch (``sample="random"``),
or are the place's ``K`` most recent (``sample="recent"``: sorted by year then month,
newest first). A batch of ``P`` places is ``[P, K, 3, H, W]`` and ``[P, K]``.

Draws are reproducible: :class:`PlaceSampler` hands every place a seed derived from
``(seed, epoch)``, and the dataset seeds both its image choice and the augmentation from
it, so batches do not depend on the number of workers. :class:`PlaceLoader` saves where an epoch
is in that order in every checkpoint, so a run resumed mid-epoch trains on the batches the
uninterrupted run would have.

A file that cannot be read (corrupt, truncated, missing) is replaced by another image of
the same place, with a :class:`CorruptImageWarning` naming it.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from PIL import Image
from prettytable import PrettyTable
from torch.utils.data import Dataset

from dataloaders.image_io import ImageDecodeError, load_image
from dataloaders.place_sampling import PlaceLoader, place_loader
from dataloaders.transforms import decode_size, train_transform
from utils.errors import UserError, UserFileError

logger = logging.getLogger(__name__)

GSV_CITIES: tuple[str, ...] = (
    "Bangkok", "BuenosAires", "LosAngeles", "MexicoCity", "OSL", "Rome", "Barcelona", "Chicago",
    "Madrid", "Miami", "Phoenix", "TRT", "Boston", "Lisbon", "Medellin", "Minneapolis", "PRG",
    "WashingtonDC", "Brussels", "London", "Melbourne", "Osaka", "PRS",
)
"""The 23 training cities of the paper, in the published order (names of the CSV files)."""

CSV_COLUMNS: tuple[str, ...] = ("place_id", "year", "month", "northdeg", "city_id", "lat", "lon", "panoid")
INTEGER_COLUMNS: tuple[str, ...] = ("place_id", "year", "month", "northdeg")
PLACE_ID_STRIDE = 10**5

SampleMode = Literal["random", "recent"]
ImageTransform = Callable[[Image.Image], torch.Tensor]


class CorruptImageWarning(UserWarning):
    """A training image could not be read and another image of its place was used."""


class UnreadablePlaceError(UserError):
    """No image of a place can be read: training cannot draw its ``K`` images (one line, also
    when a DataLoader worker raised it: see :class:`utils.errors.UserError`)."""


def image_file_name(place_id: int, year: int, month: int, northdeg: int, city_id: str, lat: str, lon: str,
                    panoid: str) -> str:
    """GSV-Cities file name of one image (arguments in CSV column order); ``lat`` and ``lon``
    exactly as written in the CSV."""
    return f"{city_id}_{place_id:07d}_{year:04d}_{month:02d}_{northdeg:03d}_{lat}_{lon}_{panoid}.jpg"


def check_gsv_root(root: Path) -> None:
    """Raise ``FileNotFoundError`` unless ``root`` holds GSV-Cities' ``Dataframes/`` folder."""
    if not (Path(root) / "Dataframes").is_dir():
        raise UserFileError(f"GSV-Cities: {Path(root) / 'Dataframes'} is not a folder; "
                            "expected <root>/Dataframes/<City>.csv and <root>/Images/")


def read_city_csv(root: Path, city: str) -> pd.DataFrame:
    """Rows of ``<root>/Dataframes/<city>.csv``, with ``lat``/``lon`` kept as text.

    Raises:
        FileNotFoundError: the CSV is absent.
        ValueError: the file is empty or not CSV, a column is missing, an integer column holds something else, or a place id
            is too large to be made unique with ``city_index * 10**5``.
    """
    path = root / "Dataframes" / f"{city}.csv"
    if not path.is_file():
        raise UserFileError(f"GSV-Cities: no CSV for city {city!r}: {path} does not exist")
    try:
        frame = pd.read_csv(path, dtype={"city_id": str, "lat": str, "lon": str, "panoid": str})
    except pd.errors.EmptyDataError:
        raise UserError(f"GSV-Cities CSV {path} is empty (no header, no rows): re-download it, or leave {city} "
                        f"out of cities=") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise UserError(f"GSV-Cities CSV {path} is not a readable CSV ({str(error).strip().splitlines()[0]}): "
                        f"re-download it, or leave {city} out of cities=") from None
    missing = [column for column in CSV_COLUMNS if column not in frame.columns]
    if missing:
        raise UserError(f"GSV-Cities CSV {path} lacks column(s) {', '.join(missing)}; "
                        f"expected columns {', '.join(CSV_COLUMNS)}")
    if len(frame) == 0:
        raise UserError(f"GSV-Cities CSV {path} has a header but no rows: re-download it, or leave {city} out of cities")
    for column in INTEGER_COLUMNS:
        if not pd.api.types.is_integer_dtype(frame[column]):
            raise UserError(f"GSV-Cities CSV {path}: column {column!r} must hold integers, "
                            f"found dtype {frame[column].dtype}")
    if len(frame) and (frame["place_id"].min() < 0 or frame["place_id"].max() >= PLACE_ID_STRIDE):
        raise UserError(f"GSV-Cities CSV {path}: place_id must be in [0, {PLACE_ID_STRIDE}), "
                        f"found {frame['place_id'].min()}..{frame['place_id'].max()}")
    if frame[["city_id", "lat", "lon", "panoid"]].isna().any().any():
        raise UserError(f"GSV-Cities CSV {path}: empty city_id, lat, lon or panoid value")
    return frame[list(CSV_COLUMNS)]


@dataclass(frozen=True)
class PlaceTable:
    """Images of every place in flat arrays, grouped by place (no per-image Python objects, so
    forked DataLoader workers share the memory instead of copying it).

    ``place_ids [P]`` unique ids; place ``i`` owns rows ``start[i] : start[i] + count[i]`` of
    ``files [N]`` (paths relative to ``<root>/Images``, UTF-8 bytes, in CSV order) and of
    ``recency [N]`` (for each place, its row offsets ``0..count-1`` from newest to oldest).
    """

    place_ids: np.ndarray
    start: np.ndarray
    count: np.ndarray
    files: np.ndarray
    recency: np.ndarray

    def __len__(self) -> int:
        return len(self.place_ids)

    @staticmethod
    def concatenate(tables: Sequence[PlaceTable]) -> PlaceTable:
        """One table with the places of ``tables`` in order (tables are compact: place ``i``'s
        rows follow place ``i - 1``'s)."""
        counts = np.concatenate([t.count for t in tables])
        return PlaceTable(
            place_ids=np.concatenate([t.place_ids for t in tables]),
            start=np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64),
            count=counts,
            files=np.concatenate([t.files for t in tables]),
            recency=np.concatenate([t.recency for t in tables]),
        )


def city_places(frame: pd.DataFrame, city_index: int, min_img_per_place: int, shuffle_seed: int) -> PlaceTable:
    """The places of one city's CSV rows with at least ``min_img_per_place`` images, in a random
    order drawn from ``shuffle_seed`` (the published code shuffles each city's rows);
    ids are ``city_index * 10**5 + place_id``."""
    names = [f"{row[4]}/{image_file_name(*row)}" for row in frame.itertuples(index=False, name=None)]
    place = frame["place_id"].to_numpy(dtype=np.int64)
    position = np.arange(len(frame))
    by_place = np.lexsort((position, place))  # grouped by place, CSV order inside
    newest_first = np.lexsort((position, -frame["month"].to_numpy(), -frame["year"].to_numpy(), place))
    ids, starts, counts = np.unique(place[by_place], return_index=True, return_counts=True)
    offset_in_place = np.empty(len(frame), dtype=np.int64)
    offset_in_place[by_place] = position - np.repeat(starts, counts)
    keep = np.flatnonzero(counts >= min_img_per_place)
    keep = keep[np.random.default_rng([shuffle_seed, city_index]).permutation(len(keep))]
    rows = np.concatenate([by_place[starts[i]:starts[i] + counts[i]] for i in keep] or [np.zeros(0, np.int64)])
    recent = np.concatenate([newest_first[starts[i]:starts[i] + counts[i]] for i in keep] or [np.zeros(0, np.int64)])
    kept_counts = counts[keep].astype(np.int64)
    return PlaceTable(
        place_ids=city_index * PLACE_ID_STRIDE + ids[keep],
        start=np.concatenate([[0], np.cumsum(kept_counts)[:-1]]).astype(np.int64),
        count=kept_counts,
        files=np.array([names[r].encode() for r in rows], dtype=bytes) if len(rows) else np.zeros(0, dtype="S1"),
        recency=offset_in_place[recent],
    )


def load_places(root: Path, cities: Sequence[str], min_img_per_place: int, shuffle_seed: int) -> PlaceTable:
    """Places of ``cities`` (in that order) with at least ``min_img_per_place`` images; see
    :func:`city_places`."""
    tables = [city_places(read_city_csv(root, city), index, min_img_per_place, shuffle_seed)
              for index, city in enumerate(cities)]
    empty = [city for city, table in zip(cities, tables) if len(table) == 0]
    if empty and len(empty) < len(cities):
        logger.warning("GSV-Cities: %s left out: no place has at least min_img_per_place=%d images",
                       ", ".join(empty), min_img_per_place)
    return PlaceTable.concatenate(tables)


class GSVCitiesDataset(Dataset):
    """Places of GSV-Cities; item ``i`` is ``(images [K, 3, H, W], place_ids [K])``.

    Args:
        root: folder holding ``Dataframes/`` and ``Images/``.
        cities: CSV names to use, in order (default: the 23 paper cities, :data:`GSV_CITIES`).
        img_per_place: ``K``, images returned per place.
        min_img_per_place: places with fewer images are dropped (must be >= ``img_per_place``).
        sample: ``"random"`` (``K`` images drawn anew for every draw seed) or ``"recent"``
            (the ``K`` most recent by year, month).
        transform: PIL image -> ``[3, H, W]`` tensor (default: the training transform at 224 x 224).
        decode_size: ``min_size`` for JPEG draft decoding, usually the transform's output size;
            ``None`` decodes at full size.
        seed: seeds the place order within each city, and the draws of ``dataset[i]`` when
            indexed with a bare integer.

    Indexing with ``(i, draw_seed)`` (what :class:`PlaceSampler` yields) draws the images and
    the augmentation from ``draw_seed``; a bare ``i`` uses a fixed draw.
    """

    order_name = "GSV-Cities"
    resume_hint = "the run's cities= and min_img_per_place="

    def __init__(self, root: str | os.PathLike[str], cities: Sequence[str] | None = None, img_per_place: int = 4,
                 min_img_per_place: int = 4, sample: SampleMode = "random", transform: ImageTransform | None = None,
                 decode_size: tuple[int, int] | None = (224, 224), seed: int = 1) -> None:
        self.root = Path(root)
        self.cities = tuple(GSV_CITIES if cities is None else cities)
        if img_per_place < 1:
            raise UserError(f"img_per_place={img_per_place}: must be at least 1")
        if img_per_place > min_img_per_place:
            raise UserError(f"img_per_place={img_per_place} must not exceed min_img_per_place={min_img_per_place}: "
                            "every place must have K images to give")
        if sample not in ("random", "recent"):
            raise UserError(f"sample={sample}: expected random or recent")
        if not self.cities:
            raise UserError("cities must name at least one GSV-Cities city")
        if len(set(self.cities)) != len(self.cities):
            raise UserError(f"cities={list(self.cities)} lists a city twice")
        check_gsv_root(self.root)
        self.img_per_place = img_per_place
        self.min_img_per_place = min_img_per_place
        self.sample = sample
        self.transform = transform if transform is not None else train_transform((224, 224))
        self.decode_size = decode_size
        self.seed = seed
        self.places = load_places(self.root, self.cities, min_img_per_place, seed)
        if len(self.places) == 0:
            raise UserError(f"GSV-Cities under {self.root}: no place of {', '.join(self.cities)} has "
                            f"at least min_img_per_place={min_img_per_place} images")

    @property
    def num_places(self) -> int:
        return len(self.places)

    @property
    def num_images(self) -> int:
        return int(self.places.count.sum())

    def image_paths(self, place_index: int) -> list[Path]:
        """Files of place ``place_index``, in CSV order."""
        start, count = self.places.start[place_index], self.places.count[place_index]
        return [self.root / "Images" / name.decode() for name in self.places.files[start:start + count]]

    def __len__(self) -> int:
        return len(self.places)

    def _candidate_order(self, place_index: int, rng: np.random.Generator) -> np.ndarray:
        """Offsets of all images of a place, the ``K`` to use first."""
        start, count = self.places.start[place_index], self.places.count[place_index]
        if self.sample == "recent":
            return self.places.recency[start:start + count]
        return rng.permutation(count)

    def _load(self, path: Path, place_id: int) -> Image.Image | None:
        try:
            return load_image(path, min_size=self.decode_size)
        except (ImageDecodeError, FileNotFoundError) as error:
            warnings.warn(f"GSV-Cities: cannot read {path} ({error}); using another image of place "
                          f"{place_id} instead", CorruptImageWarning, stacklevel=3)
            return None

    def _unreadable_place_message(self, place_id: int, paths: list[Path]) -> str:
        city = self.cities[place_id // PLACE_ID_STRIDE]
        shown = ", ".join(path.name for path in paths[:3]) + (", ..." if len(paths) > 3 else "")
        return (f"GSV-Cities: none of the {len(paths)} images of place {place_id % PLACE_ID_STRIDE} of {city} can be "
                f"read ({shown} in {paths[0].parent}); restore those files, or delete the place's rows from "
                f"{self.root / 'Dataframes' / f'{city}.csv'}")

    def __getitem__(self, index: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images [K, 3, H, W], place_ids [K] int64)`` of place ``index``.

        Raises:
            UnreadablePlaceError: no image of the place can be read.
        """
        place_index, draw_seed = (int(index), self.seed) if isinstance(index, (int, np.integer)) else index
        place_id = int(self.places.place_ids[place_index])
        paths = self.image_paths(place_index)
        rng = np.random.default_rng([draw_seed, place_index])
        images: list[Image.Image] = []
        for candidate in self._candidate_order(place_index, rng):
            image = self._load(paths[candidate], place_id)
            if image is not None:
                images.append(image)
            if len(images) == self.img_per_place:
                break
        if not images:
            raise UnreadablePlaceError(self._unreadable_place_message(place_id, paths))
        readable = len(images)
        while len(images) < self.img_per_place:  # too few readable images: repeat them
            images.append(images[len(images) % readable])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(rng.integers(0, 2**62)))
            tensors = torch.stack([self.transform(image) for image in images])
        return tensors, torch.full((self.img_per_place,), place_id, dtype=torch.int64)


class GSVCitiesDataModule(pl.LightningDataModule):
    """Lightning data module of GSV-Cities training: batches of ``P`` places x ``K`` images.

    ``train_dataloader()`` yields ``(images [P, K, 3, H, W], place_ids [P, K])``; the training
    step flattens them to ``[P*K, 3, H, W]`` and ``[P*K]``. Validation sets are wired by the
    caller; ``val_set_names`` is only stored for it.
    """

    def __init__(self, data_root: str, cities: list[str] | None = None, batch_size: int = 60, img_per_place: int = 4,
                 min_img_per_place: int = 4, image_size: tuple[int, int] = (224, 224), num_workers: int = 8,
                 shuffle_all: bool = False, random_sample_from_each_place: bool = True, seed: int = 1,
                 train_transform: ImageTransform | None = None, val_set_names: list[str] | None = None,
                 persistent_workers: bool = True) -> None:
        super().__init__()
        if batch_size < 1:
            raise UserError(f"batch_size={batch_size} (places per batch): must be at least 1")
        if num_workers < 0:
            raise UserError(f"num_workers={num_workers}: must be >= 0")
        self.data_root = data_root
        self.cities = list(GSV_CITIES if cities is None else cities)
        self.batch_size = batch_size
        self.img_per_place = img_per_place
        self.min_img_per_place = min_img_per_place
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.num_workers = num_workers
        self.shuffle_all = shuffle_all
        self.random_sample_from_each_place = random_sample_from_each_place
        self.seed = seed
        self.train_transform = train_transform
        self.val_set_names = list(val_set_names or [])
        self.persistent_workers = persistent_workers
        self.train_dataset: GSVCitiesDataset | None = None

    def setup(self, stage: str | None = None) -> None:
        if stage not in (None, "fit") or self.train_dataset is not None:
            return
        self.train_dataset = GSVCitiesDataset(
            self.data_root, cities=self.cities, img_per_place=self.img_per_place,
            min_img_per_place=self.min_img_per_place,
            sample="random" if self.random_sample_from_each_place else "recent",
            transform=self.train_transform or train_transform(self.image_size),
            decode_size=decode_size(self.image_size), seed=self.seed)
        logger.info("GSV-Cities training data\n%s", self.summary_table())

    @property
    def iterations_per_epoch(self) -> int:
        return math.ceil(self._dataset().num_places / self.batch_size)

    def _dataset(self) -> GSVCitiesDataset:
        if self.train_dataset is None:
            raise RuntimeError("GSVCitiesDataModule: call setup('fit') first")
        return self.train_dataset

    def summary_table(self) -> str:
        """Cities, places, images, batch size and iterations per epoch, as a text table."""
        dataset = self._dataset()
        table = PrettyTable(["GSV-Cities", "value"], align="l")
        table.add_row(["root", self.data_root])
        table.add_row([f"cities ({len(self.cities)})", ", ".join(self.cities)])
        table.add_row(["places", dataset.num_places])
        table.add_row(["images", dataset.num_images])
        table.add_row(["batch size", f"{self.batch_size} places x {self.img_per_place} images"])
        table.add_row(["image size", f"{self.image_size[0]} x {self.image_size[1]}"])
        table.add_row(["sampling", f"{dataset.sample}, places {'shuffled' if self.shuffle_all else 'in order'}"])
        table.add_row(["iterations per epoch", self.iterations_per_epoch])
        return table.get_string()

    def train_dataloader(self) -> PlaceLoader:
        """Batches of ``batch_size`` places, resumable mid-epoch (see :class:`PlaceLoader`)."""
        return place_loader(self._dataset(), self.batch_size, self.seed, self.shuffle_all, self.num_workers,
                            self.persistent_workers)
