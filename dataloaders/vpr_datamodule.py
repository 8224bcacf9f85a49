"""The training data module: one or more training sets (:mod:`dataloaders.training_sets`), evaluation
sets for validation."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Literal

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from dataloaders.eval_sets import DataRoots, EvalSet, load_eval_set
from dataloaders.gsv_cities import GSV_CITIES
from dataloaders.place_sampling import PlaceLoader
from dataloaders.training_sets import TRAINING_SETS, TrainingContext, TrainingSet
from dataloaders.transforms import EvalPreprocessing, eval_transform, train_transform
from utils.errors import UserError

log = logging.getLogger(__name__)


class VPRDataModule(pl.LightningDataModule):
    """Training sets (GSV-Cities by default) plus validation on evaluation sets read from the user's data roots.

    Every argument is a ``main.py --data.<name>`` flag (the help text is the line below).

    Args:
        data_root: the GSV-Cities folder, holding Dataframes/ and Images/.
        cities: the training cities (names of the CSV files); default: the paper's 23.
        batch_size: places per batch (P; the paper: 60).
        img_per_place: images drawn from each place (K; the paper: 4).
        min_img_per_place: places with fewer images are left out (the paper: 4).
        image_size: training image height and width (the paper: 224 224).
        num_workers: image-loading processes.
        shuffle_all: shuffle every place of every city together (default: places in city blocks, as published).
        random_sample_from_each_place: draw each place's K images at random every epoch (false: its K most recent).
        seed: seed of the place order and image draws (batches do not depend on the number of workers).
        persistent_workers: keep the loading processes between epochs.
        val_set_names: evaluation sets validated every epoch (exact names or the published aliases); the
            first one ranks the checkpoints.
        train_augmentation: randaugment (the published RandAugment(3) recipe) or none (resize and normalise
            only; short from-scratch runs such as the toy demo learn better).
        val_image_size: height and width of validation images; default: the training size.
        val_batch_size: images per validation batch; default: batch_size * img_per_place.
        data_dir: folder holding the evaluation sets in the published layout (mapillary/, Pittsburgh/,
            Nordland/, SPEDTEST/, datasets/ for the index files).
        index_dir: folder of the .npy index files; default: <data_dir>/datasets.
        msls_root: MSLS images; default: <data_dir>/mapillary.
        pitts_root: Pittsburgh images; default: <data_dir>/Pittsburgh.
        nordland_root: Nordland images; default: <data_dir>/Nordland.
        sped_root: SPED images; default: <data_dir>/SPEDTEST.
        train_sets: the training sets, by name, with their options (a mapping); every step takes one batch of
            each, one loss per set. gsv_cities takes the GSV-Cities flags above; msls_cliques reads msls_root.
    """

    def __init__(
        self,
        data_root: str,
        cities: list[str] | None = None,
        batch_size: int = 60,
        img_per_place: int = 4,
        min_img_per_place: int = 4,
        image_size: tuple[int, int] = (224, 224),
        num_workers: int = 8,
        shuffle_all: bool = False,
        random_sample_from_each_place: bool = True,
        seed: int = 1,
        persistent_workers: bool = True,
        val_set_names: list[str] = ["pitts30k_val", "pitts30k_test", "msls_val"],  # noqa: B006 (CLI default)
        train_augmentation: Literal["randaugment", "none"] = "randaugment",
        val_image_size: tuple[int, int] | None = None,
        val_batch_size: int | None = None,
        data_dir: str | None = None,
        index_dir: str | None = None,
        msls_root: str | None = None,
        pitts_root: str | None = None,
        nordland_root: str | None = None,
        sped_root: str | None = None,
        train_sets: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        if train_augmentation not in ("randaugment", "none"):
            raise UserError(f"train_augmentation={train_augmentation!r}; expected randaugment or none")
        if batch_size < 2:  # one place per batch: no negative pair, the loss is 0 at every step
            raise UserError(f"batch_size={batch_size} places per batch: the loss compares places, give at least 2")
        if num_workers < 0:
            raise UserError(f"num_workers must be >= 0, got {num_workers}")
        super().__init__()
        self.data_root = data_root
        self.cities = list(GSV_CITIES if cities is None else cities)
        self.batch_size = batch_size
        self.img_per_place = img_per_place
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.num_workers = num_workers
        self.seed = seed
        self.persistent_workers = persistent_workers
        self.gsv_options = {"data_root": data_root, "cities": cities, "batch_size": batch_size,
                            "min_img_per_place": min_img_per_place, "shuffle_all": shuffle_all,
                            "random_sample_from_each_place": random_sample_from_each_place}
        self.train_set_options = {name: dict(options or {}) for name, options in (train_sets or {"gsv_cities": {}}).items()}
        if not self.train_set_options:
            raise UserError("train_sets must name at least one training set")
        self.train_augmentation = train_augmentation
        self.train_transform = eval_transform(self.image_size) if train_augmentation == "none" else None
        self.train_set_list: list[TrainingSet] = []
        self._train_set_states: dict[str, dict[str, Any]] = {}
        self.val_set_names = list(val_set_names)
        self.val_image_size = tuple(val_image_size) if val_image_size is not None else None
        self.val_batch_size = val_batch_size
        self.data_roots = DataRoots(
            data_dir=data_dir, index_dir=index_dir, msls_root=msls_root,
            pitts_root=pitts_root, nordland_root=nordland_root, sped_root=sped_root,
        )
        self.val_sets: list[EvalSet] = []

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit") and not self.train_set_list:
            self.train_set_list = self.build_train_sets()
        if stage in (None, "fit", "validate") and not self.val_sets:
            self.val_sets = [load_eval_set(name, self.data_roots) for name in self.val_set_names]
            for eval_set in self.val_sets:
                eval_set.check_files_exist()
                log.info("validation set %s: %d database images, %d queries", eval_set.name, eval_set.num_db, eval_set.num_queries)

    def build_train_sets(self) -> list[TrainingSet]:
        """The training sets of ``train_sets``, in order; the first one sets the epoch's length."""
        context = TrainingContext(
            img_per_place=self.img_per_place, image_size=self.image_size,
            val_image_size=tuple(self.val_image_size or self.image_size),
            transform=self.train_transform or train_transform(self.image_size), seed=self.seed,
            num_workers=self.num_workers, persistent_workers=self.persistent_workers, roots=self.data_roots)
        sets: list[TrainingSet] = []
        for name, options in self.train_set_options.items():
            if name == "gsv_cities":
                options = {**self.gsv_options, **options}
            sets.append(TRAINING_SETS.build(name, context, **options))
            sets[-1].load_state_dict(self._train_set_states.get(name, {}))
            log.info("training set %s\n%s", name, sets[-1].summary())
            if len(sets) == 1:
                context = dataclasses.replace(context, batches_per_epoch=sets[0].batches_per_epoch)
        return sets

    @property
    def iterations_per_epoch(self) -> int:
        return self.train_set_list[0].batches_per_epoch

    @property
    def train_dataset(self) -> Any:
        """The first training set's dataset (None before ``setup``)."""
        return self.train_set_list[0].dataset if self.train_set_list else None

    @property
    def failed_image_count(self) -> int:
        """Training images that could not be read (and were replaced) so far."""
        return sum(getattr(getattr(s, "dataset", None), "failed_image_count", 0) for s in self.train_set_list)

    def train_dataloader(self) -> PlaceLoader | dict[str, PlaceLoader]:
        """One training set: its loader (batches ``(images [P, K, 3, H, W], labels [P, K])``); several: a
        mapping name -> loader, each step a mapping of their batches."""
        if not self.train_set_list:
            self.setup("fit")
        for train_set in self.train_set_list:
            train_set.prepare(self.trainer)
        if len(self.train_set_list) == 1:
            return self.train_set_list[0].loader()
        return {train_set.name: train_set.loader() for train_set in self.train_set_list}

    def state_dict(self) -> dict[str, Any]:
        """What the training sets need to resume besides their loaders' positions."""
        return {"train_sets": {s.name: s.state_dict() for s in self.train_set_list}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._train_set_states = dict(state_dict.get("train_sets", {}))
        for train_set in self.train_set_list:
            train_set.load_state_dict(self._train_set_states.get(train_set.name, {}))

    def val_dataloader(self) -> list[DataLoader]:
        """Validation images decoded and resized exactly as eval.py does by default (full JPEG
        decode, PIL bilinear resize), so validation recall is evaluation recall."""
        preprocessing = EvalPreprocessing(self.val_image_size or tuple(self.image_size))
        batch_size = self.val_batch_size or self.batch_size * self.img_per_place
        return [
            DataLoader(
                eval_set.images(preprocessing.transform(), decode_size=preprocessing.decode_size),
                batch_size=batch_size,
                shuffle=False,
                num_workers=self.num_workers,
                pin_memory=torch.cuda.is_available(),
            )
            for eval_set in self.val_sets
        ]
