"""Entry point: :func:`generate_toy_world` plans the regions, builds the cities, renders every
dataset part and writes its files and ``toy_world.json``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict
from pathlib import Path

from dataloaders.constants import MSLS_TEST_CITIES, MSLS_VAL_CITIES

from .city import City, build_city
from .gmberton import gmberton_part
from .gsv import gsv_part
from .jobs import render_jobs
from .layout import GMBERTON_SET
from .msls import msls_test_part, msls_val_part
from .msls_train import msls_train_part
from .pittsburgh import pitts_part
from .randomness import STREAM_CITY, stream_rng
from .regions import Region, plan_msls_train_regions, plan_regions
from .sizes import SUMMARY_FILE, TOY_WORLD_SIZES, TOY_WORLD_VERSION, ToyWorldSize, ToyWorldSummary, resolve_size
from .vprbench import nordland_part, sped_part

from utils.errors import UserError, UserFileExistsError

logger = logging.getLogger(__name__)


def _check_output_folder(root: Path) -> None:
    if root.exists() and not root.is_dir():
        raise UserFileExistsError(f"toy world output {root} exists and is not a folder")
    if root.is_dir() and any(root.iterdir()):
        raise UserFileExistsError(f"toy world output folder {root} is not empty; choose a new or empty folder")


def generate_toy_world(root: str | os.PathLike[str], seed: int = 0, size: str | ToyWorldSize = "default",
                       image_size: int = 112, workers: int = 1, progress: bool = True) -> ToyWorldSummary:
    """Generate the toy world under ``root`` (which must be absent or empty).

    Args:
        root: output folder.
        seed: any non-negative integer; the same seed gives byte-identical files.
        size: ``"small"`` (a few hundred images, for tests), ``"default"`` (a few thousand), or
            an explicit :class:`ToyWorldSize`.
        image_size: side of the square JPEG images, in pixels (at least 16).
        workers: rendering processes (the output does not depend on it).
        progress: show a tqdm progress bar.

    Raises:
        FileExistsError: ``root`` exists and is not an empty folder.
        ValueError: a bad ``seed``, ``size`` or ``image_size``.
    """
    root = Path(root)
    if seed < 0:
        raise UserError(f"seed={seed}: expected a non-negative integer")
    if image_size < 16:
        raise UserError(f"image_size={image_size}: expected at least 16 pixels")
    resolved = resolve_size(size)
    size_name = size if isinstance(size, str) else next(
        (name for name, preset in TOY_WORLD_SIZES.items() if preset == size), "custom")
    _check_output_folder(root)

    train_regions, eval_regions = plan_regions(resolved)
    msls_train_regions = plan_msls_train_regions(resolved)

    def city_of(region: Region, index: int) -> City:
        return build_city(stream_rng(seed, STREAM_CITY, index), region.size[0], region.size[1])

    gsv_cities = [city_of(region, i) for i, region in enumerate(train_regions)]
    eval_cities = {name: city_of(region, 1000 + i) for i, (name, region) in enumerate(eval_regions.items())}
    val_names = [f"msls_val_{c}" for c in MSLS_VAL_CITIES]
    test_names = [f"msls_test_{c}" for c in MSLS_TEST_CITIES]
    gmberton = f"gmberton_{GMBERTON_SET}"
    parts = [
        gsv_part(root, seed, resolved, train_regions, gsv_cities),
        msls_val_part(root, seed, resolved, [eval_regions[n] for n in val_names], [eval_cities[n] for n in val_names]),
        msls_test_part(root, seed, resolved, [eval_regions[n] for n in test_names],
                        [eval_cities[n] for n in test_names]),
        pitts_part(root, seed, resolved, eval_regions["pittsburgh"], eval_cities["pittsburgh"]),
        nordland_part(root, seed, resolved, eval_cities["nordland"]),
        sped_part(root, seed, resolved, eval_cities["sped"]),
        gmberton_part(root, seed, resolved, eval_regions[gmberton], eval_cities[gmberton]),
    ]
    if msls_train_regions:  # its own streams: the parts above do not change
        parts.append(msls_train_part(root, seed, resolved, msls_train_regions,
                                     [city_of(region, 2000 + i) for i, region in enumerate(msls_train_regions)]))
    root.mkdir(parents=True, exist_ok=True)
    jobs = [job for part in parts for job in part.jobs]
    num_images = render_jobs(jobs, image_size, workers=workers, progress=progress)
    for part in parts:
        part.write_files()
    counts: dict[str, dict[str, int]] = {}
    for part in parts:
        counts.update(part.counts)
    regions = ({f"gsv_{r.name}": r.box for r in train_regions} | {name: r.box for name, r in eval_regions.items()}
               | {r.name: r.box for r in msls_train_regions})
    summary = ToyWorldSummary(root=root, seed=seed, size=size_name, image_size=image_size,
                              version=TOY_WORLD_VERSION, num_images=num_images,
                              gsv_cities=tuple(resolved.gsv_cities), parameters=asdict(resolved), counts=counts,
                              regions=regions)
    (root / SUMMARY_FILE).write_text(summary.to_json())
    logger.info("toy world: %d images under %s", num_images, root)
    return summary
