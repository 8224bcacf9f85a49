"""Weights drawn from a seed, for every key of a state dict: the rule the parity fixtures were made
with (``tests/fixtures/parity/README.md``, with the extensions of
``README_dinov3_boq.md`` and ``README_zoo.md`` there), also used by the benches to time networks whose
blocks all count (a LayerScale of about 0.5) without a released file.

The rule is a published one: change it and the parity fixtures no longer reproduce.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def synthesize_value(key: str, z: np.ndarray) -> np.ndarray:
    """Turn a standard-normal draw into the value the synthesis rule gives ``key``."""
    last = key.rsplit(".", 1)[-1]
    if key.endswith("dust_bin"):
        return 1 + 0.1 * z
    if last == "running_var":  # BatchNorm variance, kept positive (README_dinov3_boq.md's extension)
        return 1 + 0.1 * z
    if last == "p" and z.shape == (1,):  # GeM's exponent, a proper power mean (README_zoo.md's extension)
        return 3 + 0.1 * z
    if last == "gamma":
        return 0.5 + 0.1 * z
    if z.ndim == 1 and last == "weight":
        return 1 + 0.1 * z
    if z.ndim <= 1:
        return 0.02 * z
    if last in ("cls_token", "pos_embed", "mask_token", "register_tokens", "storage_tokens"):
        return 0.02 * z
    fan_in = math.prod(z.shape[1:])
    return z / math.sqrt(fan_in)


def synthesize_state_dict(shapes: dict[str, list[int]], seed: int) -> dict[str, torch.Tensor]:
    """Weights for every key of ``shapes``, drawn in sorted key order from ``default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    state_dict = {}
    for key in sorted(shapes):
        z = rng.standard_normal(tuple(shapes[key]))
        state_dict[key] = torch.from_numpy(np.asarray(synthesize_value(key, np.asarray(z)), dtype=np.float32))
    return state_dict
