"""The training data module: GSV-Cities batches for training, evaluation sets for validation."""

from __future__ import annotations

import logging
from typing import Any, Literal

import torch
from torch.utils.data import DataLoader

from dataloaders.eval_sets import DataRoots, EvalSet, load_eval_set
from dataloaders.gsv_cities import GSVCitiesDataModule
from dataloaders.transforms import EvalPreprocessing, eval_transform

log = logging.getLogger(__name__)


class VPRDataModule(GSVCitiesDataModule):
    """GSV-Cities training (see :class:`GSVCitiesDataModule` for its arguments) plus validation
    on evaluation sets read from the user's data roots.

    Args:
        val_set_names: evaluation sets validated every epoch (exact names or the published
            aliases); the first one ranks the checkpoints.
        train_augmentation: ``"randaugment"`` (the published RandAugment(3) recipe) or ``"none"``
            (resize and normalise only; short from-scratch runs such as the toy demo learn better).
        val_image_size: ``(H, W)`` of validation images; ``None`` uses the training size.
        val_batch_size: images per validation batch; ``None`` uses ``batch_size * img_per_place``.
        data_dir, index_dir, msls_root, pitts_root, nordland_root, sped_root: where the
            evaluation images and index files are (see ``eval.py --help``).
        **kwargs: the GSV-Cities arguments.
    """

    def __init__(
        self,
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
        **kwargs: Any,
    ) -> None:
        if train_augmentation not in ("randaugment", "none"):
            raise ValueError(f"train_augmentation={train_augmentation!r}; expected randaugment or none")
        super().__init__(**kwargs)
        self.train_augmentation = train_augmentation
        if train_augmentation == "none":
            self.train_transform = eval_transform(self.image_size)
        self.val_set_names = list(val_set_names)
        self.val_image_size = tuple(val_image_size) if val_image_size is not None else None
        self.val_batch_size = val_batch_size
        self.data_roots = DataRoots(
            data_dir=data_dir, index_dir=index_dir, msls_root=msls_root,
            pitts_root=pitts_root, nordland_root=nordland_root, sped_root=sped_root,
        )
        self.val_sets: list[EvalSet] = []

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        if stage in (None, "fit", "validate") and not self.val_sets:
            self.val_sets = [load_eval_set(name, self.data_roots) for name in self.val_set_names]
            for eval_set in self.val_sets:
                eval_set.check_files_exist()
                log.info("validation set %s: %d database images, %d queries", eval_set.name, eval_set.num_db, eval_set.num_queries)

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
