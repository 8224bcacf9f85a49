"""JPEG decoding on the evaluation device (nvJPEG on CUDA) instead of PIL in the loader workers.

At a GPU's evaluation speed (thousands of images per second) the CPU workers decoding JPEGs
become the bottleneck. With :class:`EncodedImages` the workers only read each file; the main
process then decodes a whole batch on the device with ``torchvision.io.decode_jpeg`` and resizes
(bilinear, antialiased, as PIL's bilinear downscaling) and normalises it there
(:class:`DeviceDecoder`).

What the device decoder cannot do is done by PIL in the workers, as ``dataloaders.image_io``
does it, and those images travel already decoded: files that are not JPEG, JPEGs in other
colour modes than RGB or greyscale (CMYK), and JPEGs with an EXIF orientation to apply (nvJPEG
does not apply it). A JPEG the device then fails to decode is decoded by PIL in the main
process, with a warning. Either way the image that reaches the model is the upright RGB image.

The pixels differ slightly from the PIL path (another IDCT, resizing in float instead of uint8):
descriptors agree closely, not bit for bit.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.io
from PIL import ExifTags, Image
from torch.utils.data import Dataset

from dataloaders.image_io import load_image, pixel_limit_only
from dataloaders.transforms import IMAGENET_MEAN, IMAGENET_STD, EvalPreprocessing

logger = logging.getLogger(__name__)

DEVICE_DECODABLE_MODES = frozenset({"RGB", "L"})
"""JPEG colour modes ``decode_jpeg(mode=RGB)`` turns into RGB (CMYK and others go through PIL)."""


@dataclass(frozen=True)
class EncodedImage:
    """One image as it leaves a worker.

    Attributes:
        data: the file's bytes, uint8 ``[num_bytes]`` (``encoded``), or the decoded upright RGB
            image, uint8 ``[3, H, W]``.
        encoded: whether ``data`` still has to be decoded.
    """

    data: torch.Tensor
    encoded: bool

    def pin_memory(self) -> EncodedImage:
        """A copy in page-locked memory (the DataLoader's ``pin_memory`` calls this)."""
        return EncodedImage(self.data.pin_memory(), self.encoded)


def needs_pil(data: bytes, exif_transpose: bool = False) -> bool:
    """Whether the file ``data`` must be decoded by PIL: not a JPEG, a colour mode other than RGB or
    greyscale, or (with ``exif_transpose``) an EXIF orientation other than upright. Reads the header only."""
    try:
        with pixel_limit_only(), Image.open(io.BytesIO(data)) as image:
            if image.format != "JPEG" or image.mode not in DEVICE_DECODABLE_MODES:
                return True
            return exif_transpose and image.getexif().get(ExifTags.Base.Orientation, 1) != 1
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return True  # PIL's decode then names the file in its error


def pil_pixels(path: Path, exif_transpose: bool = False) -> torch.Tensor:
    """The RGB image at ``path`` decoded by PIL (turned upright with ``exif_transpose``), uint8
    ``[3, H, W]`` (``ImageDecodeError`` naming the file when PIL cannot decode it)."""
    pixels = np.asarray(load_image(path, exif_transpose=exif_transpose))  # [H, W, 3]
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1)


class EncodedImages(Dataset):
    """The images at ``paths`` for :class:`DeviceDecoder`: item ``i`` is ``(EncodedImage, i)``."""

    def __init__(self, paths: Sequence[Path], exif_transpose: bool = False) -> None:
        self.paths = list(paths)
        self.exif_transpose = exif_transpose

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[EncodedImage, int]:
        path = self.paths[index]
        data = path.read_bytes()
        if needs_pil(data, self.exif_transpose):
            return EncodedImage(pil_pixels(path, self.exif_transpose), encoded=False), index
        return EncodedImage(torch.frombuffer(bytearray(data), dtype=torch.uint8), encoded=True), index


def collate_encoded(items: list[tuple[EncodedImage, int]]) -> tuple[list[EncodedImage], torch.Tensor]:
    """A batch of images of different byte lengths and sizes: ``(list of EncodedImage, indices [B])``."""
    return [image for image, _ in items], torch.tensor([index for _, index in items])


class DeviceDecoder:
    """Turns a batch of :class:`EncodedImages` into model input on ``device``.

    Args:
        paths: the dataset's paths (to name a file that fails to decode).
        preprocessing: the sizes images are resized to (at native resolution a batch must hold
            images of one output size, see ``dataloaders.size_buckets``); its JPEG draft decoding
            does not apply here.
        device: where to decode, resize and normalise.
    """

    def __init__(self, paths: Sequence[Path], preprocessing: EvalPreprocessing, device: torch.device) -> None:
        self.paths = list(paths)
        self.preprocessing = preprocessing
        self.device = device
        self.mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)

    def __call__(self, images: list[EncodedImage], indices: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` float32 ImageNet-normalised images on the device, in batch order."""
        pixels = self.decode(images, indices)
        resized = [self.resize(image) for image in pixels]
        batch = torch.cat(resized) / 255.0
        return (batch - self.mean) / self.std

    def decode(self, images: list[EncodedImage], indices: torch.Tensor) -> list[torch.Tensor]:
        """Each image as uint8 ``[3, H, W]`` on the device: the encoded ones decoded in one call."""
        encoded = [image.data for image in images if image.encoded]
        decoded = iter(self._decode_jpegs(encoded, [int(i) for i, image in zip(indices, images) if image.encoded]))
        return [next(decoded) if image.encoded else image.data.to(self.device, non_blocking=True) for image in images]

    def _decode_jpegs(self, encoded: list[torch.Tensor], indices: list[int]) -> list[torch.Tensor]:
        """Decode on the device in one call; when that fails, file by file, and a file the device
        cannot decode (a JPEG variant nvJPEG lacks, or a damaged file) is decoded by PIL, whose
        error names the file if it fails as well."""
        if not encoded:
            return []
        try:
            return list(torchvision.io.decode_jpeg(encoded, mode=torchvision.io.ImageReadMode.RGB, device=self.device))
        except RuntimeError:
            return [self._decode_one(data, index) for data, index in zip(encoded, indices)]

    def _decode_one(self, data: torch.Tensor, index: int) -> torch.Tensor:
        try:
            return torchvision.io.decode_jpeg(data, mode=torchvision.io.ImageReadMode.RGB, device=self.device)
        except RuntimeError as error:
            path = self.paths[index]
            logger.warning("%s: not decodable on %s (%s); decoding it with PIL", path, self.device, str(error).splitlines()[0])
            return pil_pixels(path, self.preprocessing.exif_transpose).to(self.device)

    def resize(self, image: torch.Tensor) -> torch.Tensor:
        """uint8 ``[3, h, w]`` -> float ``[1, 3, H, W]`` at the target size (bilinear, antialiased)."""
        width, height = self.preprocessing.output_size(image.shape[2], image.shape[1])
        size = (height, width)
        image = image.unsqueeze(0).float()
        if tuple(image.shape[2:]) == tuple(size):
            return image
        return F.interpolate(image, size=size, mode="bilinear", antialias=True, align_corners=False)
