"""Image decoding shared by training and evaluation.

Every image is returned as an RGB ``PIL.Image`` with its EXIF orientation applied, whatever
its mode on disk (greyscale, palette, CMYK, RGBA). When the caller says how small the image
will be resized, JPEG files are decoded with PIL's draft mode, which lets libjpeg scale by
1/2, 1/4 or 1/8 while decoding; draft mode never goes below the requested size, so the final
resize still works from at least as many pixels as it outputs.
"""

from __future__ import annotations

from os import PathLike

from PIL import Image, ImageOps


class ImageDecodeError(RuntimeError):
    """An image file that exists but cannot be decoded."""


def load_image(path: str | PathLike[str], min_size: tuple[int, int] | None = None) -> Image.Image:
    """Read ``path`` as an RGB image.

    Args:
        path: image file.
        min_size: ``(height, width)`` the image will be resized to afterwards, or ``None``.
            With a size, a JPEG is decoded at the smallest power-of-two reduction that keeps
            both sides at least this large (the pixels the resize needs, and no more).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ImageDecodeError: the file cannot be decoded (truncated, not an image, ...).
    """
    try:
        with Image.open(path) as image:
            if min_size is not None and image.format == "JPEG":
                height, width = min_size
                # draft() takes (width, height) and picks the largest scale >= this size
                image.draft("RGB", (width, height))
            image = ImageOps.exif_transpose(image)
            if image.mode != "RGB":
                image = image.convert("RGB")
            image.load()
            return image
    except FileNotFoundError:
        raise
    except (OSError, ValueError, SyntaxError) as error:
        raise ImageDecodeError(f"cannot decode image {path}: {error}") from error
