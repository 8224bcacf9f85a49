"""End-to-end evaluation throughput: JPEG files -> DataLoader -> model -> descriptors.

Writes ``--num_images`` photo-like 640 x 480 JPEGs into a temporary folder (once, shared by every
variant; see :func:`bench.data_eval_pipeline.write_photo_like_jpegs`) and, per variant, measures

* **end-to-end** images/s: a ``DataLoader`` over the files (``--num_workers`` persistent workers,
  pinned memory on CUDA) decoding, resizing and normalising them
  (:func:`dataloaders.transforms.eval_transform`), the model, and the descriptors copied back to
  the CPU batch by batch as :func:`utils.evaluation.inference.compute_descriptors` does. The first pass over
  the files is a warm-up (workers start, kernels are chosen); the median of ``--iters`` passes counts.
* **model-only** images/s: the same model on one pre-made batch of random images already on the
  device (:func:`bench.inference_speed.time_forward`).

Their ratio says how much of the model's speed the input pipeline lets through (target on an H100:
>= 80 % for ours). Variants (weights drawn once, shared; see :func:`bench.inference_speed.random_state_dict`):

* ``baseline``: the published settings: float16 autocast on CUDA (float32 on CPU), attention written
  out as ``softmax(q k^T * scale) v``, the ``repeat`` SALAD aggregation, PIL decoding at full size.
* ``ours``: bfloat16 autocast, ``scaled_dot_product_attention``, the one-``bmm`` aggregation, and
  JPEG draft mode (libjpeg decodes at 1/2, 1/4 or 1/8 scale when the target allows; from 640 x 480
  only targets within 320 x 240 gain).
* ``ours-gpudec`` (``--gpu_decode``, CUDA only): ours, but the workers only read the file bytes and
  the main process decodes the batch on the GPU (``torchvision.io.decode_jpeg(device="cuda")``),
  then resizes (bilinear, antialiased) and normalises there: ``eval.py --decode_on_device``
  (``dataloaders.device_decode``).

    python -m bench.eval_throughput                                  # CPU: ViT-S/14, 224 px, 32 images
    python -m bench.eval_throughput --device cuda                    # ViT-B/14, 322 px, 1024 images
    python -m bench.eval_throughput --device cuda --gpu_decode --image_size 224 224

Defaults depend on ``--device``: CPU ``dinov2_vits14``, 224 x 224, batch 8, 1 worker, 32 images,
2 passes; CUDA ``dinov2_vitb14``, 322 x 322, batch 128, 8 workers, 1024 images, 3 passes.

On a CPU shared with other jobs, ``--threads 1`` gives steadier figures (see ``bench/inference_speed.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/eval_throughput.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from bench.common import add_device_flag, check_device, device_name, require_at_least, start
from bench.data_eval_pipeline import write_photo_like_jpegs
from bench.inference_speed import (
    Variant,
    autocast,
    build_model,
    explicit_softmax_attention,
    seeded_weights_and_images,
    synchronize,
    time_forward,
)
from dataloaders.device_decode import DeviceDecoder, EncodedImages, collate_encoded
from dataloaders.eval_sets import EvalSet
from dataloaders.transforms import EvalPreprocessing, decode_size, eval_transform
from models.backbones.dinov2 import DINOV2_ARCHS, PATCH_SIZE

log = logging.getLogger(__name__)

#: ``(backbone, (height, width), batch, workers, images, passes)`` defaults per device type.
DEVICE_DEFAULTS: dict[str, tuple[str, tuple[int, int], int, int, int, int]] = {
    "cpu": ("dinov2_vits14", (224, 224), 8, 1, 32, 2),
    "cuda": ("dinov2_vitb14", (322, 322), 128, 8, 1024, 3),
}
TARGET_END_TO_END_FRACTION = 0.8


@dataclass(frozen=True)
class PipelineVariant:
    """A model variant and how its images are decoded.

    Attributes:
        model: precision, attention kernel and aggregation (:class:`bench.inference_speed.Variant`).
        draft: decode JPEGs with PIL's draft mode (reduced scale where the target size allows).
        gpu_decode: read bytes in the workers and decode on the GPU in the main process.
    """

    model: Variant
    draft: bool
    gpu_decode: bool = False

    @property
    def label(self) -> str:
        return self.model.label

    def describe(self) -> str:
        decoding = "GPU decode_jpeg" if self.gpu_decode else ("PIL draft mode" if self.draft else "PIL full-size decode")
        return f"{self.model.describe()}, {decoding}"


@dataclass(frozen=True)
class Throughput:
    """Images/s of one variant end to end and model-only, and its end-to-end descriptors ``[N, D]``."""

    variant: PipelineVariant
    end_to_end: float
    model_only: float
    descriptors: torch.Tensor


def pipeline_variants(device: torch.device, gpu_decode: bool) -> list[PipelineVariant]:
    """Baseline first (the ratios divide by it), then ours, then ours with GPU decoding if asked."""
    baseline_precision = "fp16" if device.type == "cuda" else "fp32"
    variants = [
        PipelineVariant(Variant("baseline", baseline_precision, explicit_attention=True, aggregation="repeat"), draft=False),
        PipelineVariant(Variant("ours", "bf16"), draft=True),
    ]
    if gpu_decode:
        variants.append(PipelineVariant(Variant("ours-gpudec", "bf16"), draft=False, gpu_decode=True))
    return variants


def make_loader(
    eval_set: EvalSet, variant: PipelineVariant, image_size: tuple[int, int], batch: int, num_workers: int, device: torch.device
) -> DataLoader:
    """The ``DataLoader`` of ``variant``: PIL decode + transform in workers, or bytes only for GPU decoding."""
    if variant.gpu_decode:
        dataset: Dataset = EncodedImages(eval_set.image_paths())
        collate: Callable | None = collate_encoded
    else:
        dataset = eval_set.images(eval_transform(image_size), decode_size(image_size) if variant.draft else None)
        collate = None
    return DataLoader(
        dataset,
        batch_size=batch,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=num_workers > 0,
        collate_fn=collate,
    )


def describe_all(
    runner: nn.Module, loader: DataLoader, variant: PipelineVariant, image_size: tuple[int, int], device: torch.device, description: str
) -> torch.Tensor:
    """One pass over ``loader``: descriptors ``[N, D]`` (float32, CPU), copied back batch by batch."""
    parts: list[torch.Tensor] = []
    order: list[torch.Tensor] = []
    decoder = DeviceDecoder(loader.dataset.paths, EvalPreprocessing(image_size), device) if variant.gpu_decode else None
    for batch, indices in tqdm(loader, desc=description, unit="batch", leave=False):
        if decoder is not None:
            images = decoder(batch, indices)
        else:
            images = batch.to(device, non_blocking=True)
        with autocast(device, variant.model.precision):
            parts.append(runner(images).float().cpu())
        order.append(indices)
    descriptors = torch.cat(parts)
    return descriptors[torch.argsort(torch.cat(order))]


def time_end_to_end(
    model: nn.Module, loader: DataLoader, variant: PipelineVariant, image_size: tuple[int, int], device: torch.device, iters: int
) -> tuple[float, torch.Tensor]:
    """Median seconds per pass over ``loader`` after one warm-up pass, and the descriptors ``[N, D]``."""
    attention = explicit_softmax_attention(model) if variant.model.explicit_attention else contextlib.nullcontext()
    runner = torch.compile(model) if variant.model.compile else model
    times: list[float] = []
    with attention, torch.inference_mode():
        descriptors = describe_all(runner, loader, variant, image_size, device, f"{variant.label}: warm-up pass")
        for i in range(iters):
            synchronize(device)
            start = time.perf_counter()
            describe_all(runner, loader, variant, image_size, device, f"{variant.label}: pass {i + 1}/{iters}")
            synchronize(device)
            times.append(time.perf_counter() - start)
    return statistics.median(times), descriptors


def measure(
    variant: PipelineVariant,
    args: argparse.Namespace,
    state_dict: dict[str, torch.Tensor],
    eval_set: EvalSet,
    images: torch.Tensor,
    device: torch.device,
) -> Throughput:
    """End-to-end and model-only images/s of one variant (model built once, freed afterwards)."""
    model = build_model(args.backbone, variant.model.aggregation, state_dict).to(device)
    loader = make_loader(eval_set, variant, args.image_size, args.batch, args.num_workers, device)
    try:
        seconds_per_batch, _, _ = time_forward(model, images, variant.model, warmup=1, iters=args.iters, grad_mode="inference_mode")
        seconds_per_pass, descriptors = time_end_to_end(model, loader, variant, args.image_size, device, args.iters)
    finally:
        del loader, model  # stops the persistent workers
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return Throughput(variant, eval_set.num_db / seconds_per_pass, images.shape[0] / seconds_per_batch, descriptors)


def format_report(results: list[Throughput], device_name: str, args: argparse.Namespace) -> str:
    """The table of images/s per variant, then ours/baseline ratios and the agreement of descriptors."""
    height, width = args.image_size
    lines = [
        f"{args.backbone} + SALAD, {args.num_images} JPEGs 640x480 -> {height}x{width}, batch {args.batch}, "
        f"{args.num_workers} workers, on {device_name}",
        f"  {'variant':<12} {'end-to-end':>11} {'model-only':>11} {'e2e/model':>10}  settings",
    ]
    for r in results:
        lines.append(
            f"  {r.variant.label:<12} {r.end_to_end:11.2f} {r.model_only:11.2f} {r.end_to_end / r.model_only:9.0%}  {r.variant.describe()}"
        )
    baseline = results[0]
    for r in results[1:]:
        cosines = F.cosine_similarity(r.descriptors.double(), baseline.descriptors.double(), dim=1)
        lines.append(
            f"  {r.variant.label} vs {baseline.variant.label}: {r.end_to_end / baseline.end_to_end:.2f}x end-to-end, "
            f"{r.model_only / baseline.model_only:.2f}x model-only images/s; descriptor cosine min {cosines.min().item():.4f}"
        )
    lines.append(f"  images/s; target on an H100: ours end-to-end >= {TARGET_END_TO_END_FRACTION:.0%} of model-only")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.eval_throughput", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_device_flag(parser)
    parser.add_argument("--backbone", choices=list(DINOV2_ARCHS), help="default: dinov2_vitb14 on CUDA, dinov2_vits14 on CPU")
    parser.add_argument("--image_size", type=int, nargs=2, metavar=("H", "W"), help="default: 322 322 on CUDA, 224 224 on CPU")
    parser.add_argument("--batch", type=int, help="images per batch (default: 128 on CUDA, 8 on CPU)")
    parser.add_argument("--num_workers", type=int, help="DataLoader workers (default: 8 on CUDA, 1 on CPU)")
    parser.add_argument("--num_images", type=int, help="JPEGs to generate (default: 1024 on CUDA, 32 on CPU)")
    parser.add_argument("--iters", type=int, help="timed passes / batches per variant (default: 3 on CUDA, 2 on CPU)")
    parser.add_argument("--gpu_decode", action="store_true", help="also run ours with JPEG decoding on the GPU (CUDA only)")
    parser.add_argument("--threads", type=int, help="torch CPU threads of the main process (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights, images and files")
    args = parser.parse_args(argv)

    check_device(parser, args)
    if args.gpu_decode and args.device != "cuda":
        parser.error("--gpu_decode needs --device cuda")
    backbone, size, batch, workers, num_images, iters = DEVICE_DEFAULTS[args.device]
    args.backbone = args.backbone or backbone
    args.image_size = tuple(args.image_size) if args.image_size else size
    args.batch = args.batch if args.batch is not None else batch
    args.num_workers = args.num_workers if args.num_workers is not None else min(workers, os.cpu_count() or 1)
    args.num_images = args.num_images if args.num_images is not None else num_images
    args.iters = args.iters if args.iters is not None else iters
    if any(side <= 0 or side % PATCH_SIZE for side in args.image_size):
        parser.error(f"--image_size {args.image_size[0]} {args.image_size[1]}: expected positive multiples of {PATCH_SIZE}")
    require_at_least(parser, args, 1, ("batch", "num_images", "iters", "threads"))
    require_at_least(parser, args, 0, ("num_workers",))
    return args


def main(argv: list[str] | None = None) -> None:
    args, device = start(parse_args, argv)

    state_dict, images = seeded_weights_and_images(args.backbone, args.batch, args.image_size, args.seed, device)

    with tempfile.TemporaryDirectory(prefix="eval_throughput_") as folder:
        names = write_photo_like_jpegs(Path(folder), args.num_images, seed=args.seed)
        eval_set = EvalSet("synthetic_jpegs", Path(folder), db_paths=names, query_paths=[])
        results = [measure(v, args, state_dict, eval_set, images, device) for v in pipeline_variants(device, args.gpu_decode)]

    print(format_report(results, device_name(device), args))


if __name__ == "__main__":
    main()
