"""utils.errors: what a user can fix, in one line with each tool's flag names."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from utils.errors import UserError, UserFileError, UserFileExistsError, render


class MissingImage(Dataset):
    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> torch.Tensor:
        raise UserFileError(f"image {index}.jpg is missing; restore it")


def test_a_user_error_raised_in_a_dataloader_worker_keeps_its_one_line() -> None:
    with pytest.raises(UserFileError) as info:
        list(DataLoader(MissingImage(), num_workers=1))
    assert render(info.value) == "image 0.jpg is missing; restore it"
    assert isinstance(info.value, FileNotFoundError)  # an `except FileNotFoundError` still catches it


def test_parameters_read_as_each_tools_flags() -> None:
    error = UserError("sped: image folder /d/SPEDTEST does not exist (set by data_dir=/d); leave it out of cities=")
    assert render(error, {"data_dir": "--data.data_dir", "cities": "--data.cities"}) == (
        "sped: image folder /d/SPEDTEST does not exist (set by --data.data_dir /d); leave it out of --data.cities"
    )
    assert render(error, {"data_dir": "--data_dir"}).endswith("(set by --data_dir /d); leave it out of cities=")
    # a name inside a longer one, or after a dot, is left alone
    assert render(UserError("val_image_size=[30, 30] and x.image_size=3"), {"image_size": "--image_size"}) == (
        "val_image_size=[30, 30] and x.image_size=3"
    )
    # a whole setting stands for a switch
    assert render(UserFileExistsError("a.npy exists; pass force=True to overwrite"), {"force=True": "--force"}) == (
        "a.npy exists; pass --force to overwrite"
    )
    assert render(UserError("")) == "UserError"
