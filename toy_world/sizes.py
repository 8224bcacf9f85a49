"""How much of the toy world to generate, and the summary of what was generated.

``ToyWorldSize`` and its presets ``TOY_WORLD_SIZES``, the GSV-Cities training cities and where
they lie, and ``ToyWorldSummary`` (saved as ``toy_world.json``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from utils.errors import UserError


TOY_WORLD_VERSION = 1
SUMMARY_FILE = "toy_world.json"


# The 23 GSV-Cities training cities (published order) and the (lat, lon) of their centres,
# where the toy cities named after them are placed.
GSV_CITY_CENTRES: dict[str, tuple[float, float]] = {
    "Bangkok": (13.7563, 100.5018), "BuenosAires": (-34.6037, -58.3816), "LosAngeles": (34.0522, -118.2437),
    "MexicoCity": (19.4326, -99.1332), "OSL": (59.9139, 10.7522), "Rome": (41.9028, 12.4964),
    "Barcelona": (41.3874, 2.1686), "Chicago": (41.8781, -87.6298), "Madrid": (40.4168, -3.7038),
    "Miami": (25.7617, -80.1918), "Phoenix": (33.4484, -112.0740), "TRT": (43.6532, -79.3832),
    "Boston": (42.3601, -71.0589), "Lisbon": (38.7223, -9.1393), "Medellin": (6.2476, -75.5658),
    "Minneapolis": (44.9778, -93.2650), "PRG": (50.0755, 14.4378), "WashingtonDC": (38.9072, -77.0369),
    "Brussels": (50.8503, 4.3517), "London": (51.5074, -0.1278), "Melbourne": (-37.8136, 144.9631),
    "Osaka": (34.6937, 135.5023), "PRS": (48.8566, 2.3522),
}


@dataclass(frozen=True)
class ToyWorldSize:
    """How much to generate. Counts are per city / area / set as named."""

    gsv_cities: tuple[str, ...]
    gsv_places_per_city: int
    gsv_images_per_place: tuple[int, int]  # inclusive range
    msls_val_db_per_city: int
    msls_val_queries_per_city: int
    msls_test_db_per_city: int
    msls_test_queries_per_city: int
    pitts_db_places_per_area: int  # two areas (30k val, 30k test); 250k test uses both
    pitts_query_places_per_set: int  # each query place is 24 images
    nordland_queries: int  # the database is 10 * (queries - 1) + 2 frames
    sped_pairs: int
    gmberton_db: int
    gmberton_queries: int
    msls_train_cities: tuple[str, ...] = ()  # MSLS train_val cities with unique_cluster (CliqueMining)
    msls_train_routes_per_city: int = 2
    msls_train_clusters_per_route: int = 6
    msls_train_images_per_cluster: tuple[int, int] = (3, 4)  # inclusive range, split between database and query

    def __post_init__(self) -> None:
        low, high = self.gsv_images_per_place
        if not 1 <= low <= high:
            raise UserError("gsv_images_per_place must be (low, high) with 1 <= low <= high, "
                            f"got {self.gsv_images_per_place}")
        if not self.gsv_cities:
            raise UserError("gsv_cities must name at least one city")
        unknown = [city for city in self.gsv_cities if city not in GSV_CITY_CENTRES]
        if unknown:
            raise UserError(f"unknown GSV-Cities city {', '.join(unknown)}; expected names from "
                            f"{', '.join(GSV_CITY_CENTRES)}")
        if len(set(self.gsv_cities)) != len(self.gsv_cities):
            raise UserError(f"gsv_cities lists a city twice: {', '.join(self.gsv_cities)}")
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, int) and value < 1:
                raise UserError(f"{item.name} must be at least 1, got {value}")
        if not 2 <= self.msls_train_images_per_cluster[0] <= self.msls_train_images_per_cluster[1]:
            raise UserError("msls_train_images_per_cluster must be (low, high) with 2 <= low <= high, "
                             f"got {self.msls_train_images_per_cluster}")
        if len(set(self.msls_train_cities)) != len(self.msls_train_cities):
            raise UserError(f"msls_train_cities lists a city twice: {', '.join(self.msls_train_cities)}")
        if self.nordland_queries < 2:
            raise UserError(f"nordland_queries must be at least 2, got {self.nordland_queries}")


TOY_WORLD_SIZES: dict[str, ToyWorldSize] = {
    "small": ToyWorldSize(
        gsv_cities=("Bangkok", "Boston", "PRS"),
        gsv_places_per_city=8,
        gsv_images_per_place=(4, 6),
        msls_val_db_per_city=18,
        msls_val_queries_per_city=8,
        msls_test_db_per_city=4,
        msls_test_queries_per_city=2,
        pitts_db_places_per_area=2,
        pitts_query_places_per_set=1,
        nordland_queries=4,
        sped_pairs=6,
        gmberton_db=12,
        gmberton_queries=4,
        msls_train_cities=("trondheim", "london"),
        msls_train_routes_per_city=2,
        msls_train_clusters_per_route=6,
        msls_train_images_per_cluster=(3, 4),
    ),
    "default": ToyWorldSize(
        gsv_cities=("Bangkok", "Boston", "London", "PRS"),
        gsv_places_per_city=80,
        gsv_images_per_place=(4, 8),
        msls_val_db_per_city=120,
        msls_val_queries_per_city=40,
        msls_test_db_per_city=12,
        msls_test_queries_per_city=4,
        pitts_db_places_per_area=8,
        pitts_query_places_per_set=3,
        nordland_queries=20,
        sped_pairs=60,
        gmberton_db=120,
        gmberton_queries=40,
        msls_train_cities=("trondheim", "london", "boston"),
        msls_train_routes_per_city=3,
        msls_train_clusters_per_route=10,
        msls_train_images_per_cluster=(4, 6),
    ),
}


def resolve_size(size: str | ToyWorldSize) -> ToyWorldSize:
    """A preset name (``small``, ``default``) or an explicit :class:`ToyWorldSize`."""
    if isinstance(size, ToyWorldSize):
        return size
    if size not in TOY_WORLD_SIZES:
        raise UserError(f"unknown toy world size {size!r}; expected one of {', '.join(TOY_WORLD_SIZES)}")
    return TOY_WORLD_SIZES[size]


@dataclass(frozen=True)
class ToyWorldSummary:
    """What :func:`generate_toy_world` wrote (also saved as ``toy_world.json``)."""

    root: Path
    seed: int
    size: str
    image_size: int
    version: int
    num_images: int
    gsv_cities: tuple[str, ...]
    parameters: dict[str, object]  # the ToyWorldSize fields used
    counts: dict[str, dict[str, int]]
    regions: dict[str, tuple[float, float, float, float]]  # global (x0, y0, x1, y1) metres

    def to_json(self) -> str:
        payload = asdict(self)
        payload.pop("root")
        payload["gsv_cities"] = list(self.gsv_cities)
        payload["regions"] = {name: list(box) for name, box in self.regions.items()}
        return json.dumps(payload, indent=2, sort_keys=True) + "\n"
