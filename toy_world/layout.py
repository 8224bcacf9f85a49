"""Names and constants of the published dataset layouts the toy world mimics (see ``docs/DATASETS.md``);
those the data layer reads too (the MSLS cities, the positive radius) are in ``dataloaders.constants``."""

from __future__ import annotations


MSLS_SUBTASKS: tuple[str, ...] = ("all", "s2w", "w2s", "o2n", "n2o", "d2n", "n2d")
PITTS_YAWS = 12
PITTS_PITCHES_DEG = (4.0, 26.5)
GMBERTON_SET = "toy_city"
