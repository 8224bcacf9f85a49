"""Geography: regions of the toy world on the global plane, with UTM and lat/lon references."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dataloaders.constants import MSLS_TEST_CITIES, MSLS_VAL_CITIES

from .layout import GMBERTON_SET
from .sizes import GSV_CITY_CENTRES, ToyWorldSize


@dataclass(frozen=True)
class Region:
    """One city of the toy world: where it lies on the global plane and on the Earth.

    ``origin`` is the global position (m) of its local (0, 0); UTM and lat/lon of a local
    point are the region's reference values plus the local offset (a flat-Earth
    approximation, fine over a few hundred metres).
    """

    name: str
    origin: tuple[float, float]
    size: tuple[float, float]
    utm_origin: tuple[float, float] = (500000.0, 4000000.0)
    utm_zone: str = "30"
    utm_letter: str = "T"
    latlon_origin: tuple[float, float] = (0.0, 0.0)

    @property
    def box(self) -> tuple[float, float, float, float]:
        return (self.origin[0], self.origin[1], self.origin[0] + self.size[0], self.origin[1] + self.size[1])

    def utm(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """UTM easting, northing of local points."""
        return self.utm_origin[0] + np.asarray(x), self.utm_origin[1] + np.asarray(y)

    def latlon(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Latitude, longitude (deg) of local points."""
        lat0, lon0 = self.latlon_origin
        lat = lat0 + np.asarray(y) / 111_320.0
        lon = lon0 + np.asarray(x) / (111_320.0 * math.cos(math.radians(lat0)))
        return lat, lon


_MSLS_VAL_GEO: dict[str, tuple[tuple[float, float], str, str, tuple[float, float]]] = {
    "cph": ((723000.0, 6175000.0), "33", "U", (55.6761, 12.5683)),
    "sf": ((549000.0, 4180000.0), "10", "S", (37.7749, -122.4194)),
}
_PITTS_GEO = ((584000.0, 4477000.0), "17", "T", (40.4406, -79.9959))
_GMBERTON_GEO = ((440000.0, 4474000.0), "30", "T", (40.4168, -3.7038))

_TRAIN_ROW_Y = 0.0  # GSV-Cities training regions lie along this row of the global plane ...
_EVAL_ROW_Y = 50_000.0  # ... and every evaluation region along this one, far away
_MSLS_TRAIN_ROW_Y = 100_000.0  # MSLS training cities (CliqueMining) along a third row
_REGION_GAP = 5_000.0


def _layout_regions(specs: Sequence[tuple[str, float, float, dict]], row_y: float) -> list[Region]:
    """Place regions side by side along a row of the global plane, ``_REGION_GAP`` apart."""
    regions = []
    x = 0.0
    for name, size_x, size_y, geo in specs:
        regions.append(Region(name=name, origin=(x, row_y), size=(size_x, size_y), **geo))
        x += size_x + _REGION_GAP
    return regions


def plan_regions(size: ToyWorldSize) -> tuple[list[Region], dict[str, Region]]:
    """The training regions (one per GSV city) and the evaluation regions, by name."""
    train = _layout_regions([(name, 400.0, 400.0, {"latlon_origin": GSV_CITY_CENTRES[name]})
                             for name in size.gsv_cities], _TRAIN_ROW_Y)
    nordland_length = 6.0 * (10 * (size.nordland_queries - 1) + 2) + 80.0
    specs: list[tuple[str, float, float, dict]] = []
    for name in MSLS_VAL_CITIES:
        utm, zone, letter, latlon = _MSLS_VAL_GEO[name]
        specs.append((f"msls_val_{name}", 400.0, 400.0,
                      {"utm_origin": utm, "utm_zone": zone, "utm_letter": letter, "latlon_origin": latlon}))
    specs += [(f"msls_test_{name}", 240.0, 240.0, {}) for name in MSLS_TEST_CITIES]
    utm, zone, letter, latlon = _PITTS_GEO
    specs.append(("pittsburgh", 400.0, 400.0,
                  {"utm_origin": utm, "utm_zone": zone, "utm_letter": letter, "latlon_origin": latlon}))
    specs.append(("nordland", nordland_length, 140.0, {}))
    specs.append(("sped", 400.0, 400.0, {}))
    utm, zone, letter, latlon = _GMBERTON_GEO
    specs.append((f"gmberton_{GMBERTON_SET}", 400.0, 400.0,
                  {"utm_origin": utm, "utm_zone": zone, "utm_letter": letter, "latlon_origin": latlon}))
    evaluation = {region.name: region for region in _layout_regions(specs, _EVAL_ROW_Y)}
    return train, evaluation


def plan_msls_train_regions(size: ToyWorldSize) -> list[Region]:
    """The MSLS training cities' regions (``msls_train_<city>``), on a row of their own."""
    return _layout_regions([(f"msls_train_{name}", 300.0, 300.0, {}) for name in size.msls_train_cities],
                           _MSLS_TRAIN_ROW_Y)
