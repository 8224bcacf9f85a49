"""Image decoding shared by training and evaluation.

Every image is returned as an RGB ``PIL.Image`` as stored (its EXIF orientation ignored, as the
published code and PIL's plain decoding do; applied when asked with ``exif_transpose``), whatever
its mode on disk (greyscale, palette, CMYK, RGBA, 16-bit, 32-bit integer or float; see
:func:`to_rgb`). When the caller says how small the image
will be resized, JPEG files are decoded with PIL's draft mode, which lets libjpeg scale by
1/2, 1/4 or 1/8 while decoding; draft mode never goes below the requested size, so the final
resize still works from at least as many pixels as it outputs.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Iterator
from os import PathLike

import numpy as np
from PIL import EpsImagePlugin, Image, ImageFile, ImageOps

from utils.errors import UserError

SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
"""Pillow's 16-bit greyscale modes, and its 32-bit integer mode, which 16-bit files also open as."""
SIXTEEN_BIT_TO_EIGHT = 257.0
"""65535 / 255: 16-bit values scale to 8 bits by this divisor (0 -> 0, 65535 -> 255)."""


NOT_DECODED_FORMATS = ("MPEG",)
"""Formats Pillow opens (identifies) but has no decoder for."""


@functools.cache
def decodable_image_suffixes() -> frozenset[str]:
    """File suffixes (lower case, with the dot) of the formats this Pillow build can decode.

    Pillow's registered extensions of the formats it can open, less its stub formats (BUFR,
    GRIB, HDF5, WMF: identified, not decoded), MPEG, and EPS without Ghostscript. Formats whose
    library this build lacks (WebP, AVIF, ...) are not registered for opening at all.
    """
    Image.init()
    decodable = {
        name for name, (factory, _) in Image.OPEN.items()
        if not (isinstance(factory, type) and issubclass(factory, ImageFile.StubImageFile))
        and name not in NOT_DECODED_FORMATS and (name != "EPS" or EpsImagePlugin.has_ghostscript())
    }
    return frozenset(suffix for suffix, name in Image.registered_extensions().items() if name in decodable)


class ImageDecodeError(UserError, RuntimeError):
    """An image file that exists but cannot be decoded."""


def load_image(
    path: str | PathLike[str], min_size: tuple[int, int] | None = None, exif_transpose: bool = False
) -> Image.Image:
    """Read ``path`` as an RGB image.

    Args:
        path: image file.
        min_size: ``(height, width)`` the image will be resized to afterwards, or ``None``.
            With a size, a JPEG is decoded at the smallest power-of-two reduction that keeps
            both sides at least this large (the pixels the resize needs, and no more).
        exif_transpose: turn the image upright by its EXIF orientation tag (phone photos); off by
            default, as in the published code.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ImageDecodeError: the file cannot be decoded (truncated, not an image, ...).
    """
    try:
        with pixel_limit_only(), Image.open(path) as image:
            if min_size is not None and image.format == "JPEG":
                height, width = min_size
                # draft() takes (width, height) and picks the largest scale >= this size
                image.draft("RGB", (width, height))
            image = to_rgb(ImageOps.exif_transpose(image) if exif_transpose else image)
            image.load()
            return image
    except FileNotFoundError:
        raise
    except Image.DecompressionBombError as error:  # a tiny file claiming billions of pixels
        raise ImageDecodeError(f"cannot decode image {path}: {bomb_message(error)}") from None
    except (OSError, ValueError, SyntaxError) as error:
        raise ImageDecodeError(f"cannot decode image {path}: {error}") from error


@contextlib.contextmanager
def pixel_limit_only() -> Iterator[None]:
    """Open images within: Pillow's ``DecompressionBombWarning`` (an image of more than
    ``Image.MAX_IMAGE_PIXELS``, which Pillow still opens) is silenced, while its
    ``DecompressionBombError`` (more than twice that: about 179 million pixels by default), the
    limit this project refuses images above (:func:`bomb_message`), is kept. The warnings filter
    is restored on leaving, so other code still gets Pillow's warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield


def bomb_message(error: Exception) -> str:
    """Pillow's refusal of an image larger than ``Image.MAX_IMAGE_PIXELS``, in one line."""
    return f"{str(error).split(', could be')[0]} (a decompression bomb, or a huge scan: remove it from the folder)"


def to_rgb(image: Image.Image) -> Image.Image:
    """``image`` as 8-bit RGB.

    Pillow's own conversion clips high-bit-depth values at 255, which turns a 16-bit photo nearly
    white; here 16-bit greyscale (``I;16*``) and 32-bit integer (``I``) images are scaled from
    0..65535 to 0..255 (divided by 257, rounded; ``I`` values clipped to 0..65535 first), and
    float (``F``) images from 0..1 when all their values lie there, else clipped to 0..255.
    Other modes (greyscale, palette, CMYK, RGBA, LA, ...) go through Pillow's ``convert("RGB")``
    (alpha dropped).
    """
    if image.mode == "RGB":
        return image
    if image.mode in SIXTEEN_BIT_MODES:
        values = np.clip(np.asarray(image, dtype=np.float64), 0, 65535) / SIXTEEN_BIT_TO_EIGHT
    elif image.mode == "F":
        values = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0, posinf=255.0, neginf=0.0)
        if values.size and values.min() >= 0 and values.max() <= 1:
            values = values * 255
    else:
        return image.convert("RGB")
    grey = Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8))  # [H, W] uint8: mode L
    return grey.convert("RGB")
