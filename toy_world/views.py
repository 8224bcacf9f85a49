"""Camera views and their appearance conditions (light, weather, camera response)."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np


@dataclass(frozen=True)
class Views:
    """N camera views and their appearance; every field is an array with N rows.

    Geometry: ``x, y`` (m), ``heading`` (compass deg), ``pitch`` (deg, up > 0), ``fov``
    (horizontal, deg), ``camera_height`` (m). Light: ``sun_azimuth`` (deg), ``ambient``,
    ``diffuse``, ``sky_zenith [N, 3]``, ``sky_horizon [N, 3]``, ``fog_m``, ``night`` (bool),
    ``snow`` (0..1). Camera response: ``colour_matrix [N, 3, 3]``, ``gamma``,
    ``noise_sigma`` (0..255 scale). ``occluder_rate``: mean number of occluders.
    ``seed``: per-image seed for occluders, noise and lit windows.
    """

    x: np.ndarray
    y: np.ndarray
    heading: np.ndarray
    pitch: np.ndarray
    fov: np.ndarray
    camera_height: np.ndarray
    sun_azimuth: np.ndarray
    ambient: np.ndarray
    diffuse: np.ndarray
    sky_zenith: np.ndarray
    sky_horizon: np.ndarray
    fog_m: np.ndarray
    night: np.ndarray
    snow: np.ndarray
    colour_matrix: np.ndarray
    gamma: np.ndarray
    noise_sigma: np.ndarray
    occluder_rate: np.ndarray
    seed: np.ndarray

    def __len__(self) -> int:
        return len(self.x)

    def take(self, index: np.ndarray | slice) -> Views:
        return Views(**{item.name: getattr(self, item.name)[index] for item in fields(self)})


@dataclass(frozen=True)
class Appearance:
    """How strongly images vary: 0 = identical conditions, 1 = query-like changes."""

    strength: float
    night_probability: float = 0.0
    snow_probability: float = 0.0
    occluder_rate: float = 1.0


DATABASE_LOOK = Appearance(strength=0.3, occluder_rate=0.7)
QUERY_LOOK = Appearance(strength=1.0, night_probability=0.15, snow_probability=0.2, occluder_rate=2.5)
TRAIN_LOOK = Appearance(strength=1.0, night_probability=0.12, snow_probability=0.15, occluder_rate=2.0)


def _colour_matrices(rng: np.random.Generator, count: int, strength: float) -> np.ndarray:
    """Per-image 3x3 colour transforms: hue rotation, saturation, white balance, brightness."""
    angle = rng.normal(0.0, np.radians(22.0) * strength, count)
    saturation = np.exp(rng.normal(0.0, 0.35 * strength, count))
    gain = np.exp(rng.normal(0.0, 0.12 * strength, (count, 3)))
    brightness = np.exp(rng.normal(0.0, 0.22 * strength, count))
    grey = np.full((3, 3), 1.0 / 3.0)
    axis = np.ones(3) / math.sqrt(3.0)
    cross = np.array([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
    matrices = np.empty((count, 3, 3))
    for i in range(count):
        rotation = (math.cos(angle[i]) * np.eye(3) + math.sin(angle[i]) * cross
                    + (1 - math.cos(angle[i])) * np.outer(axis, axis))
        saturate = grey + saturation[i] * (np.eye(3) - grey)
        matrices[i] = brightness[i] * np.diag(gain[i]) @ saturate @ rotation
    return matrices


def sample_views(rng: np.random.Generator, x: np.ndarray, y: np.ndarray, heading: np.ndarray,
                 look: Appearance, *, pitch: np.ndarray | None = None, fov: np.ndarray | None = None,
                 camera_height: np.ndarray | None = None, night: np.ndarray | None = None,
                 snow: np.ndarray | None = None) -> Views:
    """Views at the given poses with random appearance drawn for ``look``; geometry not given
    is drawn at random around a street-level camera."""
    count = len(x)
    strength = look.strength
    pitch = rng.uniform(-3.0, 6.0, count) if pitch is None else pitch
    fov = rng.uniform(75.0, 95.0, count) if fov is None else fov
    camera_height = rng.uniform(2.0, 3.0, count) if camera_height is None else camera_height
    night = rng.uniform(size=count) < look.night_probability if night is None else night
    snow_draw = rng.uniform(0.5, 1.0, count) * (rng.uniform(size=count) < look.snow_probability)
    snow = snow_draw if snow is None else snow
    overcast = rng.uniform(size=count) < 0.3 * max(strength, 0.3)
    dusk = (rng.uniform(size=count) < 0.2 * strength) & ~night
    ambient = np.where(overcast, rng.uniform(0.75, 0.9, count), rng.uniform(0.45, 0.65, count))
    diffuse = np.where(overcast, rng.uniform(0.03, 0.1, count), rng.uniform(0.3, 0.55, count))
    zenith = np.where(overcast[:, None], [0.62, 0.64, 0.68], [0.30, 0.50, 0.85]) + rng.normal(0, 0.04, (count, 3))
    horizon = np.where(overcast[:, None], [0.78, 0.79, 0.80], [0.72, 0.82, 0.93]) + rng.normal(0, 0.04, (count, 3))
    horizon = np.where(dusk[:, None], [0.95, 0.62, 0.38], horizon)
    zenith = np.where(dusk[:, None], [0.35, 0.35, 0.60], zenith)
    ambient = np.where(night, rng.uniform(0.12, 0.2, count), ambient)
    diffuse = np.where(night, 0.0, diffuse)
    zenith = np.where(night[:, None], [0.02, 0.03, 0.08], zenith)
    horizon = np.where(night[:, None], [0.10, 0.09, 0.14], horizon)
    return Views(
        x=np.asarray(x, dtype=np.float64), y=np.asarray(y, dtype=np.float64),
        heading=np.asarray(heading, dtype=np.float64) % 360.0, pitch=np.asarray(pitch, dtype=np.float64),
        fov=np.asarray(fov, dtype=np.float64), camera_height=np.asarray(camera_height, dtype=np.float64),
        sun_azimuth=rng.uniform(0.0, 360.0, count), ambient=ambient, diffuse=diffuse,
        sky_zenith=np.clip(zenith, 0, 1), sky_horizon=np.clip(horizon, 0, 1),
        fog_m=rng.uniform(90.0, 250.0, count) / (1.0 + strength * rng.uniform(0.0, 1.5, count)),
        night=np.asarray(night, dtype=bool), snow=np.asarray(snow, dtype=np.float64),
        colour_matrix=_colour_matrices(rng, count, strength),
        gamma=np.exp(rng.normal(0.0, 0.18 * strength, count)),
        noise_sigma=rng.uniform(0.5, 1.0 + 4.0 * strength, count),
        occluder_rate=np.full(count, look.occluder_rate),
        seed=rng.integers(0, 2**31 - 1, count),
    )
