"""Render jobs: which views of a city to render and where to save them, run in a process pool."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from .city import City
from .finish import finish_images
from .render import render_views
from .views import Views


JPEG_QUALITY = 90


_CHUNK = 32  # views rendered together (numpy arrays of B x W x K ray steps)


@dataclass(frozen=True)
class RenderJob:
    """Images of one city to render and where to save them (one path per view)."""

    city: City
    views: Views
    paths: tuple[Path, ...]


def _run_job(job: RenderJob, image_size: int) -> int:
    """Render and save one job's images; returns how many were written."""
    for start in range(0, len(job.views), _CHUNK):
        chunk = job.views.take(slice(start, start + _CHUNK))
        pixels = finish_images(render_views(job.city, chunk, image_size), chunk)
        for offset, array in enumerate(pixels):
            path = job.paths[start + offset]
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(array).save(path, format="JPEG", quality=JPEG_QUALITY)
    return len(job.views)


def _split_jobs(jobs: Sequence[RenderJob], max_views: int) -> list[RenderJob]:
    """The same work in jobs of at most ``max_views`` views (units of work for the process pool)."""
    pieces: list[RenderJob] = []
    for job in jobs:
        for start in range(0, len(job.views), max_views):
            stop = start + max_views
            pieces.append(RenderJob(job.city, job.views.take(slice(start, stop)), job.paths[start:stop]))
    return pieces


def render_jobs(jobs: Sequence[RenderJob], image_size: int, workers: int = 1, progress: bool = True) -> int:
    """Render and save every job's images, with ``workers`` processes; returns the image count."""
    pieces = _split_jobs(jobs, 4 * _CHUNK)
    total = sum(len(piece.views) for piece in pieces)
    with tqdm(total=total, desc="rendering toy world", unit="img", disable=not progress) as bar:
        if workers <= 1:
            for piece in pieces:
                bar.update(_run_job(piece, image_size))
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                for written in pool.map(_run_job, pieces, [image_size] * len(pieces)):
                    bar.update(written)
    return total
