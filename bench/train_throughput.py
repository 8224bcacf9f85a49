"""Training throughput and peak memory of DINOv2 SALAD at the paper's batch, on synthetic tensors.

One optimizer step is what ``models.vpr_model.VPRModel`` trains with: ``P x K`` images (the paper:
60 places x 4 images at 224 x 224) through the backbone (ViT/14, last 4 blocks trainable) and SALAD
(64 clusters x 128 + 256, dropout 0.3, train mode), the multi-similarity loss with its miner
(``VPRModel.objective``), backward, AdamW and the linear learning-rate schedule
(``VPRModel.configure_optimizers``). Images are random tensors already on the device and the
weights are drawn with :func:`bench.inference_speed.random_state_dict`, so the step is measured
without the input pipeline (see ``bench/data_train_pipeline.py`` for that).

Variants, each in a fresh subprocess so that its peak memory is its own (CUDA:
``max_memory_allocated`` over the timed steps, weights and optimizer state included; CPU: growth of
the peak resident set size from before the model is built):

* ``baseline``: the published settings: float16 autocast with a ``GradScaler`` on CUDA (float32 on
  CPU), attention written out as ``softmax(q k^T * scale) v``, the ``repeat`` SALAD aggregation.
* ``ours``: bfloat16 autocast (no scaler needed), ``scaled_dot_product_attention``, the one-``bmm``
  aggregation; optionally ``--channels_last``.
* ``ours-comp`` (with ``--compile``): ours under ``torch.compile``, with its ratio to ours.

    python -m bench.train_throughput                      # CPU: ViT-S/14, 4 x 4 images at 126 px
    python -m bench.train_throughput --device cuda        # ViT-B/14, 60 x 4 at 224 px
    python -m bench.train_throughput --device cuda --compile

Targets on an H100: ours >= 1.5x the baseline's images/s with no more peak memory.
Defaults depend on ``--device``: CPU ``dinov2_vits14``, 4 x 4 at 126 px (9 x 9 patches: SALAD needs
more than its 64 clusters), 1 warm-up + 2 timed steps; CUDA ``dinov2_vitb14``, 60 x 4 at 224 px, 3 warm-up + 10 timed steps.

On a CPU shared with other jobs, ``--threads 1`` gives steadier figures (see ``bench/inference_speed.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/train_throughput.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
from tqdm import tqdm

from bench.common import add_device_flag, check_device, device_name, require_at_least, require_warmup_for_compile, start
from bench.inference_speed import (
    Variant,
    autocast,
    compiled_vs_eager,
    explicit_softmax_attention,
    random_state_dict,
    synchronize,
    with_compiled_twin,
)
from bench.salad_aggregation import RepeatSALAD
from models.backbones.dinov2 import DINOV2_ARCHS, PATCH_SIZE
from models.released import paper_architecture
from models.vpr_model import VPRModel

log = logging.getLogger(__name__)

#: ``(backbone, places, images per place, side, warm-up steps, timed steps)`` per device type.
DEVICE_DEFAULTS: dict[str, tuple[str, int, int, int, int, int]] = {
    "cpu": ("dinov2_vits14", 4, 4, 126, 1, 2),
    "cuda": ("dinov2_vitb14", 60, 4, 224, 3, 10),
}
TARGET_SPEEDUP = 1.5


@dataclass(frozen=True)
class StepResult:
    """What one variant's training steps did, as its subprocess reports it."""

    seconds_per_step: float
    peak_memory_mib: float
    first_loss: float  # loss of the first step (warm-up or timed)
    skipped_steps: int  # steps the GradScaler skipped for non-finite gradients


def train_variants(device: torch.device, channels_last: bool, compile_model: bool) -> list[Variant]:
    """Baseline first (the ratios divide by it), then ours, then (``compile_model``) ours compiled."""
    variants = [
        Variant("baseline", "fp16" if device.type == "cuda" else "fp32", explicit_attention=True, aggregation="repeat"),
        Variant("ours", "bf16", channels_last=channels_last),
    ]
    return with_compiled_twin(variants, compile_model)


def build_training_model(backbone: str, variant: Variant, seed: int) -> VPRModel:
    """A ``VPRModel`` with random weights, SALAD aggregating by ``bmm`` or ``repeat``, in train mode,
    compiled as ``main.py --model.compile_network true`` compiles it when ``variant.compile``."""
    paper = paper_architecture(backbone)
    # Its weights are drawn from a seed below: the "random weights" warning does not apply here.
    logging.getLogger("models.vpr_model").setLevel(logging.ERROR)
    model = VPRModel(
        backbone_arch=backbone,
        backbone_config={**paper.backbone_config, "pretrained": False},
        agg_arch=paper.agg_arch,
        agg_config=dict(paper.agg_config),
        compile_network=variant.compile,
    )
    if variant.aggregation == "repeat":
        model.aggregator = RepeatSALAD(**model.hparams.agg_config)
    model.load_state_dict(random_state_dict(backbone, seed), strict=True)
    return model.train()


def peak_memory_mib(device: torch.device, rss_before_kib: int) -> float:
    """CUDA: ``max_memory_allocated``; CPU: growth of the peak resident set size since ``rss_before_kib``."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before_kib) / 1024  # ru_maxrss is KiB


def run_steps(args: argparse.Namespace, variant: Variant) -> StepResult:
    """Build one variant, run ``args.warmup`` untimed and ``args.iters`` timed optimizer steps."""
    device = torch.device(args.device)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    torch.manual_seed(args.seed)  # dropout masks
    model = build_training_model(args.backbone, variant, args.seed).to(device)
    generator = torch.Generator().manual_seed(args.seed)
    images = torch.randn(args.places * args.per_place, 3, args.image_size, args.image_size, generator=generator).to(device)
    labels = torch.arange(args.places).repeat_interleave(args.per_place).to(device)  # [P*K]
    if variant.channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    schedule = model.configure_optimizers()
    optimizer, scheduler = schedule["optimizer"], schedule["lr_scheduler"]["scheduler"]
    scaler = torch.amp.GradScaler(device.type, enabled=variant.precision == "fp16")
    attention = explicit_softmax_attention(model) if variant.explicit_attention else contextlib.nullcontext()

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, variant.precision):
            loss = model.objective(model(images), labels).loss
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        return loss.item()

    times: list[float] = []
    losses: list[float] = []
    skipped = 0
    with attention:
        for _ in tqdm(range(args.warmup), desc=f"{variant.label}: warm-up", unit="step", leave=False):
            losses.append(step())
        synchronize(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        for _ in tqdm(range(args.iters), desc=f"{variant.label}: timing", unit="step", leave=False):
            scale = scaler.get_scale() if scaler.is_enabled() else 1.0
            start = time.perf_counter()
            losses.append(step())  # .item() waits for the step's work
            times.append(time.perf_counter() - start)
            skipped += int(scaler.is_enabled() and scaler.get_scale() < scale)
    synchronize(device)
    return StepResult(statistics.median(times), peak_memory_mib(device, rss_before), losses[0], skipped)


def run_in_subprocess(args: argparse.Namespace, variant_index: int) -> StepResult:
    """:func:`run_steps` of one variant in a fresh Python process (its own peak memory)."""
    command = [sys.executable, "-m", "bench.train_throughput", "--worker", str(variant_index), *forwarded_flags(args)]
    completed = subprocess.run(command, capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
    if completed.returncode != 0:
        raise RuntimeError(f"variant {variant_index} failed:\n{completed.stderr[-4000:]}")
    return StepResult(**json.loads(completed.stdout.strip().splitlines()[-1]))


def forwarded_flags(args: argparse.Namespace) -> list[str]:
    """The flags that make a worker process measure the same configuration."""
    flags = [
        "--device", args.device, "--backbone", args.backbone, "--places", str(args.places),
        "--per_place", str(args.per_place), "--image_size", str(args.image_size), "--warmup", str(args.warmup),
        "--iters", str(args.iters), "--seed", str(args.seed),
    ]
    if args.threads is not None:
        flags += ["--threads", str(args.threads)]
    if args.channels_last:
        flags.append("--channels_last")
    if args.compile:
        flags.append("--compile")
    return flags


def format_report(variants: list[Variant], results: list[StepResult], device_name: str, args: argparse.Namespace) -> str:
    """The table of images/s and peak memory per variant, then ours/baseline ratios."""
    batch = args.places * args.per_place
    memory = "peak MiB (max_memory_allocated)" if args.device == "cuda" else "peak MiB (RSS growth)"
    lines = [
        f"{args.backbone} + SALAD 64x128+256, training step on {args.places} places x {args.per_place} images at "
        f"{args.image_size}x{args.image_size}, last 4 blocks trainable, MS loss + miner, AdamW, on {device_name}",
        f"  {'variant':<10} {'ms/step':>10} {'images/s':>10} {'peak MiB':>10} {'loss':>9} {'skipped':>8}  settings",
    ]
    for variant, r in zip(variants, results):
        lines.append(
            f"  {variant.label:<10} {r.seconds_per_step * 1000:10.1f} {batch / r.seconds_per_step:10.2f} {r.peak_memory_mib:10.0f}"
            f" {r.first_loss:9.4f} {r.skipped_steps:8d}  {variant.describe()}"
        )
    base = results[0]
    for variant, r in zip(variants[1:], results[1:]):
        memory_ratio = r.peak_memory_mib / base.peak_memory_mib if base.peak_memory_mib > 0 else float("nan")
        lines.append(
            f"  {variant.label} vs {variants[0].label}: {base.seconds_per_step / r.seconds_per_step:.2f}x images/s, "
            f"peak memory {memory_ratio:.2f}x of {variants[0].label}"
        )
    lines += compiled_vs_eager(variants, [r.seconds_per_step for r in results])
    lines.append(f"  {memory}; targets on an H100: ours >= {TARGET_SPEEDUP}x baseline images/s, peak memory <= 1.00x")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.train_throughput", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_device_flag(parser)
    parser.add_argument("--backbone", choices=list(DINOV2_ARCHS), help="default: dinov2_vitb14 on CUDA, dinov2_vits14 on CPU")
    parser.add_argument("--places", type=int, help="places per batch, P (default: 60 on CUDA, 4 on CPU)")
    parser.add_argument("--per_place", type=int, help="images per place, K (default: 4)")
    parser.add_argument("--image_size", type=int, help=f"square side, a multiple of {PATCH_SIZE} (default: 224 on CUDA, 126 on CPU)")
    parser.add_argument("--warmup", type=int, help="untimed steps (default: 3 on CUDA, 1 on CPU)")
    parser.add_argument("--iters", type=int, help="timed steps (default: 10 on CUDA, 2 on CPU)")
    parser.add_argument("--channels_last", action="store_true", help="ours in channels_last memory format")
    parser.add_argument("--compile", action="store_true", help="also run ours under torch.compile (compilation is in the warm-up)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and the images")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)  # index of the variant to run in this process
    args = parser.parse_args(argv)

    check_device(parser, args)
    backbone, places, per_place, side, warmup, iters = DEVICE_DEFAULTS[args.device]
    args.backbone = args.backbone or backbone
    for flag, default in (("places", places), ("per_place", per_place), ("image_size", side), ("warmup", warmup), ("iters", iters)):
        if getattr(args, flag) is None:
            setattr(args, flag, default)
    if args.image_size <= 0 or args.image_size % PATCH_SIZE:
        parser.error(f"--image_size {args.image_size}: expected a positive multiple of {PATCH_SIZE} (e.g. 224)")
    if args.places < 2:
        parser.error(f"--places {args.places}: expected at least 2 (the miner needs negatives)")
    if args.per_place < 2:
        parser.error(f"--per_place {args.per_place}: expected at least 2 (the miner needs positives)")
    require_at_least(parser, args, 1, ("iters", "threads"))
    require_at_least(parser, args, 0, ("warmup",))
    require_warmup_for_compile(parser, args)
    return args


def main(argv: list[str] | None = None) -> None:
    args, device = start(parse_args, argv)
    variants = train_variants(device, args.channels_last, args.compile)

    if args.worker is not None:  # one variant in this fresh process; the parent reads the JSON line
        if not 0 <= args.worker < len(variants):
            raise ValueError(f"--worker {args.worker}: expected 0..{len(variants) - 1}")
        print(json.dumps(asdict(run_steps(args, variants[args.worker]))))
        return

    results = []
    for index, variant in enumerate(variants):
        log.info("%s: %s, in a fresh process", variant.label, variant.describe())
        results.append(run_in_subprocess(args, index))
    print(format_report(variants, results, device_name(device), args))


if __name__ == "__main__":
    main()
