"""Finishing raw renders into 8-bit images: occluders, colour response, gamma and noise."""

from __future__ import annotations

import numpy as np

from .city import hsv_to_rgb
from .randomness import hash_unit
from .views import Views


def _draw_occluders(image: np.ndarray, rng: np.random.Generator, rate: float, snow: float,
                    yy: np.ndarray, xx: np.ndarray) -> None:
    """Paint random cars, pedestrians, trees and poles on one float image ``[H, W, 3]`` in
    place; ``yy``, ``xx`` ``[H, W]`` are the pixel rows and columns."""
    height, width = image.shape[:2]
    for _ in range(int(rng.poisson(rate))):
        kind = rng.choice(4, p=[0.35, 0.3, 0.2, 0.15])
        cx = rng.uniform(0, width)
        if kind == 0:  # car: body, window band, two wheels
            w, h = rng.uniform(0.2, 0.5) * width, rng.uniform(0.1, 0.2) * height
            bottom = rng.uniform(0.78, 1.05) * height
            body = (np.abs(xx - cx) < w / 2) & (yy > bottom - h) & (yy < bottom - 0.15 * h)
            hue, saturation, value = rng.uniform(), rng.uniform(0.2, 0.9), rng.uniform(0.15, 0.9)
            image[body] = hsv_to_rgb(np.array(hue), np.array(saturation), np.array(value))
            glass = (np.abs(xx - cx) < w * 0.35) & (yy > bottom - h) & (yy < bottom - 0.65 * h)
            image[glass] = [0.12, 0.14, 0.18]
            for side in (-0.3, 0.3):
                wheel = ((xx - cx - side * w) ** 2 + (yy - bottom + 0.15 * h) ** 2) < (0.14 * h + 1) ** 2
                image[wheel] = [0.05, 0.05, 0.05]
        elif kind == 1:  # pedestrian: body and head
            w, h = rng.uniform(0.025, 0.06) * width, rng.uniform(0.15, 0.35) * height
            bottom = rng.uniform(0.7, 1.0) * height
            body = (np.abs(xx - cx) < w / 2) & (yy > bottom - 0.85 * h) & (yy < bottom)
            image[body] = rng.uniform(0.05, 0.8, 3)
            head = ((xx - cx) ** 2 + (yy - bottom + 0.92 * h) ** 2) < (0.6 * w) ** 2
            image[head] = np.array([0.75, 0.58, 0.45]) * rng.uniform(0.5, 1.1)
        elif kind == 2:  # tree: trunk and crown (bare grey-brown in snow)
            radius = rng.uniform(0.08, 0.2) * width
            cy = rng.uniform(0.2, 0.55) * height
            trunk = (np.abs(xx - cx) < 0.1 * radius) & (yy > cy) & (yy < rng.uniform(0.75, 1.0) * height)
            image[trunk] = [0.3, 0.22, 0.15]
            crown = ((xx - cx) ** 2 + ((yy - cy) * 1.2) ** 2) < radius**2
            leaves = np.array([0.45, 0.4, 0.35]) if snow > 0.3 else hsv_to_rgb(
                np.array(rng.uniform(0.2, 0.38)), np.array(rng.uniform(0.4, 0.8)), np.array(rng.uniform(0.25, 0.6)))
            speckle = hash_unit(np.floor(xx / 2), np.floor(yy / 2), int(rng.integers(1 << 20)))
            image[crown] = leaves * (0.7 + 0.6 * speckle[crown])[:, None]
        else:  # pole with a sign
            top = rng.uniform(0.1, 0.5) * height
            pole = (np.abs(xx - cx) < rng.uniform(0.6, 1.5)) & (yy > top)
            image[pole] = [0.35, 0.36, 0.38]
            sign = (np.abs(xx - cx) < 0.05 * width) & (np.abs(yy - top - 0.04 * height) < 0.04 * height)
            image[sign] = rng.uniform(0.1, 1.0, 3)


def finish_images(images: np.ndarray, views: Views) -> np.ndarray:
    """Occluders, colour transform, gamma and sensor noise: ``[N, H, W, 3]`` float -> uint8."""
    out = np.empty(images.shape, dtype=np.uint8)
    yy, xx = np.mgrid[0:images.shape[1], 0:images.shape[2]].astype(np.float32)
    for index in range(len(views)):
        rng = np.random.default_rng(int(views.seed[index]))
        image = images[index].copy()
        _draw_occluders(image, rng, float(views.occluder_rate[index]), float(views.snow[index]), yy, xx)
        matrix = views.colour_matrix[index].astype(np.float32)
        image = image[..., 0:1] * matrix[:, 0] + image[..., 1:2] * matrix[:, 1] + image[..., 2:3] * matrix[:, 2]
        image = np.clip(image, 0.0, 1.0) ** np.float32(views.gamma[index])
        noise = rng.standard_normal(image.shape, dtype=np.float32) * np.float32(views.noise_sigma[index])
        out[index] = np.clip(np.rint(image * 255.0 + noise), 0, 255).astype(np.uint8)
    return out
