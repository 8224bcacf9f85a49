"""VPRDataModule: the training augmentation switch and validation sets from the user's roots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dataloaders.vpr_datamodule import VPRDataModule
from utils.errors import UserError


def _image() -> Image.Image:
    pixels = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def test_augmentation_none_is_deterministic_and_randaugment_is_not():
    plain = VPRDataModule(data_root="unused", image_size=(56, 56), train_augmentation="none")
    assert torch.equal(plain.train_transform(_image()), plain.train_transform(_image()))
    augmented = VPRDataModule(data_root="unused", image_size=(56, 56))
    assert augmented.train_transform is None  # the data module's RandAugment(3) recipe
    with pytest.raises(ValueError, match="train_augmentation='flip'"):
        VPRDataModule(data_root="unused", train_augmentation="flip")


def test_validation_sets_come_from_the_data_roots_in_dataset_order(small_toy_world: Path):
    world = small_toy_world
    module = VPRDataModule(data_root=str(world / "gsv-cities"), cities=["Bangkok"], image_size=(56, 56),
                           num_workers=0, val_set_names=["SPED", "pitts30k_val"], data_dir=str(world))
    module.setup("validate")
    assert [s.name for s in module.val_sets] == ["sped", "pitts30k_val"]
    loaders = module.val_dataloader()
    images, indices = next(iter(loaders[0]))
    assert images.shape[1:] == (3, 56, 56)
    assert indices.tolist() == list(range(len(indices)))


def test_one_place_per_batch_is_refused_in_one_line(tmp_path: Path):
    with pytest.raises(UserError, match=r"^batch_size=1 places per batch: the loss compares places, give at least 2$"):
        VPRDataModule(data_root=str(tmp_path), batch_size=1)
