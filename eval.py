"""Evaluate a VPR model on place-recognition sets: Recall@K tables, results.json, predictions.

Examples (from the repository root)::

    python eval.py --released dinov2_salad --ckpt_path weights/dino_salad.ckpt --batch_size 256 \\
        --data_dir ../data --val_datasets MSLS Nordland
    python eval.py --ckpt_path weights/dino_salad_512_32.ckpt --num_clusters 16 --cluster_dim 32 \\
        --token_dim 32 --image_size 322 --data_dir ../data --val_datasets SPED
    python eval.py --ckpt_path last.ckpt --database_folder db/ --queries_folder q/ \\
        --no_labels --save_predictions predictions.csv
    python eval.py --released dinov2_salad=weights/dino_salad.ckpt dinov2_boq=weights/dinov2_12288.pth \\
        --ckpt_path last.ckpt --data_dir ../data --val_datasets MSLS SPED --cache_descriptors

Every run writes into a new folder ``<--log_dir>/<checkpoint name>_<time>/`` (``run.json`` with
what ran, ``results.json`` with each labelled set's recall, ``recall_<set>.png``, predictions CSVs,
the MSLS challenge file, prediction images, descriptor files: see ``utils/evaluation/outputs.py``;
``index.html``, a report page with the recalls, curves and a gallery of queries; ``eval.log``,
the console output).
With several models (``--released`` with several names, or ``NAME=FILE``), the folder is
``<--log_dir>/comparison_<time>/`` with the table (``comparison.md``, ``.csv``, ``.tex``) and a run
folder per model (``utils/evaluation/comparison.py``).

This is a thin command line over ``utils.evaluation.pipeline`` (the evaluation itself, usable from
Python without argparse) and ``utils.evaluation.outputs`` (one writer per output).
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import logging
import shlex
import sys
from pathlib import Path

import torch

from dataloaders.eval_sets import (
    DataRoots,
    EvalSet,
    EvalSetRegistry,
    add_data_root_arguments,
    data_roots_from_args,
    published_registry,
)
from dataloaders.constants import POSITIVE_RADIUS_M
from dataloaders.eval_sets.file_lists import FILE_LISTS_FOLDER, remembered_file_lists
from models.architecture import Architecture
from models.compared import ReleasedEntry, checkpoint_row, parse_released_entry, released_row
from models.loading import LoadedNetwork, load_network
from models.registry import AGGREGATORS
from models.released import RELEASE_NAMES, released_model
from utils.checkpoint_files import checkpoint_file, checkpoint_name
from utils.cli import flag_names
from utils.evaluation.comparison import compare_models
from models.image_size import resolve_image_size as image_size_rule
from utils.evaluation.outputs import (
    IN_RUN_FOLDER,
    RUN_FILE,
    DescriptorFiles,
    MslsChallengeFile,
    OutputWriter,
    PredictionImages,
    PredictionsCsv,
    RecallCurvePlot,
    RecallTable,
    ResultsJson,
    write_run_info,
)
from utils.evaluation.pipeline import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_SIDE,
    DEFAULT_NUM_WORKERS,
    DEFAULT_TOP_K,
    DescribedModel,
    EvalOptions,
    Evaluator,
    SpeedOptions,
    evaluate_sets,
)
from utils.evaluation.console_log import LOG_FILE as CONSOLE_LOG_FILE
from utils.evaluation.console_log import ConsoleLog
from utils.evaluation.distributed import context_from_environment
from utils.evaluation.inference import CPU_BF16_FLAGS, CPUINFO, cpu_bf16_support
from utils.evaluation.streaming import DEFAULT_CHUNK_SIZE
from utils.evaluation.run_folder import (
    DESCRIPTORS_FOLDER,
    IDENTITY_FIELD,
    check_resume,
    finish_run_folder,
    open_run_folder,
    set_aside_outputs,
)
from utils.evaluation.metrics import RECALL_KS
from utils.evaluation.report import ReportPage
from utils.evaluation.results import new_run_dir
from utils.errors import UserError, UserFileError, render
from utils.model_flags import add_model_arguments
from utils.user_cache import first_time

log = logging.getLogger("eval")

PROG = "eval.py"
DEFAULT_VAL_SETS = ("MSLS", "MSLS_Test", "pitts30k_test", "pitts250k_test", "Nordland", "SPED")
DEFAULT_RELEASE = "dinov2_salad"
"""The architecture of a bare state dict when no flag describes it: the paper's model."""
SALAD_SIZE_FLAGS = ("num_clusters", "cluster_dim", "token_dim")
ARCHITECTURE_FLAGS = ("released", "backbone", "backbone_config", "agg_arch", *SALAD_SIZE_FLAGS, "agg_config")
INTERRUPTED_STATUS = 130
"""Exit status after Ctrl-C (128 + SIGINT, as a shell reports it)."""
RENAMED_PARAMETERS = {"only_wrong=True": "--save_only_wrong_preds", "verify=False": "--no_verify"}
"""Library parameters whose eval.py flag has another name; every other flag is ``--<parameter>``."""


def released_entry(text: str) -> ReleasedEntry:
    """``--released`` ``NAME`` or ``NAME=FILE``."""
    try:
        return parse_released_entry(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


class ReleasedModels(argparse.Action):
    """``--released``: one name is the model of ``--ckpt_path`` (``args.released``); several, or a
    ``NAME=FILE``, are the rows of a comparison table (``args.compare``)."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:  # type: ignore[override]
        single = len(values) == 1 and values[0].path is None
        namespace.released = values[0].name if single else None
        namespace.compare = None if single else list(values)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    default = released_model(DEFAULT_RELEASE).architecture
    model = add_model_arguments(
        parser,
        checkpoint_help="Lightning checkpoint of this project (architecture inside) or a bare state dict (needs the "
        "architecture flags below)",
        default_backbone=default.backbone_arch, default_aggregator=default.agg_arch,
        released={
            "nargs": "+", "type": released_entry, "action": ReleasedModels, "metavar": "NAME[=FILE]",
            "help": f"a released model ({', '.join(RELEASE_NAMES)}): downloaded through torch.hub's cache, or read "
            f"from --ckpt_path in its authors' layout; its evaluation image size unless --image_size is given "
            f"(default architecture of a bare state dict: {DEFAULT_RELEASE}'s). Several, or NAME=FILE (the release's "
            "file, a path or an http(s):// or file:// URL; a name alone downloads it): one comparison table, rows "
            "the models (each at its own evaluation size; --ckpt_path adds yours), columns the sets' R@1/5/10",
        },
    )
    parser.set_defaults(compare=None)
    for name in SALAD_SIZE_FLAGS:
        model.add_argument(f"--{name}", type=int, help=f"SALAD {name} of a bare state dict (default {default.agg_config[name]})")
    model.add_argument(
        "--no_verify", action="store_true",
        help="with --released: do not check the SHA-256 of a --ckpt_path named as the released file (a fine-tune "
        "of your own saved under that name)",
    )
    model.add_argument(
        "--random_weights", action="store_true",
        help="evaluate the architecture with its initial random weights (an untrained baseline)",
    )
    model.add_argument("--seed", type=int, default=1, help="seed of --random_weights (default 1)")

    inference = parser.add_argument_group("inference")
    inference.add_argument(
        "--image_size", type=int, nargs="+", metavar="SIZE",
        help="resize every image to H W, or to N x N with one value (322 as published); default: the released "
        "model's size with --released, else native resolution with sides rounded to multiples of the backbone's "
        "patch size, images batched by size",
    )
    inference.add_argument(
        "--max_side", type=int, default=DEFAULT_MAX_SIDE,
        help=f"at native resolution, scale an image whose longer side exceeds this down to it first (default "
        f"{DEFAULT_MAX_SIDE}; 0: no cap; a line names the images it scales)",
    )
    inference.add_argument(
        "--draft_decode", action="store_true",
        help="decode JPEGs at 1/2, 1/4 or 1/8 scale when --image_size allows it: faster on large photos, but not "
        "the published preprocessing: descriptors move slightly (figures in docs/FIGURES.md)",
    )
    inference.add_argument(
        "--exif_transpose", action="store_true",
        help="turn images upright by their EXIF orientation tag (phone photos); the published code ignores it",
    )
    inference.add_argument(
        "--batch_size", type=int, default=DEFAULT_BATCH_SIZE,
        help=f"images per forward pass (default {DEFAULT_BATCH_SIZE}); at native resolution, images of one size, and no more "
        "pixels than this many images of 322 x 322",
    )
    inference.add_argument(
        "--num_workers", type=int, default=DEFAULT_NUM_WORKERS,
        help=f"image-loading processes (default: the CPU cores, at most 16 as published; here {DEFAULT_NUM_WORKERS})",
    )
    inference.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    inference.add_argument(
        "--precision", choices=("auto", "fp32", "fp16", "bf16"), default="auto",
        help="auto: fp16 autocast on CUDA (as published), fp32 on CPU (bf16: faster on CPUs with AVX-512 BF16 or AMX)",
    )

    data = parser.add_argument_group("sets")
    data.add_argument(
        "--val_datasets", "--val_set_names", dest="val_datasets", nargs="+",
        help="sets to evaluate: published names in any case, or this project's "
        f"(default: {' '.join(DEFAULT_VAL_SETS)})",
    )
    data.add_argument(
        "--database_folder", type=Path, help="with --queries_folder: evaluate two folders of images"
    )
    data.add_argument("--queries_folder", type=Path, help="folder of the query images")
    data.add_argument("--folder_set_name", default="folders", help="name of the folder set (default folders)")
    data.add_argument(
        "--positive_dist_threshold", type=float, default=POSITIVE_RADIUS_M,
        help="metres within which a database image is a positive, positions from @UTM_east@UTM_north@ file "
        f"names (default {POSITIVE_RADIUS_M:g})",
    )
    data.add_argument(
        "--no_labels", action="store_true",
        help="the folders carry no positions: no recall, only predictions (see --save_predictions)",
    )
    data.add_argument(
        "--per_city", action="store_true",
        help="search each query only among the database images of its own city (sets with cities: MSLS)",
    )
    data.add_argument(
        "--recall_values", type=int, nargs="+", default=list(RECALL_KS), metavar="K",
        help=f"the K of Recall@K (default: {' '.join(map(str, RECALL_KS))})",
    )

    speed = parser.add_argument_group("speed (the same results, up to rounding)")
    speed.add_argument(
        "--channels_last", action="store_true",
        help="run convolutions in channels-last layout (faster for ResNet backbones on CPU, no effect on ViTs)",
    )
    speed.add_argument(
        "--decode_on_device", action="store_true",
        help="decode JPEGs on --device with torchvision (nvJPEG on CUDA), resize and normalise there, instead of "
        "PIL in the workers (for GPUs that outrun the workers; other formats and EXIF-rotated photos still use "
        "PIL; descriptors agree with PIL's closely, not bit for bit)",
    )
    speed.add_argument(
        "--compile", action="store_true",
        help="torch.compile the model (compiling takes a while on the first batch; same descriptors)",
    )
    speed.add_argument(
        "--search_storage", choices=["fp32", "fp16"], default="fp32",
        help="how the search stores the database: fp16 halves its memory (e.g. SF-XL), recall@1 unchanged on a 1M x 8448 bench",
    )
    add_data_root_arguments(parser)

    output = parser.add_argument_group("output")
    output.add_argument(
        "--log_dir", type=Path, default=Path("logs/eval"), help="parent of the run folders (default logs/eval)"
    )
    output.add_argument(
        "--save_predictions", type=Path, metavar="FILE.csv", nargs="?", const=IN_RUN_FOLDER,
        help="write each query's top-K predictions, squared L2 distances and whether each is correct: alone, "
        "predictions_<set>.csv in the run folder; with FILE.csv there (FILE_<set>.csv when several sets run)",
    )
    output.add_argument(
        "--top_k", type=int, default=DEFAULT_TOP_K, help=f"predictions per query in the predictions CSVs (default {DEFAULT_TOP_K}, at most "
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
        help="write each set's descriptors, image paths (and positions where known) and settings to "
        "descriptors_<set>.npz in the run folder (read with numpy alone)",
    )
    output.add_argument(
        "--cache_descriptors", action="store_true",
        help="reuse descriptors cached in --cache_dir by an earlier run with the same weights, images and settings "
        "(checked by checksum), and cache new ones",
    )
    output.add_argument(
        "--cache_dir", type=Path, default=Path("logs/descriptor_cache"),
        help="descriptor cache folder (default logs/descriptor_cache)",
    )
    output.add_argument(
        "--resume", type=Path, metavar="RUN_FOLDER",
        help="finish an interrupted run in its folder (same flags as that run: other settings, or a run that "
        "finished, are refused): the descriptor chunks already there are checked and reused, the missing ones computed",
    )
    output.add_argument(
        "--chunk_size", type=int, default=DEFAULT_CHUNK_SIZE,
        help=f"images per chunk of descriptors written to the run folder as they are computed (default {DEFAULT_CHUNK_SIZE})",
    )
    output.add_argument(
        "--keep_descriptors", action="store_true",
        help=f"keep the run folder's {DESCRIPTORS_FOLDER}/ (memory-mappable .npy per set and side) when the run ends",
    )
    output.add_argument(
        "--cache_content_hash", action="store_true",
        help="with --cache_descriptors: tell images apart by a hash of their content (reads every file) rather "
        "than by their size and modification time",
    )
    return parser


def check_arguments(args: argparse.Namespace) -> None:
    """Reject flag combinations that cannot work, before anything is loaded."""
    if args.ckpt_path is None and not args.random_weights and args.compare is None and args.released is None:
        raise UserError("--ckpt_path is required (or --released NAME, or --random_weights with the architecture flags)")
    if args.compare is not None and (args.random_weights or args.save_predictions):
        raise UserError("a comparison of several --released models takes neither --random_weights nor "
                        "--save_predictions (each model's predictions are kept in its own folder)")
    local = checkpoint_file(args.ckpt_path) if args.ckpt_path is not None else None  # None: a URL, fetched when loaded
    if local is not None and local.is_dir():
        raise UserError(f"--ckpt_path {args.ckpt_path} is a folder; give the checkpoint file in it (e.g. last.ckpt)")
    if local is not None and not local.is_file():
        raise UserFileError(f"--ckpt_path {args.ckpt_path} does not exist")
    if (args.database_folder is None) != (args.queries_folder is None):
        raise UserError("--database_folder and --queries_folder go together")
    if args.no_labels and args.database_folder is None:
        raise UserError("--no_labels applies to --database_folder/--queries_folder")
    if args.save_only_wrong_preds and args.num_preds_to_save < 1:
        raise UserError("--save_only_wrong_preds needs --num_preds_to_save K >= 1")
    if args.num_preds_to_save < 0:
        raise UserError(f"--num_preds_to_save must not be negative, got {args.num_preds_to_save}")
    if args.max_side < 0:
        raise UserError(f"--max_side must be a positive number of pixels (0: no cap), got {args.max_side}")
    if args.image_size is not None and (len(args.image_size) > 2 or min(args.image_size) < 1):
        raise UserError(f"--image_size takes one or two positive integers (N, or H W), got {args.image_size}")


def architecture_from_args(args: argparse.Namespace) -> Architecture:
    """The architecture of a bare state dict, from the flags: ``--released``'s (the paper's
    model by default), with ``--backbone``, ``--agg_arch`` and the argument flags over it.

    ``--num_clusters``, ``--cluster_dim`` and ``--token_dim`` fill the aggregator arguments of those
    names (SALAD's); given for an aggregator without them they are an error.
    """
    base = released_model(args.released or DEFAULT_RELEASE).architecture
    backbone = args.backbone or base.backbone_arch
    agg_arch = args.agg_arch or base.agg_arch
    backbone_config = dict(base.backbone_config) if backbone == base.backbone_arch else {}
    agg_config = dict(base.agg_config) if agg_arch == base.agg_arch else {}
    parameters = inspect.signature(AGGREGATORS.get(agg_arch)).parameters
    for name in SALAD_SIZE_FLAGS:
        value = getattr(args, name)
        if value is None:
            continue
        if name not in parameters:
            raise UserError(f"--{name} is not an argument of aggregator {agg_arch}; use --agg_config")
        agg_config[name] = value
    return Architecture(backbone, backbone_config, agg_arch, agg_config).with_configs(args.backbone_config, args.agg_config)


def resolve_image_size(args: argparse.Namespace) -> tuple[int, int] | None:
    """``(height, width)`` from ``--image_size`` (one value: a square) or ``--released``; ``None`` for
    native resolution (``models.image_size.resolve_image_size``, the rule every tool shares)."""
    return image_size_rule(args.image_size, args.released)


def log_cpu_bf16_hint(name: str, device: torch.device, cpuinfo: Path = CPUINFO) -> None:
    """Say so (once per machine: ``utils.user_cache.first_time``) when ``--precision auto`` keeps
    float32 on a CPU that runs bf16 matrix products natively."""
    if name != "auto" or device.type != "cpu":
        return
    features = cpu_bf16_support(cpuinfo) or {}
    native = [CPU_BF16_FLAGS[flag] for flag, present in features.items() if present]
    if native and first_time("cpu_bf16_hint"):
        log.info("this CPU has %s: --precision bf16 can run several times faster than the float32 that auto "
                 "keeps on CPUs, with descriptors close to float32's (figures in docs/FIGURES.md)", ", ".join(native))


def select_sets(args: argparse.Namespace, registry: EvalSetRegistry) -> list[str]:
    """Canonical names of the sets to evaluate (registering the folder set, if any)."""
    names = list(args.val_datasets) if args.val_datasets else []
    if args.database_folder is not None:
        threshold = None if args.no_labels else args.positive_dist_threshold
        registry.register_folder_set(args.folder_set_name, args.database_folder, args.queries_folder, threshold)
        names.append(args.folder_set_name)
    canonical = [registry.resolve(name) for name in names or DEFAULT_VAL_SETS]
    return list(dict.fromkeys(canonical))


def load_sets(args: argparse.Namespace, registry: EvalSetRegistry, set_names: list[str], roots: DataRoots) -> list[EvalSet]:
    """The sets, loaded; folders whose file names carry no positions suggest ``--no_labels``."""
    try:
        return [registry.load(name, roots) for name in set_names]
    except UserError as error:
        if args.database_folder is None or args.no_labels or "not a gmberton file name" not in str(error):
            raise
        raise UserError(f"{render(error)}; folders without positions in their file names: add --no_labels "
                         "(predictions only, no recall)") from None


def eval_options(args: argparse.Namespace) -> EvalOptions:
    """The library's options from the flags."""
    return EvalOptions(
        image_size=resolve_image_size(args),
        max_side=args.max_side or None,
        draft_decode=args.draft_decode,
        exif_transpose=args.exif_transpose,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        device=args.device,
        precision=args.precision,
        recall_values=tuple(args.recall_values),
        per_city=args.per_city,
        top_k=args.top_k,
        speed=SpeedOptions(args.channels_last, args.decode_on_device, args.compile, args.search_storage),
        cache_dir=args.cache_dir if args.cache_descriptors else None,
        cache_content_hash=args.cache_content_hash,
        chunk_size=args.chunk_size,
    )


def output_writers(args: argparse.Namespace, run_dir: Path) -> list[OutputWriter]:
    """The run's outputs, results first: a recall is on disk before any optional output runs."""
    writers: list[OutputWriter] = [ResultsJson(run_dir), RecallTable(), RecallCurvePlot(run_dir), MslsChallengeFile(run_dir)]
    writers.append(PredictionsCsv(run_dir, args.save_predictions, args.top_k))
    if args.num_preds_to_save:
        writers.append(PredictionImages(run_dir, args.num_preds_to_save, args.save_only_wrong_preds))
    if args.save_descriptors:
        writers.append(DescriptorFiles(run_dir))
    writers.append(ReportPage(run_dir))  # last: it shows the recall curves
    return writers


def log_model(args: argparse.Namespace, loaded: LoadedNetwork, evaluator: Evaluator) -> None:
    """One line on what is evaluated and how, and the hints that go with it."""
    given = [f"--{flag}" for flag in ARCHITECTURE_FLAGS if getattr(args, flag)]
    if loaded.architecture_source == "checkpoint" and given:
        log.warning("the checkpoint carries its architecture: %s ignored", ", ".join(given))
    if loaded.architecture_source == "checkpoint":
        source = "the checkpoint"
    elif given:
        source = "the command-line flags"
    else:
        source = f"the defaults: {DEFAULT_RELEASE}'s"
    log.info(
        "%s + %s (architecture from %s, weights: %s) on %s, %s",
        loaded.architecture.backbone_arch, loaded.architecture.agg_arch, source, loaded.weights,
        evaluator.device, evaluator.precision,
    )
    log_cpu_bf16_hint(args.precision, evaluator.device)
    if evaluator.preprocessing.native:
        max_side = evaluator.preprocessing.max_side
        log.info(
            "no --image_size: images at native resolution (sides rounded to multiples of %d, the patch size; %s), "
            "batched by size", loaded.network.patch_size, f"longer sides capped at {max_side}" if max_side else "no cap",
        )


def run_name(args: argparse.Namespace) -> str:
    """The run folder's name before its time: the checkpoint's, the release's, or ``random_weights``."""
    if args.ckpt_path is not None:
        return Path(checkpoint_name(args.ckpt_path)).stem
    return "random_weights" if args.random_weights else args.released


def run(args: argparse.Namespace) -> Path:
    """Evaluate every selected set; returns the run folder (its ``eval.log`` holds the console output)."""
    with ConsoleLog() as console:
        return run_logged(args, console)


def run_logged(args: argparse.Namespace, console: ConsoleLog) -> Path:
    """:func:`run`, its output recorded by ``console``."""
    check_arguments(args)
    options = eval_options(args)
    registry = published_registry()
    set_names = select_sets(args, registry)
    PredictionsCsv.check_requested(args.save_predictions, set_names)  # before any work
    roots = data_roots_from_args(args)
    with remembered_file_lists(args.resume / FILE_LISTS_FOLDER if args.resume else None) as file_lists:
        eval_sets = load_sets(args, registry, set_names, roots)
    for eval_set in eval_sets:
        eval_set.check_files_exist()
    if args.save_only_wrong_preds:
        PredictionImages(args.log_dir, args.num_preds_to_save, only_wrong=True).check(eval_sets)
    if args.compare is not None:
        return run_comparison(args, options, set_names, eval_sets)

    loaded = load_network(
        args.ckpt_path, release=args.released, architecture=architecture_from_args(args), verify=not args.no_verify,
        random_weights=args.random_weights, seed=args.seed,
        mismatch_hint="describe a bare state dict with --released, --backbone_arch, --num_clusters, --cluster_dim, "
        "--token_dim or --agg_config",
    )
    context = context_from_environment()
    try:
        run_dir = context.broadcast(
            open_run_folder(args.log_dir, run_name(args), args.resume)
            if context.is_main else None
        )
        options = dataclasses.replace(options, descriptor_dir=run_dir / DESCRIPTORS_FOLDER)
        described = DescribedModel(loaded.network, loaded.architecture.as_dict(), loaded.weights, loaded.path)
        evaluator = Evaluator(described, options, context)
        try:
            if args.resume is not None:
                refusal = context.broadcast(resume_refusal(run_dir, evaluator, eval_sets) if context.is_main else None)
                if refusal is not None:
                    raise refusal
            if not context.is_main:  # describes its share of each set; rank 0 searches and writes
                evaluate_sets(evaluator, eval_sets)
                return run_dir
            print(f"run folder: {run_dir}", flush=True)
            console.open(run_dir / CONSOLE_LOG_FILE)
            log_model(args, loaded, evaluator)
            if args.resume is None:
                write_run_info(run_dir, evaluator, set_names, {
                    "processes": context.world_size, IDENTITY_FIELD: evaluator.run_identity(eval_sets),
                })
                file_lists.save(run_dir / FILE_LISTS_FOLDER)
            evaluate_sets(evaluator, eval_sets, output_writers(args, run_dir))
            finish_run_folder(run_dir, keep_descriptors=args.keep_descriptors)
        except KeyboardInterrupt:
            if (run_dir / RUN_FILE).is_file():  # else the folder is no run yet: nothing to resume
                raise Interrupted(run_dir) from None
            raise
    finally:
        context.close()
    print(f"run folder: {run_dir}")
    return run_dir


class Interrupted(KeyboardInterrupt):
    """Ctrl-C once the run folder ``run_dir`` exists: the run can be resumed there."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__(f"resume with --resume {run_dir}")
        self.run_dir = run_dir


def resume_refusal(run_dir: Path, evaluator: Evaluator, eval_sets: list[EvalSet]) -> UserError | None:
    """Why ``run_dir`` cannot be resumed with these flags (``None``: it can, and the outputs of the
    interrupted attempt are then set aside). A refused resume changes nothing in the folder."""
    try:
        check_resume(run_dir, evaluator.run_identity(eval_sets))
        for eval_set in eval_sets:
            evaluator.check_stored(eval_set)
    except UserError as error:
        return error
    set_aside_outputs(run_dir)
    return None


def resume_command(argv: list[str], run_dir: Path) -> str:
    """The command that resumes ``run_dir``: ``argv`` with ``--resume run_dir`` (instead of any given)."""
    kept, skip = [], False
    for argument in argv:
        if skip or argument.startswith("--resume="):
            skip = False
            continue
        if argument == "--resume":
            skip = True
            continue
        kept.append(argument)
    return shlex.join([PROG, *kept, "--resume", str(run_dir)])


def run_comparison(args: argparse.Namespace, options: EvalOptions, set_names: list[str], eval_sets: list[EvalSet]) -> Path:
    """One table of the ``--released`` models and the ``--ckpt_path`` one (last); returns its folder."""
    rows = [released_row(entry.name, entry.path, verify=not args.no_verify) for entry in args.compare]
    if args.ckpt_path is not None:
        rows.append(checkpoint_row(args.ckpt_path, architecture_from_args(args)))
    run_dir = new_run_dir(args.log_dir, "comparison")
    table = compare_models(rows, eval_sets, options, run_dir, lambda folder: output_writers(args, folder), set_names)
    print(table.markdown())
    print(f"run folder: {run_dir}")
    return run_dir


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: a user error (:class:`utils.errors.UserError`) is one line
    ``eval.py: error: ...`` and exit status 2; Ctrl-C one line naming the command that resumes the
    run, and exit status 130; any other exception is a bug and keeps its traceback."""
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # which SIMD build faiss found
    try:
        run(args)
    except UserError as error:
        parser.exit(2, f"{PROG}: error: {render(error, flag_names(parser, RENAMED_PARAMETERS))}\n")
    except torch.OutOfMemoryError as error:
        parser.exit(2, f"{PROG}: error: out of memory: lower --batch_size or --image_size ({render(error)})\n")
    except Interrupted as stop:
        parser.exit(INTERRUPTED_STATUS, f"\n{PROG}: interrupted: resume with {resume_command(argv, stop.run_dir)}\n")
    except KeyboardInterrupt:
        parser.exit(INTERRUPTED_STATUS, f"\n{PROG}: interrupted (nothing on disk to resume from)\n")


if __name__ == "__main__":
    main(sys.argv[1:])
