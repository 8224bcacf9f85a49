"""Decoding users' own photos: any mode, EXIF orientation, JPEG draft mode, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dataloaders.image_io import ImageDecodeError, load_image


def _photo(width: int = 64, height: int = 48) -> Image.Image:
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    pixels[:, : width // 2] = (255, 0, 0)  # left half red, right half blue
    pixels[:, width // 2 :] = (0, 0, 255)
    return Image.fromarray(pixels)


@pytest.mark.parametrize("mode", ["L", "CMYK", "P", "RGBA"])
def test_every_mode_becomes_rgb(tmp_path: Path, mode: str):
    path = tmp_path / ("photo.png" if mode in ("P", "RGBA") else "photo.jpg")
    _photo().convert(mode).save(path)
    image = load_image(path)
    assert image.mode == "RGB" and image.size == (64, 48)


def test_exif_orientation_is_applied(tmp_path: Path):
    path = tmp_path / "phone.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: rotate 90 degrees clockwise to view
    _photo().save(path, exif=exif)
    image = load_image(path)
    assert image.size == (48, 64)  # portrait once rotated
    top, bottom = np.asarray(image)[2, 24], np.asarray(image)[-3, 24]
    assert top[0] > 200 and bottom[2] > 200  # the red half is now on top


def test_draft_mode_decodes_large_jpegs_at_a_reduced_scale_but_never_below_the_target(tmp_path: Path):
    path = tmp_path / "big.jpg"
    _photo(640, 480).save(path)
    assert load_image(path).size == (640, 480)
    assert load_image(path, min_size=(224, 224)).size == (320, 240)  # 1/2 keeps both sides >= 224
    assert load_image(path, min_size=(322, 322)).size == (640, 480)  # 1/2 would be too small
    png = tmp_path / "big.png"
    _photo(640, 480).save(png)
    assert load_image(png, min_size=(100, 100)).size == (640, 480)  # draft mode is JPEG-only


def test_truncated_and_missing_files_name_the_file(tmp_path: Path):
    path = tmp_path / "broken.jpg"
    _photo().save(path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ImageDecodeError, match="broken.jpg"):
        load_image(path)
    with pytest.raises(FileNotFoundError):
        load_image(tmp_path / "absent.jpg")
