"""Native-resolution evaluation: one image per batch against same-size batches.

Without ``--image_size``, ``eval.py`` keeps each image's aspect ratio (sides rounded to multiples
of 14), so images of different sizes cannot share a batch. This bench writes photo-like JPEGs of
640 x 480, every ``--portrait_every``-th turned to 480 x 640 (two sizes, as a camera's landscape
and portrait frames), and describes them with a DINOv2 SALAD net (random weights) through
``utils.evaluation.inference.compute_descriptors``, as ``eval.py`` does:

* ``one-by-one``: batch size 1, what native resolution meant before ``dataloaders.size_buckets``;
* ``by-size``: ``native_size_batches`` (reading the sizes from the headers is timed too).

Both run in this process on the same files, after one untimed warm-up pass; printed: images/s,
the ratio, and the largest difference between the two descriptor sets.

    python -m bench.native_batching                      # CPU: ViT-S/14, 24 images, batches of 16
    python -m bench.native_batching --device cuda        # ViT-B/14, 512 images, batches of 256
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench.data_eval_pipeline import write_photo_like_jpegs
from bench.common import add_device_flag, check_device, device_name, require_at_least, start
from bench.inference_speed import build_model, random_state_dict
from dataloaders.eval_sets.base import EvalImages
from dataloaders.size_buckets import native_size_batches
from dataloaders.transforms import EvalPreprocessing, ResizeToPatchMultiple
from models.backbones.dinov2 import DINOV2_ARCHS
from utils.evaluation.inference import Precision, compute_descriptors

log = logging.getLogger(__name__)

#: --device -> (backbone, images, batch size)
DEVICE_DEFAULTS = {"cpu": ("dinov2_vits14", 24, 16), "cuda": ("dinov2_vitb14", 512, 256)}


def write_two_size_jpegs(folder: Path, count: int, portrait_every: int, seed: int) -> list[Path]:
    """``count`` 640 x 480 JPEGs in ``folder``, every ``portrait_every``-th turned to 480 x 640."""
    names = write_photo_like_jpegs(folder, count, seed)
    paths = [folder / name for name in names]
    for path in paths[portrait_every - 1 :: portrait_every]:
        with Image.open(path) as image:
            portrait = image.transpose(Image.Transpose.ROTATE_90)
        portrait.save(path, format="JPEG", quality=90)
    return paths


def timed_descriptors(
    model: torch.nn.Module, paths: list[Path], batch_size: int, device: torch.device, precision: Precision, by_size: bool
) -> tuple[float, np.ndarray]:
    """Seconds and ``[N, D]`` descriptors of the images at ``paths``, one by one or by size."""
    preprocessing = EvalPreprocessing(None, model.patch_size)
    images = EvalImages(paths, preprocessing.transform())
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    batches = native_size_batches(paths, batch_size, preprocessing) if by_size else None
    descriptors = compute_descriptors(
        model, images, 1 if batches is None else batch_size, 0, device, precision,
        description="by size" if by_size else "one by one", batch_sampler=batches,
    )
    return time.perf_counter() - start, descriptors  # compute_descriptors copies to the CPU: synchronised


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.native_batching", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_device_flag(parser)
    parser.add_argument("--backbone", choices=list(DINOV2_ARCHS), help="default: dinov2_vits14 on CPU, dinov2_vitb14 on CUDA")
    parser.add_argument("--num_images", type=int, help="JPEGs to write (default: 24 on CPU, 512 on CUDA)")
    parser.add_argument("--batch", type=int, help="--batch_size of the by-size variant (default: 16 on CPU, 256 on CUDA)")
    parser.add_argument("--portrait_every", type=int, default=4, help="every n-th image is portrait (default 4)")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="bf16", help="autocast (default bf16)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and the images")
    args = parser.parse_args(argv)
    check_device(parser, args)
    backbone, num_images, batch = DEVICE_DEFAULTS[args.device]
    args.backbone = args.backbone or backbone
    args.num_images = args.num_images if args.num_images is not None else num_images
    args.batch = args.batch if args.batch is not None else batch
    require_at_least(parser, args, 1, ("num_images", "batch", "portrait_every", "threads"))
    return args


def main(argv: list[str] | None = None) -> None:
    args, device = start(parse_args, argv)
    model = build_model(args.backbone, "bmm", random_state_dict(args.backbone, args.seed))

    with tempfile.TemporaryDirectory(prefix="native_batching_") as folder:
        paths = write_two_size_jpegs(Path(folder), args.num_images, args.portrait_every, args.seed)
        log.info("warm-up")
        timed_descriptors(model, paths[: args.portrait_every], args.batch, device, args.precision, by_size=True)
        one_seconds, one_descriptors = timed_descriptors(model, paths, args.batch, device, args.precision, by_size=False)
        size_seconds, size_descriptors = timed_descriptors(model, paths, args.batch, device, args.precision, by_size=True)

    count = args.num_images
    patch = model.patch_size
    sizes = " and ".join("%dx%d" % ResizeToPatchMultiple(patch).target_size(*side) for side in ((640, 480), (480, 640)))
    print(
        f"{args.backbone} + SALAD, {count} JPEGs at native resolution ({sizes} after rounding to multiples of "
        f"{patch}), {args.precision}, on {device_name(device)}"
    )
    print(f"  {'variant':<11} {'seconds':>8} {'images/s':>9}")
    print(f"  {'one-by-one':<11} {one_seconds:8.2f} {count / one_seconds:9.2f}")
    print(f"  {'by-size':<11} {size_seconds:8.2f} {count / size_seconds:9.2f}  (batches of up to {args.batch})")
    print(f"  by-size vs one-by-one: {one_seconds / size_seconds:.2f}x images/s")
    print(f"  largest descriptor difference: {np.abs(size_descriptors - one_descriptors).max():.2e}")


if __name__ == "__main__":
    main()
