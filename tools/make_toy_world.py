"""Generate the procedural toy world: a small, deterministic stand-in for the real datasets
(GSV-Cities for training; MSLS, Pittsburgh, Nordland, SPED and a gmberton-format set for
evaluation), in the published folder layouts, so the whole pipeline runs on a CPU in minutes.

Example::

    python -m tools.make_toy_world --out data/toy --seed 0
    python -m tools.make_toy_world --out /tmp/toy_small --size small --image_size 96

The same seed gives byte-identical files. The dashed spellings of the flags (``--image-size``)
still work. The output folder must be absent or empty.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

if __package__ in (None, ""):  # run as `python tools/make_toy_world.py`: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from toy_world import GSV_CITY_CENTRES, SUMMARY_FILE, TOY_WORLD_SIZES, generate_toy_world
from utils.cli import flag_names
from utils.errors import UserError, render


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.make_toy_world",
        description=(
            "Generate the procedural toy world under --out: gsv-cities/ (training), mapillary/, "
            "Pittsburgh/, Nordland/, SPEDTEST/, gmberton/ (evaluation images in the published "
            "layouts), datasets/ (the published .npy index files) and toy_world.json. "
            "The output folder must be absent or empty."
        ),
    )
    parser.add_argument("--out", type=Path, default=Path("data/toy"),
                        help="output folder, absent or empty (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed, >= 0 (default: %(default)s)")
    parser.add_argument("--size", choices=sorted(TOY_WORLD_SIZES), default="default",
                        help="'small': a few hundred images for tests; 'default': about 3,500 images "
                             "(default: %(default)s)")
    parser.add_argument("--gsv_cities", "--gsv-cities", nargs="+", metavar="CITY",
                        help="GSV-Cities training cities to generate, names from the 23-city list "
                             "(default: those of --size)")
    parser.add_argument("--gsv_places_per_city", "--gsv-places-per-city", type=int, metavar="N",
                        help="training places per city (default: that of --size)")
    parser.add_argument("--image_size", "--image-size", type=int, default=112,
                        help="side of the square JPEG images in pixels, >= 16 (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                        help="rendering processes; the output does not depend on it (default: %(default)s)")
    parser.add_argument("--no_progress", "--no-progress", action="store_true", help="hide the progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.seed < 0:
        parser.error(f"--seed must be >= 0, got {args.seed}")
    if args.image_size < 16:
        parser.error(f"--image_size must be at least 16, got {args.image_size}")
    if args.workers < 1:
        parser.error(f"--workers must be at least 1, got {args.workers}")
    if args.gsv_places_per_city is not None and args.gsv_places_per_city < 1:
        parser.error(f"--gsv_places_per_city must be at least 1, got {args.gsv_places_per_city}")
    unknown = sorted(set(args.gsv_cities or ()) - set(GSV_CITY_CENTRES))
    if unknown:
        parser.error(f"--gsv_cities: unknown city {', '.join(unknown)}; "
                     f"expected names from {', '.join(GSV_CITY_CENTRES)}")
    size = TOY_WORLD_SIZES[args.size]
    if args.gsv_cities:
        size = replace(size, gsv_cities=tuple(args.gsv_cities))
    if args.gsv_places_per_city is not None:
        size = replace(size, gsv_places_per_city=args.gsv_places_per_city)
    if args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
        parser.error(f"--out {args.out} exists and is not an empty folder; choose a new or empty folder")
    start = time.perf_counter()
    try:
        summary = generate_toy_world(args.out, seed=args.seed, size=size, image_size=args.image_size,
                                     workers=args.workers, progress=not args.no_progress)
    except UserError as error:
        parser.error(render(error, flag_names(parser)))
    elapsed = time.perf_counter() - start
    gsv = summary.counts["gsv_total"]
    print(f"wrote the toy world ({summary.size}, seed {args.seed}) to {args.out}: {summary.num_images} images "
          f"({gsv['places']} GSV-Cities places in {len(summary.gsv_cities)} cities, "
          f"{summary.num_images - gsv['images']} evaluation images), summary in {args.out / SUMMARY_FILE}; "
          f"took {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
