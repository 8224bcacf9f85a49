"""The evaluation pipeline, for eval.py and for Python users (a notebook needs no argparse).

One :class:`Evaluator` holds a model and an :class:`EvalOptions`; ``evaluate(eval_set)``
computes the set's descriptors (from the descriptor cache when allowed and valid), searches
its queries against its database and scores recall, returning a :class:`SetEvaluation` that
the output writers (``utils.evaluation.outputs``) turn into files::

    from dataloaders.eval_sets import DataRoots, load_eval_set
    from models.loading import load_network
    from utils.evaluation.pipeline import DescribedModel, EvalOptions, Evaluator

    model = DescribedModel.of(load_network("weights/dino_salad.ckpt", release="dinov2_salad").network)
    evaluator = Evaluator(model, EvalOptions(image_size=(322, 322)))
    result = evaluator.evaluate(load_eval_set("msls_val", DataRoots(data_dir="../data")))
    print(result.retrieval.recalls)

The decisions made once here, and passed along as objects rather than repeated: how images
become tensors (``dataloaders.transforms.EvalPreprocessing``: fixed or native size, the cap on
large photos, exact or draft JPEG decoding), how they are decoded (PIL in the workers or on the
device), how they are batched (fixed size, or by size at native resolution), how many
predictions are kept per query, and whether cached descriptors may be reused.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import Dataset, Subset
from tqdm import tqdm

from dataloaders.device_decode import DeviceDecoder, EncodedImages, collate_encoded
from dataloaders.eval_sets import EvalSet
from dataloaders.size_buckets import REFERENCE_SIDE, SizeBucketBatchSampler, native_size_batches, resized_sizes
from dataloaders.transforms import EvalPreprocessing
from utils.checkpoint_files import shown_checkpoint
from utils.errors import UserError
from utils.evaluation.descriptor_cache import CacheKey, DescriptorCache, checkpoint_sha256, make_cache_key
from utils.evaluation.retrieval import CURVE_LENGTH, RECALL_KS, Retrieval, retrieve
from utils.evaluation.distributed import DistributedContext
from utils.evaluation.inference import Precision, autocast_context, compute_descriptors, default_device, iterate_descriptors
from utils.evaluation.streaming import (
    DEFAULT_CHUNK_SIZE,
    Chunk,
    ChunkWriter,
    DescriptorStore,
    SidedDescriptors,
    check_identity,
    owner,
    store_identity,
)

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 256
"""Images per forward pass (the published evaluation batch)."""
DEFAULT_TOP_K = 25
"""Predictions kept per query for the outputs."""
DEFAULT_NUM_WORKERS = min(16, os.cpu_count() or 1)
"""Decoding workers: the published 16, or fewer where the machine has fewer cores (a GPU outruns
fewer workers; more than the cores only adds contention)."""
DEFAULT_MAX_SIDE = 1024
"""At native resolution, the longest side an image keeps: a 6000 x 4000 photo is 122k ViT/14
tokens (minutes per image on a CPU), 1024 x 683 is 3.6k; the usual sets (MSLS, Pittsburgh,
640 x 480) are not affected."""
NATIVE_SIZE_CACHE_KEY = (0, 0)
"""``image_size`` of the descriptor-cache key when images keep their native resolution."""


@dataclass(frozen=True)
class SpeedOptions:
    """Settings that make evaluation faster without changing what it measures.

    Attributes:
        channels_last: run convolutions on NHWC tensors (ResNets on CPU; nothing for ViTs).
        decode_on_device: decode JPEGs on the device (nvJPEG on CUDA) instead of PIL in the
            workers; descriptors agree with PIL's closely, not bit for bit.
        compile: ``torch.compile`` the model (same descriptors; compiling takes a while).
        search_storage: ``"fp16"`` halves the memory of the search's database copy.
    """

    channels_last: bool = False
    decode_on_device: bool = False
    compile: bool = False
    search_storage: Literal["fp32", "fp16"] = "fp32"


@dataclass(frozen=True)
class EvalOptions:
    """How to evaluate. Names are eval.py's flags (``--batch_size`` is ``batch_size``).

    Attributes:
        image_size: ``(height, width)`` every image is resized to; ``None``: native resolution,
            sides rounded to multiples of the model's patch size, images batched by size.
        max_side: at native resolution, the longest side an image keeps (``None``: no cap).
        draft_decode: decode JPEGs at a reduced scale when the fixed size allows (faster, not
            the published preprocessing).
        exif_transpose: turn images upright by their EXIF orientation tag (phone photos; the
            published code ignores it).
        batch_size: images per forward pass (at native resolution, also capped by pixels).
        num_workers: image-loading processes.
        device: torch device name; ``None``: CUDA when available, else the CPU.
        precision: ``"auto"`` (fp16 autocast on CUDA as published, fp32 elsewhere), ``"fp32"``,
            ``"fp16"`` or ``"bf16"``.
        recall_values: the K of Recall@K.
        per_city: search each query among its own city's database images (MSLS).
        top_k: predictions kept per query for the outputs (at most the database size).
        speed: :class:`SpeedOptions`.
        cache_dir: reuse and store descriptors there (``None``: no cache).
        cache_content_hash: key cached descriptors on the images' content (a hash of every
            file) rather than on their sizes and modification times.
        descriptor_dir: write each set's descriptors there as they are computed, chunk by chunk
            (``utils.evaluation.streaming``): memory bounded by a chunk, the search reads them
            memory-mapped, and a killed run resumes with the chunks already there (verified);
            ``None``: in memory.
        chunk_size: images per chunk of ``descriptor_dir``.
    """

    image_size: tuple[int, int] | None = None
    max_side: int | None = DEFAULT_MAX_SIDE
    draft_decode: bool = False
    exif_transpose: bool = False
    batch_size: int = DEFAULT_BATCH_SIZE
    num_workers: int = DEFAULT_NUM_WORKERS
    device: str | None = None
    precision: Literal["auto", "fp32", "fp16", "bf16"] = "auto"
    recall_values: tuple[int, ...] = RECALL_KS
    per_city: bool = False
    top_k: int = DEFAULT_TOP_K
    speed: SpeedOptions = field(default_factory=SpeedOptions)
    cache_dir: Path | None = None
    cache_content_hash: bool = False
    descriptor_dir: Path | None = None
    chunk_size: int = DEFAULT_CHUNK_SIZE

    def __post_init__(self) -> None:
        for name in ("batch_size", "top_k", "chunk_size"):
            if getattr(self, name) < 1:
                raise UserError(f"{name}={getattr(self, name)}: must be at least 1")
        if self.num_workers < 0:
            raise UserError(f"num_workers={self.num_workers}: must not be negative")
        if not self.recall_values or min(self.recall_values) < 1:
            raise UserError(f"recall_values={list(self.recall_values)}: must be positive integers")
        object.__setattr__(self, "recall_values", tuple(sorted(set(int(k) for k in self.recall_values))))
        if self.image_size is not None:
            object.__setattr__(self, "image_size", (int(self.image_size[0]), int(self.image_size[-1])))


@dataclass(frozen=True)
class DescribedModel:
    """A network and what it is, for results, metadata and the descriptor cache.

    Attributes:
        network: ``images [B, 3, H, W] -> descriptors [B, D]``, with a ``patch_size`` (a
            ``models.VPRNet``).
        architecture: registry names and arguments (``Architecture.as_dict()``).
        weights: where the weights come from (``"checkpoint"``, ``"random (seed 1)"``, ...).
        checkpoint: the weights file, if any (hashed for the cache key).
    """

    network: nn.Module
    architecture: Mapping[str, Any]
    weights: str = "checkpoint"
    checkpoint: Path | None = None

    @classmethod
    def of(cls, network: nn.Module, weights: str = "given", checkpoint: Path | None = None) -> DescribedModel:
        """A ``models.VPRNet`` built by ``models.build_network`` (it knows its architecture)."""
        architecture = getattr(network, "architecture", None)
        return cls(network, architecture.as_dict() if architecture is not None else {}, weights, checkpoint)


@dataclass
class SetEvaluation:
    """One set, evaluated.

    Attributes:
        eval_set: the set.
        descriptors: ``[num_db + num_queries, D]`` float32, database first (in memory, or
            memory-mapped sides: ``utils.evaluation.streaming.SidedDescriptors``).
        retrieval: ranked predictions (``[M, K]`` indices and distances) and, with ground
            truth, Recall@K and the recall curve.
        per_city: whether each query was searched among its own city only.
    """

    eval_set: EvalSet
    descriptors: np.ndarray | SidedDescriptors
    retrieval: Retrieval
    per_city: bool = False

    @property
    def labelled(self) -> bool:
        return self.retrieval.recalls is not None


class Evaluator:
    """Evaluates sets with one model and one :class:`EvalOptions`.

    With a ``context`` of several processes (``utils.evaluation.distributed``), each describes
    its share of the chunks in ``options.descriptor_dir`` and only rank 0 searches: ``evaluate``
    returns ``None`` on the other ranks.

    Raises (on construction):
        ValueError: a device that does not exist here, a precision the device lacks, or an
            ``image_size`` the model's backbone cannot take.
    """

    def __init__(self, model: DescribedModel, options: EvalOptions, context: DistributedContext | None = None) -> None:
        self.model = model
        self.options = options
        self.context = context or DistributedContext()
        if self.context.distributed and options.descriptor_dir is None:
            raise ValueError("several processes share their descriptors through descriptor_dir: give one")
        self.device = self.context.device(resolve_device(options.device) if options.device else None)
        self.precision = resolve_precision(options.precision, self.device)
        network = model.network
        if options.image_size is not None and hasattr(network, "backbone"):
            try:
                network.backbone.check_image_size(*options.image_size)
            except ValueError as error:
                raise UserError(f"image_size={list(options.image_size)}: {error}") from None
        self.preprocessing = EvalPreprocessing(
            options.image_size, network.patch_size, options.max_side, options.draft_decode, options.exif_transpose
        )
        self.cache = DescriptorCache(options.cache_dir) if options.cache_dir is not None else None
        self.streamed = 0  # sets streamed so far (names each set's progress count among ranks)

    # ---------------------------------------------------------------------------- descriptors
    def describe(self, eval_set: EvalSet) -> np.ndarray | SidedDescriptors | None:
        """``[num_db + num_queries, D]`` descriptors of ``eval_set``, from the cache when there,
        streamed to ``descriptor_dir`` when given (``None`` on ranks other than 0)."""
        main = self.context.is_main
        key = self.cache_key(eval_set) if self.cache is not None and main else None
        cached = self.cache.load(key) if self.cache is not None and key is not None else None
        if self.context.broadcast(cached is not None):
            return cached
        descriptors = self.compute(eval_set) if self.options.descriptor_dir is None else self.stream(eval_set)
        if self.cache is not None and key is not None and descriptors is not None:
            self.cache.save(key, np.asarray(descriptors))
        return descriptors

    def images_dataset(self, eval_set: EvalSet) -> tuple[Dataset, dict[str, Any]]:
        """The set's images as the options decode them, and the loader arguments that go with them."""
        paths = eval_set.image_paths()
        if self.options.speed.decode_on_device:
            decoder = DeviceDecoder(paths, self.preprocessing, self.device)
            return EncodedImages(paths, self.preprocessing.exif_transpose), {"collate_fn": collate_encoded, "prepare_batch": decoder}
        images = eval_set.images(self.preprocessing.transform(), decode_size=self.preprocessing.decode_size,
                                 exif_transpose=self.preprocessing.exif_transpose)
        return images, {}

    def stream(self, eval_set: EvalSet) -> SidedDescriptors | None:
        """Describe this rank's chunks of ``eval_set`` that are not on disk yet into
        ``descriptor_dir/<set>/``; on rank 0, once every rank is done, both sides memory-mapped."""
        context = self.context
        folder, identity, sides = self.store_folder(eval_set), self.identity(eval_set), self.sides(eval_set)
        if context.is_main:  # rank 0 writes the identity (or refuses another) before the others read it
            DescriptorStore(folder, identity, sides, self.options.chunk_size)
        context.barrier()
        store = DescriptorStore(folder, identity, sides, self.options.chunk_size, images_fingerprint(eval_set))
        mine = [chunk for number, chunk in enumerate(store.chunks) if owner(number, context.world_size) == context.rank]
        todo = store.missing(mine)
        if len(todo) < len(mine):
            log.info("%s: %d of %d chunks verified on disk%s, computing %d", eval_set.name, len(mine) - len(todo),
                     len(mine), f" (rank {context.rank})" if context.distributed else "", len(todo))
        self.describe_chunks(eval_set, store, todo)  # returns once every rank has described its share
        return store.arrays() if context.is_main else None

    def describe_chunks(self, eval_set: EvalSet, store: DescriptorStore, chunks: list[Any]) -> None:
        """Run the model over the images of ``chunks`` and write each chunk as soon as it is full;
        rank 0 shows one progress bar for the images of all ranks together."""
        offsets = {"database": 0, "queries": eval_set.num_db}
        rows = [offsets[chunk.side] + row for chunk in chunks for row in range(chunk.start, chunk.stop)]
        total = self.context.total(len(rows))
        images, decoding = self.images_dataset(eval_set)
        # Batches never cross a chunk: a chunk is described by the same batches whichever rank
        # describes it, so its descriptors are the same bit for bit with any number of processes.
        paths, batches, first, sizes = eval_set.image_paths(), [], 0, set()
        for chunk in chunks:
            if self.preprocessing.native:  # images of one size per batch
                chunk_sizes = resized_sizes(paths[offsets[chunk.side] + chunk.start : offsets[chunk.side] + chunk.stop], self.preprocessing)
                sizes.update(chunk_sizes)
                size = self.options.batch_size
                in_chunk = SizeBucketBatchSampler(chunk_sizes, size, max_pixels=size * REFERENCE_SIDE**2).batches
            else:
                size = self.options.batch_size
                in_chunk = [list(range(start, min(start + size, chunk.rows))) for start in range(0, chunk.rows, size)]
            batches += [[first + position for position in batch] for batch in in_chunk]
            first += chunk.rows
        if self.preprocessing.native and chunks:
            log.info("%s at native resolution: image sizes %d, batches %d", eval_set.name, len(sizes), len(batches))
        writer = ChunkWriter(store, chunks, offsets)
        self.streamed += 1
        counter = f"{self.streamed}/{eval_set.name}"
        speed = self.options.speed
        with tqdm(total=total, desc=f"{eval_set.name} descriptors", unit="img", disable=not self.context.is_main or not total) as progress:
            if rows:
                for indices, descriptors in iterate_descriptors(
                    self.model.network, Subset(images, rows), self.options.batch_size, self.options.num_workers,
                    self.device, self.precision, speed.channels_last, speed.compile, batches,
                    names=[str(path) for path in paths], **decoding,
                ):
                    writer.add(indices, descriptors)
                    if self.context.distributed:  # every rank adds its images to one count
                        progress.update(self.context.count(counter, len(indices)) - progress.n)
                    else:
                        progress.update(len(indices))
            self.context.barrier()
            progress.update(total - progress.n)

    def compute(self, eval_set: EvalSet) -> np.ndarray:
        """Run the model over the set's images, decoded and batched as the options say."""
        paths = eval_set.image_paths()
        speed = self.options.speed
        batches = None
        if self.preprocessing.native:  # images of one size per batch
            batches = native_size_batches(paths, self.options.batch_size, self.preprocessing)
            log.info("%s at native resolution: image sizes %d, batches %d", eval_set.name, batches.num_sizes, len(batches))
        images, decoding = self.images_dataset(eval_set)
        return compute_descriptors(
            self.model.network, images, self.options.batch_size, self.options.num_workers, self.device,
            self.precision, description=f"{eval_set.name} descriptors", channels_last=speed.channels_last,
            compile_model=speed.compile, batch_sampler=batches, names=[str(path) for path in paths], **decoding,
        )

    def cache_key(self, eval_set: EvalSet) -> CacheKey:
        """Everything that changes a set's descriptors: the weights (the checkpoint's SHA-256, or the
        random seed), the architecture, the set and its images (paths, sizes and modification times,
        or their content with ``cache_content_hash``), the preprocessing, the precision, and the
        decoding when it is not PIL's."""
        preprocessing = {"max_side": self.preprocessing.max_side, "draft_decode": self.preprocessing.draft_decode}
        if self.preprocessing.exif_transpose:  # (absent otherwise: earlier cache entries stay valid)
            preprocessing["exif_transpose"] = True
        return make_cache_key(
            self.model.checkpoint,
            eval_set.name,
            self.options.image_size or NATIVE_SIZE_CACHE_KEY,
            image_paths=eval_set.image_paths(),
            content_hash=self.options.cache_content_hash,
            checkpoint_digest=self.checkpoint_sha256,
            precision=self.precision,
            weights=self.model.weights,
            architecture=dict(self.model.architecture),
            preprocessing=preprocessing,
            **({"decoding": "device"} if self.options.speed.decode_on_device else {}),
        )

    # ---------------------------------------------------------------------------- retrieval
    def num_results(self, eval_set: EvalSet, per_city: bool) -> int:
        """Predictions kept per query: enough for the largest Recall@K, the curve and ``top_k``;
        never more than the database (or, per city, the smallest city database) holds."""
        wanted = max(*self.options.recall_values, CURVE_LENGTH, self.options.top_k)
        if not per_city:
            return min(wanted, eval_set.num_db)
        db_groups = np.asarray(eval_set.db_groups)
        city_sizes = {group: int(np.sum(db_groups == group)) for group in dict.fromkeys(eval_set.query_groups)}
        smallest = min(city_sizes, key=city_sizes.__getitem__)
        if city_sizes[smallest] == 0:
            raise UserError(f"per_city=True: city {smallest!r} of {eval_set.name} has queries but no database images")
        if city_sizes[smallest] < wanted:
            log.info(
                "%s: per-city search keeps %d predictions per query (the database of %s)",
                eval_set.name, city_sizes[smallest], smallest,
            )
        return min(wanted, city_sizes[smallest])

    def evaluate(self, eval_set: EvalSet) -> SetEvaluation | None:
        """Describe, search and score ``eval_set`` (``None`` on ranks other than 0, which only describe)."""
        started = time.monotonic()
        descriptors = self.describe(eval_set)
        if descriptors is None:
            return None
        described = time.monotonic()
        per_city = self.options.per_city and eval_set.db_groups is not None and eval_set.query_groups is not None
        if self.options.per_city and not per_city:
            log.info("%s has no cities: per_city does not apply, searching the whole database", eval_set.name)
        retrieval = retrieve(
            eval_set, descriptors, self.options.recall_values, self.num_results(eval_set, per_city), per_city,
            storage=self.options.speed.search_storage,
        )
        log.info("%s: %d database images and %d queries described in %.1f s, searched in %.1f s", eval_set.name,
                 eval_set.num_db, eval_set.num_queries, described - started, time.monotonic() - described)
        return SetEvaluation(eval_set, descriptors, retrieval, per_city)

    # ---------------------------------------------------------------------------- description
    @functools.cached_property
    def checkpoint_sha256(self) -> str | None:
        """SHA-256 of the checkpoint's bytes (``None`` without one): read once per evaluator."""
        return checkpoint_sha256(self.model.checkpoint) if self.model.checkpoint else None

    def settings(self) -> dict[str, Any]:
        """What every result of this evaluator was computed with (for results and metadata)."""
        return {
            "image_size": list(self.options.image_size) if self.options.image_size else "native",
            "max_side": self.preprocessing.max_side if self.preprocessing.native else None,
            "draft_decode": self.preprocessing.draft_decode,
            "exif_transpose": self.preprocessing.exif_transpose,
            "checkpoint": shown_checkpoint(self.model.checkpoint) if self.model.checkpoint else None,
            "checkpoint_sha256": self.checkpoint_sha256,
            "weights": self.model.weights,
            "architecture": dict(self.model.architecture),
            "precision": self.precision,
        }

    def descriptor_settings(self) -> dict[str, Any]:
        """The settings that make the descriptors what they are: :meth:`settings` without the
        checkpoint's path (its content counts, wherever it lies), with the decoding."""
        settings = {key: value for key, value in self.settings().items() if key != "checkpoint"}
        return {**settings, "decoding": "device" if self.options.speed.decode_on_device else "pil"}

    def identity(self, eval_set: EvalSet) -> dict[str, Any]:
        """What the descriptors of ``eval_set`` streamed to ``descriptor_dir`` are of."""
        return {**self.descriptor_settings(), "set": eval_set.name, "images": image_list_sha256(eval_set)}

    def run_identity(self, eval_sets: Sequence[EvalSet]) -> dict[str, Any]:
        """What a run of ``eval_sets`` computes, for its ``run.json``: a resumed run must match it."""
        sets = {eval_set.name: image_list_sha256(eval_set) for eval_set in eval_sets}
        return {**self.descriptor_settings(), "chunk_size": self.options.chunk_size, "sets": sets}

    def store_folder(self, eval_set: EvalSet) -> Path:
        """``descriptor_dir/<set>/``, where :meth:`stream` writes the set's descriptors."""
        assert self.options.descriptor_dir is not None
        return self.options.descriptor_dir / re.sub(r"[^A-Za-z0-9_.-]", "_", eval_set.name)

    @staticmethod
    def sides(eval_set: EvalSet) -> dict[str, int]:
        """Rows of each side of the set's descriptors: ``{"database": N, "queries": M}``."""
        return {"database": eval_set.num_db, "queries": eval_set.num_queries}

    def check_stored(self, eval_set: EvalSet) -> None:
        """Refuse, changing nothing, descriptors of ``eval_set`` already in ``descriptor_dir`` that
        are not of this evaluator's :meth:`identity` (``utils.evaluation.streaming.check_identity``)."""
        folder = self.store_folder(eval_set)
        if folder.is_dir():
            check_identity(folder, store_identity(self.identity(eval_set), self.sides(eval_set), self.options.chunk_size))


def image_list_sha256(eval_set: EvalSet) -> str:
    """SHA-256 of the set's image paths, in order (database then queries)."""
    paths = "\n".join(map(str, eval_set.image_paths()))
    return hashlib.sha256(paths.encode("utf-8", "surrogateescape")).hexdigest()


def images_fingerprint(eval_set: EvalSet) -> Callable[[Chunk], str]:
    """A chunk's fingerprint for :class:`utils.evaluation.streaming.DescriptorStore`: the SHA-256 of
    the size and modification time of each of its images (an image replaced at the same path
    between a run and its resume changes it)."""
    images = eval_set.image_paths()
    paths = {"database": images[:eval_set.num_db], "queries": images[eval_set.num_db:]}

    def fingerprint(chunk: Chunk) -> str:
        digest = hashlib.sha256()
        for path in paths[chunk.side][chunk.start:chunk.stop]:
            try:
                status = path.stat()
                digest.update(f"{status.st_size} {status.st_mtime_ns}\n".encode())
            except OSError:
                digest.update(b"missing\n")
        return digest.hexdigest()

    return fingerprint


def resolve_device(name: str | None) -> torch.device:
    """``name`` as a torch device that exists here (``None``: CUDA when available)."""
    if name is None:
        return default_device()
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"device={name} is not a torch device (e.g. cpu, cuda, cuda:1)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device={name}: CUDA is not available here; use device=cpu")
    return device


def resolve_precision(name: str, device: torch.device) -> Precision:
    """``precision`` for ``device``; ``auto`` is fp16 autocast on CUDA (as published), fp32 elsewhere."""
    precision: Precision = ("fp16" if device.type == "cuda" else "fp32") if name == "auto" else name  # type: ignore[assignment]
    autocast_context(device, precision)  # raises ValueError for a precision the device lacks
    return precision


def check_positives(eval_set: EvalSet) -> None:
    """A labelled set where no query has a positive would give every recall 0: refused in one line;
    queries without one are counted in a warning (they are misses at every K)."""
    if eval_set.ground_truth is None:
        return
    without = sum(1 for positives in eval_set.ground_truth if len(positives) == 0)
    if without == eval_set.num_queries:
        raise UserError(f"{eval_set.name}: none of the {without} queries has a database image within the positive "
                        "radius (positive_dist_threshold=), so every recall would be 0; check the radius and the images' "
                        "positions")
    if without:
        log.warning("%s: %d of the %d queries have no database image within the positive radius: they count as "
                    "misses at every K", eval_set.name, without, eval_set.num_queries)


def evaluate_sets(evaluator: Evaluator, eval_sets: Sequence[EvalSet], writers: Sequence[Any] = ()) -> list[SetEvaluation]:
    """Evaluate every set in turn and hand each result to every writer (``utils.evaluation.outputs``),
    in their order; every writer's ``check()`` runs first, before any descriptor is computed, and a set
    without queries is refused before any database pass."""
    for eval_set in eval_sets:  # before any database pass
        if eval_set.num_queries == 0:
            raise UserError(f"{eval_set.name}: no query image (its database has {eval_set.num_db}); "
                            "nothing to evaluate: check the queries folder or index")
        check_positives(eval_set)
    for writer in writers:
        writer.check(eval_sets)
    evaluations = []
    for eval_set in eval_sets:
        evaluation = evaluator.evaluate(eval_set)
        if evaluation is None:  # a rank other than 0: it described its share
            continue
        for writer in writers:
            writer.write(evaluation, evaluator)
        evaluations.append(evaluation)
    return evaluations
