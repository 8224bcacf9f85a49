"""What ``eval.py --draft_decode`` changes on a large photo: the time to decode and resize it, and
its descriptor.

Writes a photo-like JPEG of ``--side`` x ``--side`` pixels, turns it into the model's input at
``--image_size`` the published way (full decode, PIL bilinear resize) and with draft decoding
(libjpeg at 1/2, 1/4 or 1/8 scale first), times both (median of ``--repeats``), and compares the
descriptors of a paper-architecture DINOv2 SALAD with weights drawn from a seed (the parity
fixture's rule: every block counts).

    python -m bench.draft_decoding [--side 1331] [--image_size 322] [--backbone dinov2_vitb14]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench.common import device_name, require_at_least, start
from bench.inference_speed import random_state_dict
from dataloaders.image_io import load_image
from dataloaders.transforms import EvalPreprocessing
from models import build_network
from models.backbones.dinov2 import DINOV2_ARCHS
from models.released import paper_architecture


def write_photo(path: Path, side: int, seed: int) -> Path:
    """A ``side`` x ``side`` JPEG: upsampled low-frequency colour noise, like a photo."""
    coarse = np.random.default_rng(seed).integers(0, 256, size=(40, 40, 3), dtype=np.uint8)
    Image.fromarray(coarse).resize((side, side), Image.Resampling.BICUBIC).save(path, format="JPEG", quality=92)
    return path


def model_input(path: Path, preprocessing: EvalPreprocessing, repeats: int) -> tuple[torch.Tensor, float]:
    """The image as ``preprocessing`` makes it, ``[1, 3, H, W]``, and the median seconds it took."""
    transform = preprocessing.transform()
    seconds = []
    for _ in range(repeats):
        begin = time.perf_counter()
        pixels = transform(load_image(path, min_size=preprocessing.decode_size))
        seconds.append(time.perf_counter() - begin)
    return pixels[None], statistics.median(seconds)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.draft_decoding", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--side", type=int, default=1331, help="side of the square photo (default 1331)")
    parser.add_argument("--image_size", type=int, default=322, help="the model's input side (default 322)")
    parser.add_argument("--backbone", choices=list(DINOV2_ARCHS), default="dinov2_vitb14")
    parser.add_argument("--repeats", type=int, default=5, help="decodes timed per setting (default 5)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the photo and the weights")
    args = parser.parse_args(argv)
    args.device = "cpu"
    require_at_least(parser, args, 1, ("side", "image_size", "repeats", "threads"))
    return args


def main(argv: list[str] | None = None) -> None:
    args, device = start(parse_args, argv)
    network = build_network(paper_architecture(args.backbone))
    network.load_state_dict(random_state_dict(args.backbone, args.seed), strict=True)
    network.eval()
    size = (args.image_size, args.image_size)
    with tempfile.TemporaryDirectory(prefix="draft_decoding_") as folder:
        photo = write_photo(Path(folder) / "photo.jpg", args.side, args.seed)
        exact, exact_seconds = model_input(photo, EvalPreprocessing(size), args.repeats)
        draft, draft_seconds = model_input(photo, EvalPreprocessing(size, draft_decode=True), args.repeats)
    with torch.no_grad():
        descriptors = network(torch.cat([exact, draft]))
    cosine = float(torch.nn.functional.cosine_similarity(descriptors[:1], descriptors[1:]))
    print(f"{args.side} x {args.side} JPEG -> {args.image_size} x {args.image_size}, {args.backbone} + SALAD, "
          f"on {device_name(device)}")
    print(f"  decode + resize: full {1000 * exact_seconds:.1f} ms, draft {1000 * draft_seconds:.1f} ms "
          f"({exact_seconds / draft_seconds:.2f}x)")
    print(f"  descriptor: cosine {cosine:.6f}, max abs difference {float((descriptors[0] - descriptors[1]).abs().max()):.2e}")


if __name__ == "__main__":
    main()
