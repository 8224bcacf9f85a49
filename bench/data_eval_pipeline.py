"""Images per second of the evaluation input pipeline: decode + resize + normalize.

Writes ``--num_images`` real-size 640 x 480 JPEGs (smooth colour fields plus grain, quality 90,
like photos rather than pure noise) into a temporary folder, wraps them in an ``EvalSet``
and runs ``EvalSet.images(...)`` through a ``DataLoader`` for each worker count, target size
and draft setting, then prints a table. The transform is the project's
``dataloaders.transforms.eval_transform`` (bilinear resize, ToTensor, ImageNet normalisation).

Draft mode lets libjpeg decode at 1/2, 1/4 or 1/8 scale, never below the requested size
(``dataloaders.image_io.load_image``). From 640 x 480 a reduction happens only when the target
fits in 320 x 240: a 224 x 224 target is decoded at 320 x 240, a 322 x 322 target at full size
(draft then changes nothing but adds a call).

    python -m bench.data_eval_pipeline [--num_images 192] [--workers 0 1 2] [--sizes 322 224]
        [--repeats 3]

The machine's other load shows up directly in these numbers: compare rows of one run only.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/data_eval_pipeline.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch
from PIL import Image
from prettytable import PrettyTable
from torch.utils.data import DataLoader
from tqdm import tqdm

from dataloaders.eval_sets import EvalSet
from dataloaders.image_io import load_image
from dataloaders.transforms import decode_size, eval_transform

SOURCE_SIZE = (640, 480)  # width, height
JPEG_QUALITY = 90


def write_photo_like_jpegs(folder: Path, count: int, seed: int = 0) -> list[str]:
    """``count`` 640 x 480 JPEGs: upsampled low-frequency colour noise plus fine grain."""
    generator = np.random.default_rng(seed)
    width, height = SOURCE_SIZE
    names = []
    for i in tqdm(range(count), desc="writing JPEGs", unit="img", leave=False):
        coarse = generator.integers(0, 256, size=(12, 16, 3), dtype=np.uint8)
        field = np.asarray(
            Image.fromarray(coarse).resize((width, height), Image.BICUBIC), dtype=np.int16
        )
        grain = generator.integers(-12, 13, size=(height, width, 3), dtype=np.int16)
        pixels = np.clip(field + grain, 0, 255).astype(np.uint8)
        name = f"{i:05d}.jpg"
        Image.fromarray(pixels).save(folder / name, format="JPEG", quality=JPEG_QUALITY)
        names.append(name)
    return names


def decoded_size(eval_set: EvalSet, size: tuple[int, int], draft: bool) -> tuple[int, int]:
    """(width, height) the first image is actually decoded at, for target ``size`` (H, W)."""
    first = eval_set.image_paths()[0]
    return load_image(first, min_size=decode_size(size) if draft else None).size


def images_per_second(
    eval_set: EvalSet, size: tuple[int, int], draft: bool, workers: int, batch_size: int
) -> float:
    """One full pass over ``eval_set`` (workers started before the clock runs)."""
    min_size = decode_size(size) if draft else None
    images = eval_set.images(eval_transform(size), decode_size=min_size)
    loader = DataLoader(images, batch_size=batch_size, num_workers=workers, shuffle=False)
    iterator = iter(loader)
    first_batch, _ = next(iterator)  # worker start-up and first decodes are not timed
    count = 0
    start = time.perf_counter()
    for batch, _ in iterator:
        count += len(batch)
    elapsed = time.perf_counter() - start
    if tuple(first_batch.shape[-2:]) != size:
        raise RuntimeError(f"transform gave {list(first_batch.shape)}, expected size {size}")
    return count / elapsed


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.data_eval_pipeline",
        description="Images/s of decode + resize + normalize through a DataLoader, "
        "on 640x480 JPEGs.",
    )
    parser.add_argument(
        "--num_images", type=int, default=192, help="JPEGs to generate (default: %(default)s)"
    )
    parser.add_argument(
        "--batch_size", type=int, default=16, help="DataLoader batch size (default: %(default)s)"
    )
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[0, 1, 2], help="worker counts (default: 0 1 2)"
    )
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[322, 224], help="square sides (default: 322 224)"
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="passes per setting (default: %(default)s)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads of the main process; DataLoader workers use 1 (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    if args.num_images <= args.batch_size:
        parser.error(
            f"--num_images ({args.num_images}) must exceed --batch_size ({args.batch_size})"
        )
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    settings = [
        (side, draft, workers)
        for side in args.sizes
        for draft in (False, True)
        for workers in args.workers
    ]
    rates: dict[tuple[int, bool, int], list[float]] = {setting: [] for setting in settings}
    decoded: dict[tuple[int, bool], tuple[int, int]] = {}
    with tempfile.TemporaryDirectory(prefix="eval_pipeline_bench_") as folder:
        names = write_photo_like_jpegs(Path(folder), args.num_images)
        eval_set = EvalSet("bench", Path(folder), db_paths=names, query_paths=[])
        for side, draft, _ in settings:
            decoded[(side, draft)] = decoded_size(eval_set, (side, side), draft)
        # passes interleave the settings, so a burst of outside load hits them all alike
        passes = [setting for _ in range(args.repeats) for setting in settings]
        for side, draft, workers in tqdm(passes, desc="timing", unit="pass"):
            rate = images_per_second(eval_set, (side, side), draft, workers, args.batch_size)
            rates[(side, draft, workers)].append(rate)
    table = PrettyTable(
        ["target", "draft", "decoded at", "workers", "images/s median", "images/s best"]
    )
    for (side, draft, workers), setting_rates in rates.items():
        width, height = decoded[(side, draft)]
        table.add_row(
            [
                f"{side}x{side}",
                "on" if draft else "off",
                f"{width}x{height}",
                workers,
                f"{statistics.median(setting_rates):.0f}",
                f"{max(setting_rates):.0f}",
            ]
        )
    print(
        f"{args.num_images} JPEGs of {SOURCE_SIZE[0]}x{SOURCE_SIZE[1]}, batch {args.batch_size}, "
        f"torch threads {args.threads}, {args.repeats} interleaved passes per setting"
    )
    print(table)


if __name__ == "__main__":
    main()
