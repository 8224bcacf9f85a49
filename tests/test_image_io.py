"""Decoding users' own photos: any mode, EXIF orientation, JPEG draft mode, clear errors."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, features

from dataloaders.device_decode import needs_pil
from dataloaders.image_io import ImageDecodeError, decodable_image_suffixes, load_image
from dataloaders.size_buckets import oriented_size


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


def test_exif_orientation_is_ignored_as_published_and_applied_when_asked(tmp_path: Path):
    path = tmp_path / "phone.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: rotate 90 degrees clockwise to view
    _photo().save(path, exif=exif)
    with Image.open(path) as stored:
        assert np.array_equal(np.asarray(load_image(path)), np.asarray(stored.convert("RGB")))  # as PIL decodes it
    image = load_image(path, exif_transpose=True)
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


def _sixteen_bit_values(width: int = 64, height: int = 48) -> np.ndarray:
    """``[H, W]`` 16-bit values: a diagonal ramp around 97 * 257, the mean of a typical photo."""
    ramp = np.add.outer(np.arange(height), np.arange(width)) * 300
    return (97 * 257 - ramp.mean() + ramp).astype(np.uint16)


@pytest.mark.parametrize(
    ("suffix", "stored"),
    [
        ("png", lambda raw: Image.fromarray(raw)),  # PNG 16-bit greyscale: mode I;16
        ("tif", lambda raw: Image.fromarray(raw.astype(np.int32))),  # 32-bit integer TIFF: mode I
        ("tif", lambda raw: Image.fromarray((raw / 65535).astype(np.float32))),  # float TIFF in [0, 1]: mode F
    ],
    ids=["I;16", "I", "F"],
)
def test_high_bit_depth_greyscale_scales_to_eight_bits(tmp_path: Path, suffix: str, stored) -> None:
    raw = _sixteen_bit_values()
    path = tmp_path / f"grey16.{suffix}"
    stored(raw).save(path)
    pixels = np.asarray(load_image(path)).astype(np.int64)
    expected = raw.astype(np.int64) * 255 / 65535  # 16 bits to 8, computed from the raw values
    for channel in range(3):
        assert np.abs(pixels[..., channel] - expected).max() <= 1  # rounding: >> 8 and / 257 differ by 1 at most
    assert abs(pixels.mean() - 97) < 1  # Pillow's own conversion gives ~255, nearly white


def test_image_suffixes_are_the_formats_pillow_decodes_here() -> None:
    suffixes = decodable_image_suffixes()
    assert {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".gif"} <= suffixes
    assert (".webp" in suffixes) == features.check("webp")
    # identified but never decoded (stubs, MPEG) or written only (PDF)
    assert not {".h5", ".hdf", ".grib", ".bufr", ".wmf", ".mpg", ".pdf", ".txt"} & suffixes


def test_a_decompression_bomb_is_one_line_naming_the_file(tmp_path: Path, monkeypatch):
    path = tmp_path / "bomb.png"
    Image.new("L", (100, 100)).save(path)  # 10,000 pixels; Pillow refuses more than twice its limit
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    for read in (load_image, oriented_size):
        with pytest.raises(ImageDecodeError) as info:
            read(path)
        message = str(info.value)
        assert str(path) in message and "Image size (10000 pixels) exceeds limit of 2000 pixels" in message
        assert "decompression bomb" in message and "\n" not in message


def test_an_image_under_the_pixel_limit_opens_without_pillows_warning(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "large.png"
    Image.new("L", (40, 40)).save(path)  # 1,600 pixels: over Pillow's warning, under its (and the project's) limit
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert load_image(path).size == (40, 40)
        assert oriented_size(path) == (40, 40)
        assert needs_pil(path.read_bytes())
    assert not [warning for warning in caught if issubclass(warning.category, Image.DecompressionBombWarning)]
    with pytest.warns(Image.DecompressionBombWarning):  # silenced in the image reader only, not for other code
        Image.open(path).close()
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 700)  # 1,600 > 2 x 700: refused as before, by the reader
    with pytest.raises(ImageDecodeError, match="exceeds limit of 1400 pixels"):
        load_image(path)
    assert needs_pil(path.read_bytes())  # PIL's decode refuses it, naming the file
