"""Random streams of the toy world and deterministic hashes.

Everything is drawn from ``numpy.random.default_rng([seed, stream, ...])`` with one stream per
region and dataset part, so that changing one part's size leaves the others unchanged.
"""

from __future__ import annotations

import numpy as np


_KEY_ALPHABET = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"))


# One stream id per part of the world, so that changing one part's size leaves the others.
STREAM_CITY = 1
STREAM_GSV = 2
STREAM_MSLS_VAL = 3
STREAM_MSLS_TEST = 4
STREAM_PITTS = 5
STREAM_NORDLAND = 6
STREAM_SPED = 7
STREAM_GMBERTON = 8
STREAM_MSLS_TRAIN = 9


def stream_rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, *stream])


def random_keys(rng: np.random.Generator, count: int, length: int = 22) -> list[str]:
    """``count`` distinct base64url strings like MSLS keys and Street View pano ids."""
    keys: list[str] = []
    seen: set[str] = set()
    while len(keys) < count:
        key = "".join(_KEY_ALPHABET[rng.integers(0, len(_KEY_ALPHABET), length)])
        if key not in seen:
            seen.add(key)
            keys.append(key)
    return keys


def hash_unit(*values: np.ndarray | int) -> np.ndarray:
    """Deterministic hash of integer arrays to floats in [0, 1) (broadcast shape)."""
    primes = (0x9E3779B1, 0x85EBCA77, 0xC2B2AE3D, 0x27D4EB2F, 0x165667B1)
    state = np.uint32(0x811C9DC5)
    for index, value in enumerate(values):
        term = np.asarray(value).astype(np.int64).astype(np.uint32) * np.uint32(primes[index % len(primes)])
        state = (state ^ term) * np.uint32(0x01000193)
        state = state ^ (state >> np.uint32(15))
    state = state * np.uint32(0x2C1B3C6D)
    state = state ^ (state >> np.uint32(12))
    return (state >> np.uint32(8)).astype(np.float32) / np.float32(1 << 24)
