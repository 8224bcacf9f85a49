"""dataloaders.size_buckets: same-size batches for native-resolution evaluation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dataloaders.eval_sets.base import EvalImages
from dataloaders.image_io import ImageDecodeError, load_image
from dataloaders.size_buckets import SizeBucketBatchSampler, native_size_batches, oriented_size, resized_sizes
from dataloaders.transforms import EvalPreprocessing, eval_transform

EXIF_ORIENTATION = 0x0112


def write_jpeg(path: Path, size: tuple[int, int], seed: int = 0, orientation: int | None = None) -> Path:
    """A random ``size`` (width, height) JPEG, with an EXIF orientation tag when given."""
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8))
    exif = Image.Exif()
    if orientation is not None:
        exif[EXIF_ORIENTATION] = orientation
    image.save(path, format="JPEG", exif=exif.tobytes())
    return path


@pytest.mark.parametrize("orientation", [None, 1, 3, 5, 6, 7, 8])
def test_oriented_size_is_the_size_load_image_returns(tmp_path: Path, orientation: int | None) -> None:
    path = write_jpeg(tmp_path / "photo.jpg", (60, 40), orientation=orientation)
    assert oriented_size(path) == load_image(path, exif_transpose=True).size
    assert oriented_size(path) == ((40, 60) if orientation in (5, 6, 7, 8) else (60, 40))
    assert oriented_size(path, exif_transpose=False) == load_image(path).size == (60, 40)  # as published


def test_unreadable_and_missing_files_are_named(tmp_path: Path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    with pytest.raises(ImageDecodeError, match="broken.jpg"):
        oriented_size(broken)
    with pytest.raises(FileNotFoundError):
        oriented_size(tmp_path / "missing.jpg")


def test_resized_sizes_round_to_multiples_of_14(tmp_path: Path) -> None:
    paths = [write_jpeg(tmp_path / "a.jpg", (640, 480)), write_jpeg(tmp_path / "b.jpg", (30, 5), orientation=6)]
    native = EvalPreprocessing(None, patch_size=14, max_side=None, exif_transpose=True)
    assert resized_sizes(paths, native) == [(644, 476), (14, 28)]  # 5 -> 14 at least, 30 -> 28
    dinov3 = EvalPreprocessing(None, patch_size=16, max_side=None, exif_transpose=True)
    assert resized_sizes(paths, dinov3) == [(640, 480), (16, 32)]  # DINOv3's patch: 5 -> 16 at least, 30 -> 32
    as_stored = EvalPreprocessing(None, patch_size=14, max_side=None)
    assert resized_sizes(paths, as_stored) == [(644, 476), (28, 14)]  # the EXIF tag ignored, as published


def test_batches_hold_one_size_and_cover_every_index_once() -> None:
    sizes = [(28, 14), (14, 14), (28, 14), (28, 14), (14, 14), (42, 42), (28, 14)]
    batches = list(SizeBucketBatchSampler(sizes, batch_size=3))
    # sizes in the order they first appear, indices increasing within a size
    assert batches == [[0, 2, 3], [6], [1, 4], [5]]
    assert len(SizeBucketBatchSampler(sizes, batch_size=3)) == 4


def test_pixel_cap_shrinks_batches_of_large_images_but_keeps_one() -> None:
    sizes = [(100, 100)] * 5 + [(10, 10)] * 5 + [(1000, 1000)]
    batches = list(SizeBucketBatchSampler(sizes, batch_size=4, max_pixels=25_000))
    assert batches == [[0, 1], [2, 3], [4], [5, 6, 7, 8], [9], [10]]
    for batch in batches:
        pixels = sum(sizes[i][0] * sizes[i][1] for i in batch)
        assert len(batch) == 1 or pixels <= 25_000


@pytest.mark.parametrize(("batch_size", "max_pixels", "message"), [(0, None, "batch_size 0"), (2, 0, "max_pixels 0")])
def test_bad_limits_are_named(batch_size: int, max_pixels: int | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SizeBucketBatchSampler([(14, 14)], batch_size, max_pixels)


def test_size_batches_give_the_descriptors_of_one_image_at_a_time(tmp_path: Path) -> None:
    from models import build_vpr_net
    from utils.evaluation.inference import compute_descriptors

    shapes = [(70, 42), (56, 56), (70, 42), (42, 70), (56, 56), (70, 42)]
    paths = [write_jpeg(tmp_path / f"{i}.jpg", shape, seed=i) for i, shape in enumerate(shapes)]
    torch.manual_seed(0)
    model = build_vpr_net("resnet18", {"layers_to_crop": [3, 4], "layers_to_freeze": -1}, "GeM", {})
    images = EvalImages(paths, eval_transform(None, model.patch_size))
    one_at_a_time = compute_descriptors(model, images, 1, 0, torch.device("cpu"))
    batches = native_size_batches(paths, 8, EvalPreprocessing(None, model.patch_size))
    assert batches.num_sizes == 3 and len(batches) == 3
    batched = compute_descriptors(model, images, 8, 0, torch.device("cpu"), batch_sampler=batches)
    np.testing.assert_allclose(batched, one_at_a_time, atol=1e-5)
