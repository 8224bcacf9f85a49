"""Inference throughput of DINOv2 SALAD: reduced precision, attention kernel and aggregation.

Model-only images/s of a ViT/14 + SALAD net (random weights drawn with the parity fixture's
synthesis rule, see ``models/seeded_weights.py``: its LayerScale of about 0.5 makes every block count,
where timm's initial 1e-5 would leave the ViT close to the identity and flatter reduced precision)
on one fixed batch of random normalised images already on the device. Every variant runs in this
one process on the same weights and images: the warm-up batches are excluded, the median time per
batch is reported, and each variant's descriptors are compared with float32 ones (cosine per image).

Two suites:

* ``precision`` (the default on CPU): float32 against bfloat16 autocast, both with PyTorch's
  ``scaled_dot_product_attention`` and the one-``bmm`` SALAD aggregation. The CPU's bf16 support
  (AVX-512 BF16, AMX) is read from /proc/cpuinfo and printed.
* ``published`` (the default on CUDA): the published inference settings (float16 autocast, attention
  written out as ``softmax(q k^T * scale) v``, the ``repeat`` aggregation of
  :class:`bench.salad_aggregation.RepeatSALAD`) against ours (bfloat16 autocast, SDPA, ``bmm``,
  optionally channels_last), with the peak GPU memory of each.

``--compile`` adds our last variant again under ``torch.compile`` (``<label>-comp``) and prints
its ratio to the eager one.

    python -m bench.inference_speed                       # CPU: ViT-B/14 at 322 px, batch 2
    python -m bench.inference_speed --image_size 224      # quicker
    python -m bench.inference_speed --device cuda --batch 256 --compile

On a CPU shared with other jobs, ``--threads 1`` gives steadier figures: with more threads than
free cores, OpenMP threads wait for one another and the wall time measures the contention.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Literal

import timm.layers
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from bench.common import add_device_flag, check_device, device_name, require_at_least, require_warmup_for_compile, start
from bench.salad_aggregation import RepeatSALAD
from models import VPRNet, build_network
from models.backbones.dinov2 import DINOV2_ARCHS, PATCH_SIZE
from models.released import paper_architecture
from models.seeded_weights import synthesize_state_dict
from utils.evaluation.inference import CPU_BF16_FLAGS, cpu_bf16_support

log = logging.getLogger(__name__)

Precision = Literal["fp32", "fp16", "bf16"]
Aggregation = Literal["bmm", "repeat"]
GradMode = Literal["inference_mode", "no_grad"]

AUTOCAST_DTYPES: dict[str, torch.dtype] = {"fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class Variant:
    """One way of running the same network.

    Attributes:
        label: the name printed in the table.
        precision: ``fp32`` (no autocast) or the autocast dtype.
        explicit_attention: attention as ``softmax(q k^T * scale) v`` instead of SDPA.
        aggregation: SALAD's cluster sums by one ``bmm`` or by the published ``repeat`` tensors.
        channels_last: weights and images in channels_last memory format.
        compile: run ``torch.compile(model)``.
    """

    label: str
    precision: Precision
    explicit_attention: bool = False
    aggregation: Aggregation = "bmm"
    channels_last: bool = False
    compile: bool = False

    def describe(self) -> str:
        parts = [
            self.precision,
            "explicit softmax attention" if self.explicit_attention else "SDPA",
            self.aggregation,
        ]
        if self.channels_last:
            parts.append("channels_last")
        if self.compile:
            parts.append("compiled")
        return ", ".join(parts)


@dataclass(frozen=True)
class Measurement:
    """What one variant did: median seconds per batch, peak memory and agreement with float32.

    ``peak_memory_mib`` is the peak of ``torch.cuda.max_memory_allocated`` during the timed batches
    (weights and images included), ``None`` on CPU. ``cosines`` is ``[B]``, per image, against the
    float32 descriptors; ``None`` when the variant did not run (``error`` says why).
    """

    variant: Variant
    seconds_per_batch: float | None
    peak_memory_mib: float | None
    cosines: torch.Tensor | None
    error: str | None = None


@contextlib.contextmanager
def explicit_softmax_attention(model: nn.Module) -> Iterator[int]:
    """Within the block, every timm ``Attention`` of ``model`` computes ``softmax(q k^T * scale) v``
    with explicit matmuls (as the published DINOv2 code does without xFormers) instead of
    ``scaled_dot_product_attention``. Yields the number of attention modules switched.
    """
    modules = [module for module in model.modules() if isinstance(module, timm.layers.Attention)]
    if not modules:
        raise ValueError(f"{type(model).__name__} has no timm Attention module to switch to explicit attention")
    previous = [module.fused_attn for module in modules]
    for module in modules:
        module.fused_attn = False
    try:
        yield len(modules)
    finally:
        for module, fused in zip(modules, previous):
            module.fused_attn = fused


def random_state_dict(backbone: str, seed: int) -> dict[str, torch.Tensor]:
    """Weights of ``backbone`` + default SALAD, drawn with the parity fixture's synthesis rule."""
    template = build_network(paper_architecture(backbone))
    shapes = {key: list(value.shape) for key, value in template.state_dict().items()}
    return synthesize_state_dict(shapes, seed)


def seeded_weights_and_images(
    backbone: str, batch: int, image_size: tuple[int, int], seed: int, device: torch.device
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The weights of :func:`random_state_dict` and a batch ``[batch, 3, H, W]`` of standard-normal
    images on ``device``, both drawn from ``seed``."""
    log.info("drawing %s + SALAD weights (seed %d)", backbone, seed)
    state_dict = random_state_dict(backbone, seed)
    generator = torch.Generator().manual_seed(seed)
    return state_dict, torch.randn(batch, 3, *image_size, generator=generator).to(device)


def build_model(backbone: str, aggregation: Aggregation, state_dict: dict[str, torch.Tensor]) -> VPRNet:
    """The net in eval mode with ``state_dict`` loaded, aggregating by ``bmm`` or ``repeat``."""
    model = build_network(paper_architecture(backbone))
    if aggregation == "repeat":
        model.aggregator = RepeatSALAD(**model.architecture.agg_config)
    model.load_state_dict(state_dict, strict=True)
    return model.eval()


def autocast(device: torch.device, precision: Precision) -> contextlib.AbstractContextManager:
    """Autocast to ``precision`` on ``device`` (``fp32``: none)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=AUTOCAST_DTYPES[precision])


def grad_context(grad_mode: GradMode) -> contextlib.AbstractContextManager:
    """``torch.inference_mode()`` or ``torch.no_grad()``."""
    return torch.inference_mode() if grad_mode == "inference_mode" else torch.no_grad()


def synchronize(device: torch.device) -> None:
    """Wait for the queued CUDA work on ``device`` (nothing to wait for on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_forward(
    model: nn.Module,
    images: torch.Tensor,
    variant: Variant,
    warmup: int,
    iters: int,
    grad_mode: GradMode,
) -> tuple[float, float | None, torch.Tensor]:
    """Median seconds per forward of ``images [B, 3, H, W]`` over ``iters`` timed batches.

    Returns:
        seconds per batch, peak CUDA memory in MiB during the timed batches (``None`` on CPU) and
        the descriptors ``[B, D]`` as float32 on the CPU.
    """
    device = images.device
    attention = explicit_softmax_attention(model) if variant.explicit_attention else contextlib.nullcontext()
    runner = torch.compile(model) if variant.compile else model
    times: list[float] = []
    with attention, grad_context(grad_mode), autocast(device, variant.precision):
        for _ in tqdm(range(warmup), desc=f"{variant.label}: warm-up", unit="batch", leave=False):
            runner(images)
        synchronize(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        for _ in tqdm(range(iters), desc=f"{variant.label}: timing", unit="batch", leave=False):
            start = time.perf_counter()
            descriptors = runner(images)
            synchronize(device)
            times.append(time.perf_counter() - start)
    peak_mib = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return statistics.median(times), peak_mib, descriptors.float().cpu()


def measure_variant(
    variant: Variant,
    backbone: str,
    state_dict: dict[str, torch.Tensor],
    images: torch.Tensor,
    warmup: int,
    iters: int,
    grad_mode: GradMode,
) -> tuple[Measurement, torch.Tensor | None]:
    """Build, time and free one variant. Returns its measurement (cosines not yet filled in) and
    its descriptors ``[B, D]`` (``None`` if it ran out of GPU memory)."""
    device = images.device
    model = build_model(backbone, variant.aggregation, state_dict).to(device)
    if variant.channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    try:
        seconds, peak_mib, descriptors = time_forward(model, images, variant, warmup, iters, grad_mode)
    except torch.cuda.OutOfMemoryError:
        log.warning("%s ran out of GPU memory at batch %d; try a smaller --batch", variant.label, images.shape[0])
        return Measurement(variant, None, None, None, error="out of GPU memory"), None
    finally:
        del model
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return Measurement(variant, seconds, peak_mib, None), descriptors


def float32_descriptors(model: nn.Module, images: torch.Tensor, grad_mode: GradMode) -> torch.Tensor:
    """Descriptors ``[B, D]`` of ``images [B, 3, H, W]`` in float32 (no autocast), on the CPU."""
    with grad_context(grad_mode):
        return model(images).float().cpu()


def with_cosines(measurement: Measurement, descriptors: torch.Tensor | None, reference: torch.Tensor) -> Measurement:
    """``measurement`` with the per-image cosines of ``descriptors [B, D]`` against ``reference [B, D]``."""
    if descriptors is None:
        return measurement
    cosines = F.cosine_similarity(descriptors.double(), reference.double(), dim=1)
    return Measurement(measurement.variant, measurement.seconds_per_batch, measurement.peak_memory_mib, cosines, measurement.error)


def suite_variants(suite: str, channels_last: bool, compile_model: bool) -> list[Variant]:
    """The variants of ``suite``; the first is the baseline the ratios divide by.

    ``channels_last`` applies to our variants, never to the published one; ``compile_model`` adds a
    ``torch.compile``d copy of our last variant (see :func:`with_compiled_twin`).
    """
    if suite == "precision":
        variants = [
            Variant("fp32", "fp32", channels_last=channels_last),
            Variant("bf16", "bf16", channels_last=channels_last),
        ]
    elif suite == "published":
        variants = [
            Variant("published", "fp16", explicit_attention=True, aggregation="repeat"),
            Variant("ours", "bf16", channels_last=channels_last),
        ]
    else:
        raise ValueError(f"unknown --suite {suite!r}; expected 'precision' or 'published'")
    return with_compiled_twin(variants, compile_model)


def with_compiled_twin(variants: list[Variant], compile_model: bool) -> list[Variant]:
    """``variants``, then (``compile_model``) a ``torch.compile``d copy of the last one, labelled
    ``<label>-comp``, so that one run measures compiled against eager."""
    if not compile_model:
        return variants
    last = variants[-1]
    return [*variants, replace(last, label=f"{last.label}-comp", compile=True)]


def compiled_vs_eager(variants: list[Variant], seconds: list[float | None]) -> list[str]:
    """One line per compiled variant: its images/s against its eager twin's (the same variant
    without ``compile``), from ``seconds`` per batch or step, aligned with ``variants``."""
    timing = dict(zip(variants, seconds))
    lines = []
    for variant, compiled_seconds in timing.items():
        if not variant.compile:
            continue
        twin = next((v for v in variants if not v.compile and replace(v, label="") == replace(variant, label="", compile=False)), None)
        eager_seconds = timing.get(twin) if twin is not None else None
        if compiled_seconds and eager_seconds:
            lines.append(f"  {variant.label} vs {twin.label}: {eager_seconds / compiled_seconds:.2f}x images/s (torch.compile)")
    return lines


def format_report(
    measurements: list[Measurement],
    device_name: str,
    backbone: str,
    batch: int,
    image_size: int,
    cpu_flags: dict[str, bool] | None,
) -> str:
    """The table of images/s, memory and cosines, then each variant's ratios to the first."""
    lines = [f"{backbone} + SALAD 64x128+256, batch {batch} at {image_size}x{image_size}, on {device_name}"]
    if cpu_flags is not None:
        lines.append("  CPU bf16 support: " + ", ".join(f"{CPU_BF16_FLAGS[f]} {'yes' if on else 'no'}" for f, on in cpu_flags.items()))
    header = f"  {'variant':<10} {'ms/batch':>10} {'images/s':>10} {'peak MiB':>10} {'cos min':>9} {'cos mean':>9}  settings"
    lines.append(header)
    for m in measurements:
        if m.seconds_per_batch is None:
            lines.append(f"  {m.variant.label:<10} {m.error:>10}  settings: {m.variant.describe()}")
            continue
        peak = f"{m.peak_memory_mib:10.0f}" if m.peak_memory_mib is not None else f"{'n/a':>10}"
        cosines = m.cosines if m.cosines is not None else torch.full((1,), float("nan"))
        lines.append(
            f"  {m.variant.label:<10} {m.seconds_per_batch * 1000:10.1f} {batch / m.seconds_per_batch:10.2f} {peak}"
            f" {cosines.min().item():9.7f} {cosines.mean().item():9.7f}  {m.variant.describe()}"
        )
    baseline = measurements[0]
    for m in measurements[1:]:
        if m.seconds_per_batch is None or baseline.seconds_per_batch is None:
            continue
        ratio = f"  {m.variant.label} vs {baseline.variant.label}: {baseline.seconds_per_batch / m.seconds_per_batch:.2f}x images/s"
        if m.peak_memory_mib and baseline.peak_memory_mib:
            ratio += f", {baseline.peak_memory_mib / m.peak_memory_mib:.2f}x lower peak memory"
        lines.append(ratio)
    lines += compiled_vs_eager([m.variant for m in measurements], [m.seconds_per_batch for m in measurements])
    lines.append("  cos: cosine similarity per image with the float32 (SDPA, bmm) descriptors")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_device_flag(parser)
    parser.add_argument("--suite", choices=["precision", "published"], help="default: precision on CPU, published on CUDA")
    parser.add_argument("--backbone", choices=list(DINOV2_ARCHS), default="dinov2_vitb14")
    parser.add_argument("--image_size", type=int, default=322, help=f"square input side, a multiple of {PATCH_SIZE} (default 322)")
    parser.add_argument("--batch", type=int, help="images per batch (default 2 on CPU, 256 on CUDA)")
    parser.add_argument("--warmup", type=int, help="untimed batches per variant (default 1 on CPU, 3 on CUDA)")
    parser.add_argument("--iters", type=int, help="timed batches per variant (default 2 on CPU, 10 on CUDA)")
    parser.add_argument("--channels_last", action="store_true", help="our variants in channels_last memory format")
    parser.add_argument("--compile", action="store_true", help="also run our last variant under torch.compile (compilation is in the warm-up)")
    parser.add_argument("--grad_mode", choices=["inference_mode", "no_grad"], default="inference_mode")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and the images")
    args = parser.parse_args(argv)

    check_device(parser, args)
    on_cuda = args.device == "cuda"
    args.suite = args.suite or ("published" if on_cuda else "precision")
    args.batch = args.batch if args.batch is not None else (256 if on_cuda else 2)
    args.warmup = args.warmup if args.warmup is not None else (3 if on_cuda else 1)
    args.iters = args.iters if args.iters is not None else (10 if on_cuda else 2)
    if args.image_size <= 0 or args.image_size % PATCH_SIZE:
        parser.error(f"--image_size {args.image_size}: expected a positive multiple of {PATCH_SIZE} (e.g. 224, 322)")
    require_at_least(parser, args, 1, ("batch", "iters", "threads"))
    require_at_least(parser, args, 0, ("warmup",))
    require_warmup_for_compile(parser, args)
    return args


def main(argv: list[str] | None = None) -> None:
    args, device = start(parse_args, argv)

    side = args.image_size
    state_dict, images = seeded_weights_and_images(args.backbone, args.batch, (side, side), args.seed, device)

    variants = suite_variants(args.suite, args.channels_last, args.compile)
    results = [measure_variant(v, args.backbone, state_dict, images, args.warmup, args.iters, args.grad_mode) for v in variants]

    reference = next((d for m, d in results if m.variant == Variant("fp32", "fp32")), None)
    if reference is None:  # no plain float32 variant in the suite: one float32 forward for the cosines
        reference = float32_descriptors(build_model(args.backbone, "bmm", state_dict).to(device), images, args.grad_mode)
    measurements = [with_cosines(m, d, reference) for m, d in results]

    cpu_flags = cpu_bf16_support() if device.type == "cpu" else None
    print(format_report(measurements, device_name(device), args.backbone, args.batch, args.image_size, cpu_flags))


if __name__ == "__main__":
    main()
