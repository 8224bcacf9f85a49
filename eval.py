"""Evaluate a VPR model on place-recognition sets: Recall@K tables, results.json, predictions.

Examples (from the repository root)::

    python eval.py --ckpt_path weights/dino_salad.ckpt --image_size 322 322 --batch_size 256 \\
        --data_dir ../data --val_datasets MSLS Nordland
    python eval.py --ckpt_path weights/dino_salad_512_32.ckpt --num_clusters 16 --cluster_dim 32 \\
        --token_dim 32 --data_dir ../data --val_datasets SPED
    python eval.py --ckpt_path last.ckpt --database_folder db/ --queries_folder q/ \\
        --no_labels --save_predictions predictions.csv

Every run writes into a new folder ``<--log_dir>/<checkpoint name>_<time>/``: ``results.json``
(one entry per labelled set), ``recall_<set>.png``, the MSLS challenge file for ``msls_test``
and, with ``--num_preds_to_save``, ``predictions/<set>/*.png``.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from dataloaders.device_decode import DeviceDecoder, EncodedImages, collate_encoded
from dataloaders.eval_sets import (
    EvalSet,
    EvalSetRegistry,
    add_data_root_arguments,
    data_roots_from_args,
    published_registry,
)
from dataloaders.eval_sets.gmberton import DEFAULT_POSITIVE_DIST_THRESHOLD
from dataloaders.image_io import ImageDecodeError
from dataloaders.size_buckets import native_size_batches
from dataloaders.transforms import decode_size, eval_transform
from models.checkpoint_io import Architecture, LoadedModel, load_model
from models.registry import AGGREGATORS
from utils.cli import json_object
from utils.descriptor_cache import CacheKey, DescriptorCache, make_cache_key
from utils.evaluation import CURVE_LENGTH, RECALL_KS, Retrieval, retrieve
from utils.inference import (
    CPU_BF16_FLAGS, CPUINFO, Precision, autocast_context, compute_descriptors, cpu_bf16_support, default_device,
)
from utils.msls_challenge import write_msls_predictions
from utils.predictions_csv import write_predictions_csv
from utils.results import format_recall_table, make_set_result, new_run_dir, write_results_json
from utils.visualize import plot_recall_curves, save_prediction_images

log = logging.getLogger("eval")

PROG = "eval.py"
DEFAULT_VAL_SETS = ("MSLS", "MSLS_Test", "pitts30k_test", "pitts250k_test", "Nordland", "SPED")
DEFAULT_BACKBONE = "dinov2_vitb14"
DEFAULT_AGGREGATOR = "SALAD"
SALAD_SIZE_DEFAULTS = {"num_clusters": 64, "cluster_dim": 128, "token_dim": 256}
ARCHITECTURE_FLAGS = ("backbone", "backbone_config", "agg_arch", *SALAD_SIZE_DEFAULTS, "agg_config")
MSLS_CHALLENGE_SET = "msls_test"
MSLS_CHALLENGE_TOP_K = 25
MSLS_CHALLENGE_FILE = "msls_challenge_predictions.txt"
RESULTS_FILE = "results.json"
NATIVE_SIZE_CACHE_KEY = (0, 0)
"""``image_size`` of the descriptor-cache key when images keep their native resolution."""
DEFAULT_NUM_WORKERS = min(16, os.cpu_count() or 1)
"""Decoding workers: the published 16, or fewer where the machine has fewer cores (a GPU outruns
fewer workers; more than the cores only adds contention)."""
USER_ERRORS = (OSError, ValueError, ImportError, ImageDecodeError, torch.OutOfMemoryError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    model = parser.add_argument_group("model")
    model.add_argument(
        "--ckpt_path", type=Path,
        help="Lightning checkpoint of this project (architecture inside) or a bare state dict (needs the "
        "architecture flags below)",
    )
    model.add_argument("--backbone", help=f"backbone of a bare state dict (default {DEFAULT_BACKBONE})")
    model.add_argument("--backbone_config", type=json_object, default={}, help="backbone arguments as JSON")
    model.add_argument("--agg_arch", help=f"aggregator of a bare state dict (default {DEFAULT_AGGREGATOR})")
    for name, default in SALAD_SIZE_DEFAULTS.items():
        model.add_argument(f"--{name}", type=int, help=f"SALAD {name} of a bare state dict (default {default})")
    model.add_argument(
        "--agg_config", type=json_object, default={},
        help="aggregator arguments as JSON, overriding the flags above; its input width defaults to the "
        "backbone's channels",
    )
    model.add_argument(
        "--random_weights", action="store_true",
        help="evaluate the architecture with its initial random weights (an untrained baseline)",
    )
    model.add_argument("--seed", type=int, default=1, help="seed of --random_weights (default 1)")

    inference = parser.add_argument_group("inference")
    inference.add_argument(
        "--image_size", type=int, nargs=2, metavar=("H", "W"),
        help="resize every image to H x W (322 322 as published); default: native resolution with sides "
        "rounded to multiples of 14, images batched by size",
    )
    inference.add_argument(
        "--batch_size", type=int, default=256,
        help="images per forward pass (default 256); at native resolution, images of one size, and no more "
        "pixels than this many images of 322 x 322",
    )
    inference.add_argument(
        "--num_workers", type=int, default=DEFAULT_NUM_WORKERS,
        help=f"image-loading processes (default: the CPU cores, at most 16 as published; here {DEFAULT_NUM_WORKERS})",
    )
    inference.add_argument(
        "--device", default=str(default_device()), help="torch device (default: cuda if available, else cpu)"
    )
    inference.add_argument(
        "--precision", choices=("auto", "fp32", "fp16", "bf16"), default="auto",
        help="auto: fp16 autocast on CUDA (as published), fp32 on CPU (bf16: faster on CPUs with AVX-512 BF16 or AMX)",
    )

    data = parser.add_argument_group("sets")
    data.add_argument(
        "--val_datasets", nargs="+",
        help="sets to evaluate: published names in any case, or this project's "
        f"(default: {' '.join(DEFAULT_VAL_SETS)})",
    )
    data.add_argument(
        "--database_folder", type=Path, help="with --queries_folder: evaluate two folders of images"
    )
    data.add_argument("--queries_folder", type=Path, help="folder of the query images")
    data.add_argument("--folder_set_name", default="folders", help="name of the folder set (default folders)")
    data.add_argument(
        "--positive_dist_threshold", type=float, default=DEFAULT_POSITIVE_DIST_THRESHOLD,
        help="metres within which a database image is a positive, positions from @UTM_east@UTM_north@ file "
        "names (default 25)",
    )
    data.add_argument(
        "--no_labels", action="store_true",
        help="the folders carry no positions: no recall, only predictions (see --save_predictions)",
    )
    data.add_argument(
        "--per_city", action="store_true",
        help="search each query only among the database images of its own city (sets with cities: MSLS)",
    )
    parser.add_argument(
        "--channels_last", action="store_true",
        help="run convolutions in channels-last layout (faster for ResNet backbones on CPU, no effect on ViTs)",
    )
    parser.add_argument(
        "--decode_on_device", action="store_true",
        help="decode JPEGs on --device with torchvision (nvJPEG on CUDA), resize and normalise there, instead of "
        "PIL in the workers (for GPUs that outrun the workers; other formats and EXIF-rotated photos still use PIL)",
    )
    parser.add_argument(
        "--compile", action="store_true",
        help="torch.compile the model (compiling takes a while on the first batch; same descriptors)",
    )
    parser.add_argument(
        "--search_storage", choices=["fp32", "fp16"], default="fp32",
        help="how the search stores the database: fp16 halves its memory (e.g. SF-XL), recall@1 unchanged on a 1M x 8448 bench",
    )
    add_data_root_arguments(parser)

    output = parser.add_argument_group("output")
    output.add_argument(
        "--log_dir", type=Path, default=Path("logs/eval"), help="parent of the run folders (default logs/eval)"
    )
    output.add_argument(
        "--save_predictions", type=Path, metavar="FILE.csv",
        help="write each query's top-K predictions and distances (FILE_<set>.csv when several sets run)",
    )
    output.add_argument(
        "--top_k", type=int, default=25, help="predictions per query in --save_predictions (default 25, at most "
        "the database size)",
    )
    output.add_argument(
        "--num_preds_to_save", type=int, default=0,
        help="save an image of each query with its top K predictions (default 0: none)",
    )
    output.add_argument(
        "--save_only_wrong_preds", action="store_true",
        help="with --num_preds_to_save: only the queries whose first prediction is wrong",
    )
    output.add_argument(
        "--save_descriptors", action="store_true",
        help="cache descriptors in --cache_dir; a later run with the same weights and settings reuses them",
    )
    output.add_argument(
        "--cache_dir", type=Path, default=Path("logs/descriptor_cache"),
        help="descriptor cache folder (default logs/descriptor_cache)",
    )
    return parser


@dataclass(frozen=True)
class EvalContext:
    """What every set is evaluated with."""

    loaded: LoadedModel
    ckpt_path: Path | None
    device: torch.device
    precision: Precision
    image_size: tuple[int, int] | None
    batch_size: int
    num_workers: int
    run_dir: Path
    channels_last: bool = False
    compile_model: bool = False
    decode_on_device: bool = False


def check_arguments(args: argparse.Namespace) -> None:
    """Reject flag combinations that cannot work, before anything is loaded."""
    if args.ckpt_path is None and not args.random_weights:
        raise ValueError("--ckpt_path is required (or --random_weights with the architecture flags)")
    if args.ckpt_path is not None and not args.ckpt_path.is_file():
        raise FileNotFoundError(f"--ckpt_path {args.ckpt_path} does not exist")
    if (args.database_folder is None) != (args.queries_folder is None):
        raise ValueError("--database_folder and --queries_folder go together")
    if args.no_labels and args.database_folder is None:
        raise ValueError("--no_labels applies to --database_folder/--queries_folder")
    if args.save_only_wrong_preds and args.num_preds_to_save < 1:
        raise ValueError("--save_only_wrong_preds needs --num_preds_to_save K >= 1")
    for flag in ("batch_size", "top_k"):
        if getattr(args, flag) < 1:
            raise ValueError(f"--{flag} must be at least 1, got {getattr(args, flag)}")
    if args.num_preds_to_save < 0 or args.num_workers < 0:
        raise ValueError("--num_preds_to_save and --num_workers must not be negative")
    if args.image_size is not None and min(args.image_size) < 1:
        raise ValueError(f"--image_size must be two positive integers, got {args.image_size}")


def architecture_from_args(args: argparse.Namespace) -> Architecture:
    """The architecture of a bare state dict, from the flags.

    ``--num_clusters``, ``--cluster_dim`` and ``--token_dim`` fill the aggregator arguments of those
    names (SALAD's); given for an aggregator without them they are an error.
    """
    agg_arch = args.agg_arch or DEFAULT_AGGREGATOR
    parameters = inspect.signature(AGGREGATORS.get(agg_arch)).parameters
    agg_config: dict[str, Any] = {}
    for name, default in SALAD_SIZE_DEFAULTS.items():
        value = getattr(args, name)
        if name in parameters:
            agg_config[name] = default if value is None else value
        elif value is not None:
            raise ValueError(f"--{name} is not an argument of aggregator {agg_arch}; use --agg_config")
    agg_config.update(args.agg_config)
    return Architecture(args.backbone or DEFAULT_BACKBONE, dict(args.backbone_config), agg_arch, agg_config)


def resolve_device(name: str) -> torch.device:
    """``--device`` as a torch device that exists here."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device {name!r} is not a torch device (e.g. cpu, cuda, cuda:1)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available here; use --device cpu")
    return device


def resolve_precision(name: str, device: torch.device) -> Precision:
    """``--precision`` for ``device``; ``auto`` is fp16 autocast on CUDA (as published), fp32 elsewhere."""
    precision: Precision = ("fp16" if device.type == "cuda" else "fp32") if name == "auto" else name
    autocast_context(device, precision)  # raises ValueError for a precision the device lacks
    return precision


def log_cpu_bf16_hint(name: str, device: torch.device, cpuinfo: Path = CPUINFO) -> None:
    """Say so when ``--precision auto`` keeps float32 on a CPU that runs bf16 matrix products natively."""
    if name != "auto" or device.type != "cpu":
        return
    features = cpu_bf16_support(cpuinfo) or {}
    native = [CPU_BF16_FLAGS[flag] for flag, present in features.items() if present]
    if native:
        log.info("this CPU has %s: --precision bf16 can run several times faster than the float32 that auto "
                 "keeps on CPUs (ViT-B/14 SALAD: 3.3x, descriptor cosine >= 0.99999 to float32)", ", ".join(native))


def select_sets(args: argparse.Namespace, registry: EvalSetRegistry) -> list[str]:
    """Canonical names of the sets to evaluate (registering the folder set, if any)."""
    names = list(args.val_datasets) if args.val_datasets else []
    if args.database_folder is not None:
        threshold = None if args.no_labels else args.positive_dist_threshold
        registry.register_folder_set(args.folder_set_name, args.database_folder, args.queries_folder, threshold)
        names.append(args.folder_set_name)
    canonical = [registry.resolve(name) for name in names or DEFAULT_VAL_SETS]
    return list(dict.fromkeys(canonical))


def predictions_csv_paths(requested: Path | None, set_names: list[str]) -> dict[str, Path]:
    """Where each set's predictions CSV goes; existing files are refused before any work."""
    if requested is None:
        return {}
    if len(set_names) == 1:
        paths = {set_names[0]: requested}
    else:
        paths = {
            name: requested.with_name(f"{requested.stem}_{name}{requested.suffix}") for name in set_names
        }
    for path in paths.values():
        if path.exists():
            raise FileExistsError(f"--save_predictions: {path} already exists, not overwriting it")
    return paths


def descriptor_cache_key(eval_set: EvalSet, context: EvalContext) -> CacheKey:
    """Everything that changes a set's descriptors: the checkpoint's content (SHA-256), the set and
    its image list, the image size, the precision, the architecture and random weights' seed, and
    the decoding when it is not PIL's (no key changes for runs cached before ``--decode_on_device``), and each
    image file's size and modification time."""
    image_list = "\n".join(
        [str(eval_set.image_root.expanduser().absolute()), *eval_set.db_paths, *eval_set.query_paths]
    )
    return make_cache_key(
        context.ckpt_path,
        eval_set.name,
        context.image_size or NATIVE_SIZE_CACHE_KEY,
        image_paths=eval_set.image_paths(),
        precision=context.precision,
        weights=context.loaded.weights,
        architecture=context.loaded.architecture.as_dict(),
        images_sha256=hashlib.sha256(image_list.encode("utf-8")).hexdigest(),
        **({"decoding": "device"} if context.decode_on_device else {}),
    )


def set_descriptors(eval_set: EvalSet, context: EvalContext, cache: DescriptorCache | None) -> np.ndarray:
    """``[num_db + num_queries, D]`` descriptors of ``eval_set``, from the cache when there."""
    key = descriptor_cache_key(eval_set, context) if cache is not None else None
    if cache is not None and key is not None:
        cached = cache.load(key)
        if cached is not None:
            return cached
    paths = eval_set.image_paths()
    batches = None
    if context.image_size is None:  # native resolution: batches of one size
        batches = native_size_batches(paths, context.batch_size)
        log.info("%s at native resolution: image sizes %d, batches %d", eval_set.name, batches.num_sizes, len(batches))
    if context.decode_on_device:
        images: Dataset = EncodedImages(paths)
        decoding: dict[str, Any] = {
            "collate_fn": collate_encoded, "prepare_batch": DeviceDecoder(paths, context.image_size, context.device)
        }
    else:
        images = eval_set.images(eval_transform(context.image_size), decode_size=decode_size(context.image_size))
        decoding = {}
    descriptors = compute_descriptors(
        context.loaded.model, images, context.batch_size, context.num_workers, context.device,
        context.precision, description=f"{eval_set.name} descriptors", channels_last=context.channels_last,
        compile_model=context.compile_model, batch_sampler=batches, **decoding,
    )
    if cache is not None and key is not None:
        cache.save(key, descriptors)
    return descriptors


def num_results_for(eval_set: EvalSet, per_group: bool, top_k: int) -> int:
    """Predictions to keep per query: enough for Recall@25, the curve and ``top_k``; never more
    than the database (or, searching per city, the smallest city database) holds."""
    wanted = max(*RECALL_KS, CURVE_LENGTH, top_k)
    if not per_group:
        return min(wanted, eval_set.num_db)
    db_groups = np.asarray(eval_set.db_groups)
    city_sizes = {group: int(np.sum(db_groups == group)) for group in dict.fromkeys(eval_set.query_groups)}
    smallest = min(city_sizes, key=city_sizes.__getitem__)
    if city_sizes[smallest] == 0:
        raise ValueError(f"--per_city: city {smallest!r} of {eval_set.name} has queries but no database images")
    if city_sizes[smallest] < wanted:
        log.info(
            "%s: per-city search keeps %d predictions per query (the database of %s)",
            eval_set.name, city_sizes[smallest], smallest,
        )
    return min(wanted, city_sizes[smallest])


def save_outputs(
    eval_set: EvalSet, retrieval: Retrieval, args: argparse.Namespace, context: EvalContext, csv_path: Path | None
) -> None:
    """The files a set's predictions go to: challenge file, predictions CSV, prediction images."""
    if eval_set.name == MSLS_CHALLENGE_SET:
        path = write_msls_predictions(
            context.run_dir / MSLS_CHALLENGE_FILE, eval_set.query_keys, eval_set.db_keys,
            retrieval.indices[:, :MSLS_CHALLENGE_TOP_K],
        )
        print(f"MSLS challenge predictions: {path}")
    all_paths = eval_set.image_paths()
    db_paths, query_paths = all_paths[: eval_set.num_db], all_paths[eval_set.num_db :]
    if csv_path is not None:
        top_k = min(args.top_k, retrieval.indices.shape[1])
        write_predictions_csv(
            csv_path, query_paths, db_paths, retrieval.indices[:, :top_k], retrieval.distances[:, :top_k]
        )
        print(f"{eval_set.name} predictions: {csv_path}")
    if args.num_preds_to_save:
        out_dir = context.run_dir / "predictions" / eval_set.name
        written = save_prediction_images(
            out_dir, query_paths, db_paths, retrieval.indices, retrieval.distances, eval_set.ground_truth,
            num_preds=min(args.num_preds_to_save, retrieval.indices.shape[1]),
            only_wrong=args.save_only_wrong_preds,
        )
        log.info("%s: %d prediction images in %s", eval_set.name, len(written), out_dir)


def evaluate_set(
    eval_set: EvalSet,
    args: argparse.Namespace,
    context: EvalContext,
    cache: DescriptorCache | None,
    csv_path: Path | None,
) -> dict[str, Any] | None:
    """Describe, search and score one set; returns its results entry (None without ground truth)."""
    descriptors = set_descriptors(eval_set, context, cache)
    per_group = args.per_city and eval_set.db_groups is not None and eval_set.query_groups is not None
    if args.per_city and not per_group:
        log.info("%s has no cities: --per_city does not apply, searching the whole database", eval_set.name)
    num_results = num_results_for(eval_set, per_group, args.top_k)
    retrieval = retrieve(eval_set, descriptors, RECALL_KS, num_results, per_group, storage=args.search_storage)
    save_outputs(eval_set, retrieval, args, context, csv_path)
    if retrieval.recalls is None or retrieval.curve is None:
        log.info("%s has no ground truth: no recall", eval_set.name)
        return None
    print(format_recall_table(eval_set.name, retrieval.recalls))
    plot_recall_curves(
        {eval_set.name: retrieval.curve}, context.run_dir / f"recall_{eval_set.name}.png", f"{eval_set.name} Recall@N"
    )
    return make_set_result(
        retrieval.recalls, retrieval.curve, eval_set.num_queries, eval_set.num_db,
        image_size=list(context.image_size) if context.image_size else "native",
        checkpoint=str(context.ckpt_path) if context.ckpt_path else None,
        weights=context.loaded.weights, architecture=context.loaded.architecture.as_dict(),
        precision=context.precision, per_city=per_group,
    )


def run(args: argparse.Namespace) -> Path:
    """Evaluate every selected set; returns the run folder."""
    check_arguments(args)
    device = resolve_device(args.device)
    precision = resolve_precision(args.precision, device)
    registry = published_registry()
    set_names = select_sets(args, registry)
    csv_paths = predictions_csv_paths(args.save_predictions, set_names)
    roots = data_roots_from_args(args)
    eval_sets = [registry.load(name, roots) for name in set_names]
    for eval_set in eval_sets:
        eval_set.check_files_exist()
        if args.save_only_wrong_preds and not eval_set.has_ground_truth:
            raise ValueError(f"--save_only_wrong_preds: {eval_set.name} has no ground truth to tell wrong ones")

    loaded = load_model(
        args.ckpt_path, architecture_from_args(args), args.random_weights, args.seed,
        mismatch_hint="describe a bare state dict with --backbone, --num_clusters, --cluster_dim, --token_dim "
        "or --agg_config",
    )
    given = [f"--{flag}" for flag in ARCHITECTURE_FLAGS if getattr(args, flag)]
    if loaded.architecture_source == "checkpoint" and given:
        log.warning("the checkpoint carries its architecture: %s ignored", ", ".join(given))
    log.info(
        "%s + %s (architecture from the %s, weights: %s) on %s, %s",
        loaded.architecture.backbone_arch, loaded.architecture.agg_arch,
        "checkpoint" if loaded.architecture_source == "checkpoint" else "command-line flags",
        loaded.weights, device, precision,
    )
    log_cpu_bf16_hint(args.precision, device)
    if args.image_size is None:
        log.info("no --image_size: images at native resolution (sides rounded to multiples of 14), batched by size")
    image_size = tuple(args.image_size) if args.image_size else None
    run_dir = new_run_dir(args.log_dir, args.ckpt_path.stem if args.ckpt_path else "random_weights")
    context = EvalContext(
        loaded, args.ckpt_path, device, precision, image_size, args.batch_size, args.num_workers, run_dir,
        args.channels_last, args.compile, args.decode_on_device,
    )
    cache = DescriptorCache(args.cache_dir) if args.save_descriptors else None

    results: dict[str, dict[str, Any]] = {}
    for eval_set in eval_sets:
        entry = evaluate_set(eval_set, args, context, cache, csv_paths.get(eval_set.name))
        if entry is not None:
            results[eval_set.name] = entry
            write_results_json(run_dir / RESULTS_FILE, results, overwrite=True)
    print(f"run folder: {run_dir}")
    return run_dir


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: a user error is one line ``eval.py: error: ...`` and exit status 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # which SIMD build faiss found
    try:
        run(args)
    except USER_ERRORS as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if isinstance(error, torch.OutOfMemoryError):
            message = f"out of memory: lower --batch_size or --image_size ({message})"
        parser.exit(2, f"{PROG}: error: {message}\n")


if __name__ == "__main__":
    main(sys.argv[1:])
