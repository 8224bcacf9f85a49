"""Training data pipeline throughput: decode + RandAugment + collate through the DataLoader.

Times ``GSVCitiesDataModule.train_dataloader()`` (P places x K images per batch) in images per
second, on two GSV-Cities trees:

* ``toy``: the toy world's GSV-Cities images (112 x 112 px by default), from ``--toy-root``
  or a small toy world generated into a temporary folder;
* ``640x480``: real-size JPEGs (toy-world renders upscaled to 640 x 480 with sensor noise, so
  they compress like photos), written into a temporary folder in the GSV-Cities layout,

each with 0 and ``--workers`` DataLoader workers, and with and without JPEG draft mode
(decoding at 1/2, 1/4 or 1/8 scale when the training size is at most half the source). Prints
a table and the speed-up ratios. Draft mode can only help when the source is at least twice
the training size, so it is a no-op on the toy images.

    python -m bench.data_train_pipeline [--workers 2] [--image-size 224] [--batches 6]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from prettytable import PrettyTable

from dataloaders.gsv_cities import GSVCitiesDataModule, image_file_name
from toy_world import (
    QUERY_LOOK,
    build_city,
    finish_images,
    generate_toy_world,
    render_views,
    sample_views,
    spaced_street_points,
)

REAL_CITY = "London"


def write_real_size_gsv(root: Path, places: int, images_per_place: int, size: tuple[int, int], seed: int) -> None:
    """A GSV-Cities tree of ``places x images_per_place`` JPEGs of ``size`` (width, height)
    under ``root`` (city ``London``): toy renders at 160 px, upscaled, with noise."""
    rng = np.random.default_rng(seed)
    city = build_city(rng, 400.0, 400.0)
    points = spaced_street_points(city, rng, places, min_spacing_m=10.0)
    count = places * images_per_place
    place = np.repeat(np.arange(places), images_per_place)
    views = sample_views(rng, np.array([p.x for p in points])[place] + rng.uniform(-2, 2, count),
                         np.array([p.y for p in points])[place], rng.uniform(0, 360, count), QUERY_LOOK)
    rows = []
    for start in range(0, count, 32):
        chunk = views.take(slice(start, start + 32))
        for offset, pixels in enumerate(finish_images(render_views(city, chunk, 160), chunk)):
            index = start + offset
            image = np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.BICUBIC), dtype=np.float32)
            image = np.clip(image + rng.normal(0.0, 6.0, image.shape), 0, 255).astype(np.uint8)
            row = {"place_id": int(place[index]), "year": 2010 + index % 10, "month": 1 + index % 12,
                   "northdeg": int(views.heading[index]) % 360, "city_id": REAL_CITY, "lat": f"51.{index:07d}",
                   "lon": f"-0.{index:07d}", "panoid": f"{index:022d}"}
            path = root / "Images" / REAL_CITY / image_file_name(*row.values())
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(path, quality=90)
            rows.append(row)
    (root / "Dataframes").mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(root / "Dataframes" / f"{REAL_CITY}.csv", index=False)


def throughput(module: GSVCitiesDataModule, batches: int) -> tuple[float, float]:
    """Steady-state images per second, and this process's CPU milliseconds per image (the
    whole cost when there are no workers; contention on the machine barely changes it).

    The first batch (worker start-up) is not timed; epochs repeat until ``batches`` batches
    have been timed."""
    loader = module.train_dataloader()
    timed = images = 0
    start = cpu_start = 0.0
    first = True
    while timed < batches:
        for batch_images, _ in loader:
            if first:
                first = False
                start, cpu_start = time.perf_counter(), time.process_time()
                continue
            timed += 1
            images += batch_images.shape[0] * batch_images.shape[1]
            if timed == batches:
                break
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return images / wall, 1000 * cpu / images


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.data_train_pipeline", description=__doc__.split("\n\n")[0])
    parser.add_argument("--toy-root", type=Path, default=None,
                        help="an existing toy world (default: generate a small one in a temporary folder)")
    parser.add_argument("--workers", type=int, default=2,
                        help="DataLoader workers of the parallel runs (default: %(default)s)")
    parser.add_argument("--image-size", type=int, default=224, help="training size, square (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=8, help="places per batch, P (default: %(default)s)")
    parser.add_argument("--img-per-place", type=int, default=4, help="images per place, K (default: %(default)s)")
    parser.add_argument("--batches", type=int, default=6, help="batches timed per configuration (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs per configuration; the fastest is reported (default: %(default)s)")
    parser.add_argument("--real-places", type=int, default=100,
                        help="places of 640 x 480 images to write, 4 images each (default: %(default)s)")
    args = parser.parse_args()
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory(prefix="bench_data_train_") as scratch:
        scratch_dir = Path(scratch)
        toy_root = args.toy_root
        if toy_root is None:
            toy_root = scratch_dir / "toy"
            generate_toy_world(toy_root, seed=0, size="small", progress=False)
        toy_cities = [p.stem for p in sorted((toy_root / "gsv-cities" / "Dataframes").glob("*.csv"))]
        real_root = scratch_dir / "real"
        write_real_size_gsv(real_root, args.real_places, 4, (640, 480), seed=0)
        trees = {
            "toy": (toy_root / "gsv-cities", toy_cities),
            "640x480": (real_root, [REAL_CITY]),
        }
        size = (args.image_size, args.image_size)
        results: dict[tuple[str, bool, int], float] = {}
        table = PrettyTable(["data", "draft mode", "workers", "images/s", "ms/image", "main-process CPU ms/image"],
                            align="r")
        for data, (root, cities) in trees.items():
            for draft in (False, True):
                for workers in (0, args.workers):
                    module = GSVCitiesDataModule(str(root), cities=cities, batch_size=args.batch_size,
                                                 img_per_place=args.img_per_place, min_img_per_place=args.img_per_place,
                                                 image_size=size, num_workers=workers, shuffle_all=True)
                    module.setup("fit")
                    if not draft:  # decode at full size
                        assert module.train_dataset is not None
                        module.train_dataset.decode_size = None
                    runs = [throughput(module, args.batches) for _ in range(args.repeats)]
                    rate, cpu_ms = max(runs)
                    results[(data, draft, workers)] = rate
                    table.add_row([data, "on" if draft else "off", workers, f"{rate:.1f}", f"{1000 / rate:.2f}",
                                   f"{cpu_ms:.2f}"])
                    print(f"  {data:8s} draft {'on ' if draft else 'off'} workers {workers}: {rate:.1f} images/s "
                          f"(runs: {', '.join(f'{r:.0f}' for r, _ in runs)})", file=sys.stderr, flush=True)

    load = os.getloadavg()[0]
    print(f"training pipeline, {args.batch_size} places x {args.img_per_place} images at {args.image_size} px, "
          f"RandAugment(3); best of {args.repeats} runs of {args.batches} batches; {os.cpu_count()} CPUs, "
          f"load average {load:.1f} at the end")
    print(table)
    for data in trees:
        for workers in (0, args.workers):
            ratio = results[(data, True, workers)] / results[(data, False, workers)]
            print(f"{data:8s} workers {workers}: draft mode on / off = {ratio:.2f}x")
        for draft in (False, True):
            ratio = results[(data, draft, args.workers)] / results[(data, draft, 0)]
            print(f"{data:8s} draft {'on ' if draft else 'off'}: {args.workers} workers / 0 workers = {ratio:.2f}x")
    return 0 if all(math.isfinite(v) and v > 0 for v in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
