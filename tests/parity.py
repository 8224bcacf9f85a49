"""The checkpoint-parity fixtures: weights and inputs regenerated from seeds (fixtures/parity/README.md
for the SALAD one, README_dinov3_boq.md for the DINOv3 and BoQ ones, README_zoo.md for MegaLoc,
CosPlace, EigenPlaces and MixVPR).

The fixtures' outputs were computed by the published code (SALAD, DINOv3, BoQ); a model that loads
the same weights in the official state-dict layout must reproduce them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from models.seeded_weights import synthesize_state_dict, synthesize_value  # noqa: F401  (re-exported to the tests)

FIXTURE_DIR = Path(__file__).parent / "fixtures" / "parity"
TOLERANCE = 1e-5


def load_config(name: str = "vits14_default") -> dict:
    return json.loads((FIXTURE_DIR / f"{name}.json").read_text())


def load_shapes(name: str = "vits14_default") -> dict[str, list[int]]:
    return json.loads((FIXTURE_DIR / f"{name}.shapes.json").read_text())


def load_expected(name: str = "vits14_default") -> dict[str, np.ndarray]:
    with np.load(FIXTURE_DIR / f"{name}.npz") as data:
        return dict(data)


def released_state_dict(name: str) -> dict[str, torch.Tensor]:
    """A released file's content for fixture ``name``, in its authors' layout: the synthesized
    weights, and the buffers the fixture leaves at their initial values (``num_batches_tracked``)."""
    config = load_config(name)
    state_dict = synthesize_state_dict(load_shapes(name), config["weight_seed"])
    for key, buffer in config.get("checkpoint_buffers_not_synthesized", {}).items():
        dtype = getattr(torch, buffer["dtype"].removeprefix("torch."))
        state_dict[key] = torch.full(buffer["shape"], buffer["value"], dtype=dtype)
    for key, value in config.get("not_synthesized", {}).items():  # README_zoo.md: BatchNorm counters, int64 scalars
        state_dict[key] = torch.tensor(value, dtype=torch.int64)
    return state_dict


def build_parity_model(name: str = "vits14_default") -> torch.nn.Module:
    """The fixture's model, in eval mode, with the fixture's weights loaded strictly."""
    from models import build_vpr_net

    config = load_config(name)
    agg = config["agg"]
    model = build_vpr_net(
        config["backbone"],
        {"num_trainable_blocks": 4, "return_token": True, "norm_layer": True},
        "SALAD",
        {"num_clusters": agg["clusters"], "cluster_dim": agg["cluster_dim"], "token_dim": agg["token_dim"]},
    )
    shapes = load_shapes(name)
    if len(shapes) != config["n_keys"]:
        raise ValueError(f"{name}: {len(shapes)} keys in the shapes file, the configuration says {config['n_keys']}")
    model.load_state_dict(synthesize_state_dict(shapes, config["weight_seed"]), strict=True)
    return model.eval()


def synthesize_input(seed: int, shape: list[int]) -> torch.Tensor:
    """The normalised image batch ``[N, 3, H, W]`` of one fixture input."""
    return torch.from_numpy(np.random.default_rng(seed).standard_normal(tuple(shape)).astype(np.float32))
