"""Values of the published evaluation protocols, shared by the readers, the index builders, the
command-line tools and the toy world (which mimics the published layouts)."""

from __future__ import annotations

#: A database image within this distance (metres, UTM) of a query is one of its positives.
POSITIVE_RADIUS_M = 25.0
#: MSLS val cities, in the order of the published index files.
MSLS_VAL_CITIES: tuple[str, ...] = ("cph", "sf")
#: MSLS test cities, in the order of the published index files.
MSLS_TEST_CITIES: tuple[str, ...] = ("miami", "athens", "buenosaires", "stockholm", "bengaluru", "kampala")
