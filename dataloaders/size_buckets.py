"""Batches of same-size images for evaluation at native resolution.

Without a fixed ``--image_size`` every image keeps its aspect ratio (sides rounded to multiples
of the model's patch size, ``dataloaders.transforms.EvalPreprocessing``), so images of different sizes cannot
share a batch. Most sets hold a handful of sizes (a camera's frames, its portrait frames), so
grouping the images by their size after resizing batches nearly everything; a batch is capped
by pixels as well as by count, so that large photos do not hold more tokens than a batch of the
fixed-size evaluation would.

The sizes come from the file headers (no decoding), with the EXIF orientation applied as
``dataloaders.image_io.load_image`` applies it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from os import PathLike

from PIL import ExifTags, Image
from torch.utils.data import Sampler
from tqdm import tqdm

from dataloaders.image_io import ImageDecodeError, bomb_message, pixel_limit_only
from dataloaders.transforms import EvalPreprocessing
from utils.errors import UserError

log = logging.getLogger(__name__)

#: EXIF orientations that ``ImageOps.exif_transpose`` turns by 90 degrees (width and height swap).
SWAPPING_ORIENTATIONS = frozenset({5, 6, 7, 8})
#: How many file names a note about large images quotes.
NAMES_SHOWN = 3
REFERENCE_SIDE = 322
"""Side of the published evaluation size: a native-resolution batch holds at most as many pixels
as ``batch_size`` images of ``REFERENCE_SIDE x REFERENCE_SIDE``."""


def oriented_size(path: str | PathLike[str], exif_transpose: bool = True) -> tuple[int, int]:
    """``(width, height)`` of the image at ``path`` once its EXIF orientation is applied (as stored
    when ``exif_transpose`` is False), read from the header without decoding the pixels.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ImageDecodeError: the file is not an image PIL can read.
    """
    try:
        with pixel_limit_only(), Image.open(path) as image:
            width, height = image.size
            orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    except FileNotFoundError:
        raise
    except Image.DecompressionBombError as error:
        raise ImageDecodeError(f"cannot read the size of image {path}: {bomb_message(error)}") from None
    except (OSError, ValueError, SyntaxError) as error:
        raise ImageDecodeError(f"cannot read the size of image {path}: {error}") from error
    return (height, width) if exif_transpose and orientation in SWAPPING_ORIENTATIONS else (width, height)


def resized_sizes(paths: Sequence[str | PathLike[str]], preprocessing: EvalPreprocessing) -> list[tuple[int, int]]:
    """``(width, height)`` of each image as the model sees it (``preprocessing.output_size``), in
    order. Images that ``preprocessing.max_side`` scales down are named in one log line."""
    sizes, capped = [], []
    for path in tqdm(paths, desc="reading image sizes", unit="image", leave=False):
        width, height = oriented_size(path, preprocessing.exif_transpose)
        if preprocessing.exceeds_max_side(width, height):
            capped.append(f"{path} ({width}x{height})")
        sizes.append(preprocessing.output_size(width, height))
    if capped:
        more = f" and {len(capped) - NAMES_SHOWN} more" if len(capped) > NAMES_SHOWN else ""
        log.info(
            "%d images are larger than max_side=%d and are scaled down to it: %s%s",
            len(capped), preprocessing.max_side, ", ".join(capped[:NAMES_SHOWN]), more,
        )
    return sizes


class SizeBucketBatchSampler(Sampler[list[int]]):
    """Batches of indices whose images have the same size.

    Sizes are taken in the order they first appear, and the indices of one size in increasing
    order; each batch holds at most ``batch_size`` images and at most ``max_pixels`` pixels (but
    always at least one image). The batches depend only on ``sizes``.

    Args:
        sizes: ``(width, height)`` of image ``i``, as the model will see it.
        batch_size: most images per batch.
        max_pixels: most pixels per batch; ``None`` for no cap.
    """

    def __init__(self, sizes: Sequence[tuple[int, int]], batch_size: int, max_pixels: int | None = None) -> None:
        if batch_size < 1:
            raise UserError(f"batch_size {batch_size}: expected at least 1")
        if max_pixels is not None and max_pixels < 1:
            raise UserError(f"max_pixels {max_pixels}: expected at least 1")
        buckets: dict[tuple[int, int], list[int]] = {}
        for index, size in enumerate(sizes):
            buckets.setdefault(tuple(size), []).append(index)
        self.batches: list[list[int]] = []
        for (width, height), indices in buckets.items():
            per_batch = batch_size if max_pixels is None else max(1, min(batch_size, max_pixels // (width * height)))
            self.batches += [indices[start : start + per_batch] for start in range(0, len(indices), per_batch)]
        self.num_sizes = len(buckets)

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def native_size_batches(
    paths: Sequence[str | PathLike[str]],
    batch_size: int,
    preprocessing: EvalPreprocessing,
    reference_side: int = REFERENCE_SIDE,
) -> SizeBucketBatchSampler:
    """Same-size batches for the images at ``paths`` at native resolution (their sizes as
    ``preprocessing`` makes them): at most ``batch_size`` images, and at most the pixels of
    ``batch_size`` images of ``reference_side`` squared."""
    sizes = resized_sizes(paths, preprocessing)
    return SizeBucketBatchSampler(sizes, batch_size, max_pixels=batch_size * reference_side**2)
