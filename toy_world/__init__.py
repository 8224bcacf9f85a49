"""Procedural toy world: a small stand-in for the real VPR datasets, generated on a CPU.

The world is a set of separate regions (one per GSV-Cities training city and one per
evaluation set), laid out far apart on one global plane so that training places never share
buildings with evaluation places. Each region is a city block grid in local metres (x east,
y north): streets, and box-shaped buildings with procedural facades (wall colour, window
grid, shop fronts). Images are rendered by ray casting from street-level cameras, so a
place's appearance is a function of its world coordinates: nearby cameras see the same
buildings from slightly different viewpoints (hard negatives), and ground truth comes from
positions exactly as in the real datasets.

Every image gets appearance changes (sun direction, overcast, dusk, night with lit windows,
snow, colour cast, hue and saturation shifts, gamma, noise) and image-space occluders (cars,
pedestrians, trees, poles). Queries get strong changes, database images mild ones, so global
colour statistics alone do not solve retrieval.

Everything is drawn from ``numpy.random.default_rng([seed, stream, ...])`` with one stream per
region and dataset part: the same seed gives byte-identical files, whatever the number of
rendering workers.

The output tree mimics a user's data folder with the published layouts (see
``docs/DATASETS.md``): GSV-Cities, the raw MSLS tree, Pittsburgh images and ``.mat`` files,
VPR-Bench Nordland and SPED, a gmberton-format set, and the published ``.npy`` index files
computed from the world's ground truth. ``toy_world.json`` records what was generated.

Modules: ``sizes`` (how much to generate, the summary), ``layout`` (dataset names and
constants), ``randomness`` (random streams, hashes), ``city`` (street grid, buildings),
``streets`` (street points, routes), ``views`` (cameras, appearance), ``render`` (ray casting),
``finish`` (occluders, camera response), ``jobs`` (rendering and saving images), ``regions``
(geography), ``files`` and ``part`` (output files),
one module per dataset family (``gsv``, ``msls``, ``pittsburgh``, ``vprbench``, ``gmberton``)
and ``generate`` (:func:`generate_toy_world`).
"""

from .city import COLOUR_ROWS, FACADE_COLUMNS, WINDOW_STYLES, City, build_city
from .finish import finish_images
from .generate import generate_toy_world
from .gmberton import gmberton_name
from .jobs import JPEG_QUALITY, RenderJob, render_jobs
from .layout import GMBERTON_SET, MSLS_SUBTASKS, PITTS_PITCHES_DEG, PITTS_YAWS
from .regions import Region, plan_regions
from .render import render_views
from .sizes import (
    GSV_CITY_CENTRES,
    SUMMARY_FILE,
    TOY_WORLD_SIZES,
    TOY_WORLD_VERSION,
    ToyWorldSize,
    ToyWorldSummary,
    resolve_size,
)
from .streets import Route, StreetPoint, random_route, random_street_point, spaced_street_points
from .views import DATABASE_LOOK, QUERY_LOOK, TRAIN_LOOK, Appearance, Views, sample_views

__all__ = [
    "COLOUR_ROWS", "DATABASE_LOOK", "FACADE_COLUMNS", "GMBERTON_SET", "GSV_CITY_CENTRES", "JPEG_QUALITY",
    "MSLS_SUBTASKS", "PITTS_PITCHES_DEG", "PITTS_YAWS",
    "QUERY_LOOK", "SUMMARY_FILE", "TOY_WORLD_SIZES", "TOY_WORLD_VERSION", "TRAIN_LOOK", "WINDOW_STYLES",
    "Appearance", "City", "Region", "RenderJob", "Route", "StreetPoint", "ToyWorldSize", "ToyWorldSummary", "Views",
    "build_city", "finish_images", "generate_toy_world", "gmberton_name", "plan_regions",
    "random_route", "random_street_point", "render_jobs", "render_views", "resolve_size", "sample_views",
    "spaced_street_points",
]
