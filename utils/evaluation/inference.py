"""Descriptors of a dataset of images, batch by batch, with a progress bar, and the precisions a
device runs them in (autocast; which CPUs multiply in bf16 natively)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from utils.errors import UserError

Precision = Literal["fp32", "fp16", "bf16"]
_AUTOCAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
CPUINFO = Path("/proc/cpuinfo")
#: /proc/cpuinfo flags that decide how fast bf16 matrix products run on an x86 CPU.
CPU_BF16_FLAGS = {"avx512_bf16": "AVX-512 BF16", "amx_bf16": "AMX-BF16", "amx_tile": "AMX tiles"}


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def cpu_bf16_support(cpuinfo: Path = CPUINFO) -> dict[str, bool] | None:
    """Which of :data:`CPU_BF16_FLAGS` the CPU advertises; ``None`` where ``cpuinfo`` is absent."""
    if not cpuinfo.is_file():
        return None
    flags: set[str] = set()
    for line in cpuinfo.read_text().splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
    return {flag: flag in flags for flag in CPU_BF16_FLAGS}


def autocast_context(device: torch.device, precision: Precision) -> contextlib.AbstractContextManager:
    """Autocast for ``precision`` where the device supports it; float32 otherwise."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = _AUTOCAST_DTYPES[precision]
    if device.type == "cuda" or (device.type == "cpu" and dtype == torch.bfloat16):
        return torch.autocast(device_type=device.type, dtype=dtype)
    raise UserError(f"precision={precision} is not supported on {device.type}; use fp32 or bf16")


def compute_descriptors(
    model: torch.nn.Module,
    images: Dataset,
    batch_size: int,
    num_workers: int,
    device: torch.device,
    precision: Precision = "fp32",
    description: str = "descriptors",
    channels_last: bool = False,
    compile_model: bool = False,
    batch_sampler: Sampler[list[int]] | None = None,
    collate_fn: Callable[[list[Any]], tuple[Any, torch.Tensor]] | None = None,
    prepare_batch: Callable[[Any, torch.Tensor], torch.Tensor] | None = None,
    names: Sequence[str] | None = None,
) -> np.ndarray:
    """Run ``model`` over ``images`` (items ``(tensor [3, H, W], index)``), in batches of
    ``batch_size`` in order, or in the batches of indices ``batch_sampler`` yields (e.g. images
    of one size: ``dataloaders.size_buckets``), which then replaces ``batch_size``.

    Items of another kind (e.g. encoded JPEGs, ``dataloaders.device_decode``) take a
    ``collate_fn`` making ``(batch, indices [B])`` and a ``prepare_batch(batch, indices)`` that
    returns the model's input ``[B, 3, H, W]`` on ``device``.

    ``channels_last`` runs convolutions on NHWC tensors: faster for a ResNet on a CPU, nothing
    changes for a ViT.
    ``compile_model`` runs ``torch.compile(model)`` (compiled on the first batch, and once more
    for a last batch of another size). ``names`` (item ``i``'s file) let a ``ValueError`` of the
    model (an image too small for it, ...) name the image it came from.

    Returns:
        ``[len(images), D]`` float32 descriptors, row ``i`` for item ``i``.
    """
    output: np.ndarray | None = None
    batches = iterate_descriptors(
        model, images, batch_size, num_workers, device, precision, channels_last, compile_model, batch_sampler,
        collate_fn, prepare_batch, names,
    )
    for indices, descriptors in tqdm(batches, desc=description, unit="batch", total=batches_of(images, batch_size, batch_sampler)):
        if output is None:
            output = np.empty((len(images), descriptors.shape[1]), dtype=np.float32)
        output[indices] = descriptors
    if output is None:
        raise UserError(f"{description}: no images to describe")
    return output


def batches_of(images: Dataset, batch_size: int, batch_sampler: Sampler[list[int]] | None) -> int:
    """How many batches :func:`iterate_descriptors` yields."""
    if batch_sampler is not None:
        return len(batch_sampler)  # type: ignore[arg-type]
    return -(-len(images) // batch_size)  # type: ignore[arg-type]


@torch.no_grad()
def iterate_descriptors(
    model: torch.nn.Module,
    images: Dataset,
    batch_size: int,
    num_workers: int,
    device: torch.device,
    precision: Precision = "fp32",
    channels_last: bool = False,
    compile_model: bool = False,
    batch_sampler: Sampler[list[int]] | Sequence[list[int]] | None = None,
    collate_fn: Callable[[list[Any]], tuple[Any, torch.Tensor]] | None = None,
    prepare_batch: Callable[[Any, torch.Tensor], torch.Tensor] | None = None,
    names: Sequence[str] | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """:func:`compute_descriptors` one batch at a time: yields ``(indices [B], descriptors [B, D]
    float32)``, ``indices`` being the items' own indices (the second element of each item), so
    that a caller can write them to disk as they come (``utils.evaluation.streaming``)."""
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.eval().to(device, memory_format=memory_format)
    runner = torch.compile(model) if compile_model else model
    batching = {"batch_sampler": batch_sampler} if batch_sampler is not None else {"batch_size": batch_size}
    loader = DataLoader(
        images,
        **batching,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
        collate_fn=collate_fn,
    )
    for batch, indices in loader:
        if prepare_batch is None:
            inputs = batch.to(device, non_blocking=True, memory_format=memory_format)
        else:
            inputs = prepare_batch(batch, indices).contiguous(memory_format=memory_format)
        with autocast_context(device, precision):
            try:
                descriptors = runner(inputs)
            except UserError as error:
                if names is None:
                    raise
                raise UserError(f"{describe_batch(names, indices, inputs)}: {error}") from None
        yield indices.numpy(), descriptors.float().cpu().numpy()


def describe_batch(names: Sequence[str], indices: torch.Tensor, inputs: torch.Tensor) -> str:
    """``"<first image> (W x H as the model sees it) and N more in its batch"``, for messages."""
    first = names[int(indices[0])]
    more = f" and {len(indices) - 1} more in its batch" if len(indices) > 1 else ""
    return f"{first} ({inputs.shape[-1]}x{inputs.shape[-2]} as the model sees it){more}"
