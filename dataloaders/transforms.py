"""Image transforms of training and evaluation (PIL image in, normalised tensor out).

Training follows the published DINOv2 SALAD recipe: resize to the training size, RandAugment
with three operations, ImageNet normalisation. Evaluation resizes to a fixed size, or with
``image_size=None`` keeps each image's aspect ratio and rounds both sides to the nearest
multiple of the model's patch size (``VPRNet.patch_size``: 14 for DINOv2, 16 for DINOv3).

Images are decoded before these transforms by :func:`dataloaders.image_io.load_image`;
:func:`decode_size` gives the ``min_size`` to pass so that JPEG draft mode decodes large
files at a reduced scale when the target is at most half their size (training does; evaluation
only when asked, :class:`EvalPreprocessing`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torchvision.transforms as T
from PIL import Image

from utils.errors import UserError

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

ImageTransform = Callable[[Image.Image], torch.Tensor]


def _check_size(image_size: tuple[int, int]) -> tuple[int, int]:
    if len(image_size) != 2 or any(int(side) != side or side < 1 for side in image_size):
        raise UserError(f"image_size={list(image_size)}: expected [height, width] in positive integers")
    return int(image_size[0]), int(image_size[1])


def train_transform(image_size: tuple[int, int]) -> ImageTransform:
    """Resize to ``(height, width)`` (bilinear), RandAugment(num_ops=3), ToTensor, ImageNet
    normalisation: PIL image -> ``[3, H, W]`` float tensor."""
    size = _check_size(image_size)
    return T.Compose([
        T.Resize(size, interpolation=T.InterpolationMode.BILINEAR),
        T.RandAugment(num_ops=3, interpolation=T.InterpolationMode.BILINEAR),
        T.ToTensor(),
        T.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD),
    ])


class ResizeToPatchMultiple:
    """Resize a PIL image so that each side is the nearest multiple of ``multiple`` (at least
    ``multiple``), keeping the aspect ratio as closely as that allows."""

    def __init__(self, multiple: int) -> None:
        if multiple < 1:
            raise ValueError(f"multiple must be a positive integer, got {multiple}")
        self.multiple = multiple

    def target_size(self, width: int, height: int) -> tuple[int, int]:
        """``(width, height)`` after resizing an image of ``width x height``."""
        def snap(side: int) -> int:
            return max(self.multiple, int(round(side / self.multiple)) * self.multiple)
        return snap(width), snap(height)

    def __call__(self, image: Image.Image) -> Image.Image:
        size = self.target_size(*image.size)
        return image if size == image.size else image.resize(size, Image.Resampling.BILINEAR)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(multiple={self.multiple})"


@dataclass(frozen=True)
class EvalPreprocessing:
    """How evaluation turns an image file into the model's input: decided once, passed to the
    dataset (:meth:`transform`, :attr:`decode_size`), the size batcher and the device decoder
    (:meth:`output_size`).

    By default it reproduces the published preprocessing exactly: the full JPEG is decoded and
    resized with PIL's bilinear filter.

    Attributes:
        image_size: ``(height, width)`` every image is resized to; ``None`` for native
            resolution (aspect ratio kept, sides snapped to multiples of ``patch_size``).
        patch_size: the model's patch size (required at native resolution).
        max_side: at native resolution, the longest side an image keeps (a larger one is scaled
            down to it first); ``None`` for no cap.
        draft_decode: decode JPEGs at 1/2, 1/4 or 1/8 scale when the fixed size allows it
            (faster on large photos; the descriptors move slightly: an opt-in speed setting).
        exif_transpose: turn images upright by their EXIF orientation (phone photos); off as in
            the published code.
    """

    image_size: tuple[int, int] | None = None
    patch_size: int | None = None
    max_side: int | None = None
    draft_decode: bool = False
    exif_transpose: bool = False

    def __post_init__(self) -> None:
        if self.image_size is not None:
            object.__setattr__(self, "image_size", _check_size(self.image_size))
        elif self.patch_size is None:
            raise ValueError("native-resolution evaluation (image_size None) needs the model's patch_size")
        if self.max_side is not None and self.max_side < 1:
            raise UserError(f"max_side={self.max_side}: expected a positive integer")

    @property
    def native(self) -> bool:
        """Whether each image keeps its own (snapped) size."""
        return self.image_size is None

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        """``(width, height)`` the model sees for an upright image of ``width x height``."""
        if self.image_size is not None:
            return self.image_size[1], self.image_size[0]
        if self.max_side is not None and max(width, height) > self.max_side:
            scale = self.max_side / max(width, height)
            width, height = max(1, round(width * scale)), max(1, round(height * scale))
        return ResizeToPatchMultiple(self.patch_size or 1).target_size(width, height)

    def exceeds_max_side(self, width: int, height: int) -> bool:
        """Whether :meth:`output_size` scales this image down to ``max_side``."""
        return self.native and self.max_side is not None and max(width, height) > self.max_side

    def resize(self, image: Image.Image) -> Image.Image:
        """``image`` at :meth:`output_size`, resized with PIL's bilinear filter."""
        size = self.output_size(*image.size)
        return image if size == image.size else image.resize(size, Image.Resampling.BILINEAR)

    def transform(self) -> ImageTransform:
        """PIL image -> ``[3, H, W]``: :meth:`resize`, ToTensor, ImageNet normalisation."""
        return T.Compose([self.resize, T.ToTensor(), T.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD)])

    @property
    def decode_size(self) -> tuple[int, int] | None:
        """``min_size`` for :func:`~dataloaders.image_io.load_image`: the fixed size with
        ``draft_decode``, else ``None`` (the full image is decoded)."""
        return self.image_size if self.draft_decode else None


def eval_transform(image_size: tuple[int, int] | None, patch_size: int | None = None) -> ImageTransform:
    """Resize to ``(height, width)`` (bilinear), or with ``None`` to the nearest multiples of
    ``patch_size`` (the model's) keeping the aspect ratio; then ToTensor and ImageNet
    normalisation (:meth:`EvalPreprocessing.transform`)."""
    return EvalPreprocessing(image_size, patch_size).transform()


def decode_size(image_size: tuple[int, int] | None) -> tuple[int, int] | None:
    """The ``min_size`` to give :func:`~dataloaders.image_io.load_image` for a transform that
    resizes to ``image_size``: the size itself (draft mode then never decodes below it), or
    ``None`` when the output size depends on the image (no draft mode)."""
    return None if image_size is None else _check_size(image_size)
