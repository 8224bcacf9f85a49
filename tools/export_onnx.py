"""Export a VPR model (any registered backbone + aggregator) to ONNX and check it with onnxruntime.

The model is built from registry names and JSON keyword arguments (or from a released SALAD
configuration), optionally loaded from a checkpoint, and exported with a dynamic batch dimension
and a fixed image size. The ONNX file is then run with onnxruntime on the same random images as
PyTorch at two batch sizes; the largest absolute difference between the descriptors is printed,
and the exit status is 1 when it exceeds the tolerance.

The exporter is ``torch.onnx.export(..., dynamo=False)`` (the TorchScript tracer): the
``torch.export``-based exporter needs ``onnxscript``, which this project does not depend on.
Because the image size is fixed, shape-dependent Python values in the model become constants of
the graph by design; the batch dimension stays dynamic, and checking two batch sizes proves it.

Examples (from the repository root)::

    python -m tools.export_onnx --backbone resnet18 --aggregator GeM \\
        --image_size 224 --output weights/resnet18_gem.onnx
    python -m tools.export_onnx --released dinov2_salad --checkpoint weights/dino_salad.ckpt \\
        --output weights/dino_salad.onnx
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as ``python tools/export_onnx.py``: make ``models`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import onnx
import onnxruntime as ort
import torch

from dataloaders.transforms import IMAGENET_MEAN, IMAGENET_STD
from models.architecture import ARCHITECTURE_FIELDS, Architecture
from models.checkpoint_io import read_architecture
from models.released import RELEASED_MODELS, released_model
from models.pretrained import read_state_dict
from models.vpr_net import VPRNet, build_network, load_network_state
from utils.cli import json_object

log = logging.getLogger(__name__)

INPUT_NAME = "images"
OUTPUT_NAME = "descriptors"
DEFAULT_OPSET = 17
DEFAULT_TOLERANCE = 1e-4
#: Batch size of the example input the graph is traced with (the checks use other sizes too).
TRACE_BATCH_SIZE = 2
#: Warnings of the TorchScript exporter that are expected here (see the module docstring).
EXPECTED_EXPORT_WARNINGS = (
    "You are using the legacy TorchScript-based ONNX export",
    "The feature will be removed",
)


def positive_int(text: str) -> int:
    """Parse a flag value holding a positive integer."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def non_negative_float(text: str) -> float:
    """Parse a flag value holding a number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.export_onnx",
        description=(
            "Export a VPR model to ONNX (dynamic batch, fixed image size) and check it against "
            "PyTorch with onnxruntime. Input: ImageNet-normalised RGB float32 images "
            f"[batch, 3, H, W] named {INPUT_NAME!r}; output: L2-normalised descriptors "
            f"[batch, D] named {OUTPUT_NAME!r}. Exits 1 when the check fails."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    arch = parser.add_argument_group(
        "architecture: --released, or --backbone and --aggregator, or none (a Lightning --checkpoint records it)"
    )
    arch.add_argument(
        "--released",
        choices=sorted(RELEASED_MODELS),
        help="take the architecture (and default image size) of a released SALAD model",
    )
    arch.add_argument("--backbone", help="registered backbone name, e.g. resnet18, dinov2_vitb14")
    arch.add_argument(
        "--backbone_config",
        type=json_object,
        default={},
        help='backbone keyword arguments as JSON, e.g. \'{"layers_to_crop": [4]}\'',
    )
    arch.add_argument("--aggregator", help="registered aggregator name, e.g. GeM, ConvAP, MixVPR, CosPlace, SALAD")
    arch.add_argument(
        "--agg_config",
        type=json_object,
        default={},
        help='aggregator keyword arguments as JSON, e.g. \'{"num_clusters": 64}\' (in_channels comes from the backbone)',
    )
    parser.add_argument(
        "--checkpoint",
        help="weights to load: a state dict or a Lightning checkpoint with backbone.*/aggregator.* keys "
        "(a Lightning checkpoint of this project also gives the architecture); without it the model "
        "keeps the weights it is built with",
    )
    parser.add_argument(
        "--image_size",
        type=positive_int,
        nargs="+",
        metavar="SIZE",
        help="input height and width (one value: square); default: the released model's size, else required",
    )
    parser.add_argument("--output", required=True, help="ONNX file to write (must not exist)")
    parser.add_argument("--opset", type=positive_int, default=DEFAULT_OPSET, help="ONNX opset version")
    parser.add_argument(
        "--check_batch_sizes",
        type=positive_int,
        nargs="+",
        default=[1, 3],
        metavar="N",
        help="batch sizes of the onnxruntime-vs-PyTorch check",
    )
    parser.add_argument(
        "--tolerance",
        type=non_negative_float,
        default=DEFAULT_TOLERANCE,
        help="largest allowed absolute difference between ONNX and PyTorch descriptors",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random check images")
    return parser


def architecture_from_checkpoint(path: str) -> Architecture:
    """The architecture saved in a Lightning checkpoint's hyperparameters."""
    stored = read_architecture(path)
    if stored is None:
        raise ValueError(
            f"checkpoint {path} does not record its architecture (no hyper_parameters with "
            f"{', '.join(ARCHITECTURE_FIELDS)}); give --backbone and --aggregator (or --released NAME)"
        )
    return stored


def resolve_architecture(args: argparse.Namespace) -> Architecture:
    """The architecture from the flags.

    In order: ``--released`` (the released configuration), ``--backbone`` and ``--aggregator``,
    or the hyperparameters of the ``--checkpoint``. ``--backbone_config`` and ``--agg_config``
    update the released or checkpointed configurations. When a checkpoint supplies the weights,
    the backbone's own pretrained weights are not loaded (nor downloaded).
    """
    if args.released is not None:
        if args.backbone is not None or args.aggregator is not None:
            raise ValueError("--released sets the architecture: drop --backbone/--aggregator")
        architecture = released_model(args.released).architecture
    elif args.backbone is not None or args.aggregator is not None:
        if args.backbone is None or args.aggregator is None:
            raise ValueError("give both --backbone and --aggregator (or --released NAME, or a --checkpoint alone)")
        architecture = Architecture(args.backbone, {}, args.aggregator, {})
    elif args.checkpoint is not None:
        architecture = architecture_from_checkpoint(args.checkpoint)
    else:
        raise ValueError("give --backbone and --aggregator, --released NAME, or a --checkpoint that records them")
    architecture = architecture.with_configs(args.backbone_config, args.agg_config)
    return architecture.without_weight_sources() if args.checkpoint is not None else architecture


def checkpoint_state(args: argparse.Namespace) -> dict[str, torch.Tensor]:
    """The ``--checkpoint``'s state dict in this project's layout (a ``--released`` model's own file,
    such as the BoQ authors', is read in its layout)."""
    state_dict = read_state_dict(args.checkpoint)
    if args.released is not None:
        state_dict = released_model(args.released).network_state(state_dict, args.checkpoint)
    return state_dict


def resolve_image_size(args: argparse.Namespace) -> tuple[int, int]:
    """``(H, W)`` from ``--image_size`` (1 or 2 values) or the released model's size."""
    if args.image_size is None:
        if args.released is None:
            raise ValueError("--image_size is required (e.g. --image_size 322 322) unless --released is given")
        return released_model(args.released).image_size
    if len(args.image_size) > 2:
        raise ValueError(f"--image_size takes 1 or 2 values (H [W]), got {args.image_size}")
    height, width = args.image_size if len(args.image_size) == 2 else args.image_size * 2
    return height, width


def export_to_onnx(model: VPRNet, output: Path, image_size: tuple[int, int], opset: int) -> None:
    """Trace ``model`` (in eval mode) into ``output`` with a dynamic batch dimension.

    Graph: ``images [batch, 3, H, W]`` (float32) -> ``descriptors [batch, D]``.
    """
    example = torch.zeros(TRACE_BATCH_SIZE, 3, *image_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        for message in EXPECTED_EXPORT_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        torch.onnx.export(
            model,
            (example,),
            str(output),
            dynamo=False,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=opset,
        )


def add_metadata(path: Path, metadata: dict[str, str]) -> None:
    """Store ``metadata`` as the ONNX model's metadata properties and validate the file."""
    model = onnx.load(str(path), load_external_data=False)
    for key, value in metadata.items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
    onnx.save(model, str(path))
    onnx.checker.check_model(str(path))


def max_onnx_difference(
    model: VPRNet, onnx_path: Path, image_size: tuple[int, int], batch_sizes: Sequence[int], seed: int
) -> float:
    """Largest ``|onnxruntime - PyTorch|`` over the descriptors of random images at each batch size;
    ``inf`` when either holds a NaN or an infinity."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(seed)
    largest = 0.0
    for batch_size in batch_sizes:
        images = torch.randn(batch_size, 3, *image_size, generator=generator)
        with torch.no_grad():
            expected = model(images).numpy()
        (actual,) = session.run([OUTPUT_NAME], {INPUT_NAME: images.numpy()})
        if actual.shape != expected.shape:
            raise RuntimeError(f"ONNX output shape {actual.shape} differs from PyTorch {expected.shape}")
        if not (np.isfinite(actual).all() and np.isfinite(expected).all()):
            return math.inf  # NaN - NaN is no agreement (and max() would hide it)
        largest = max(largest, float(np.abs(actual - expected).max()))
    return largest


def descriptor_size(model: VPRNet, image_size: tuple[int, int]) -> int:
    """``D``: the aggregator's ``out_dim``, or the width of the output for one blank image."""
    out_dim = getattr(model.aggregator, "out_dim", None)
    if isinstance(out_dim, int):
        return out_dim
    with torch.no_grad():
        return int(model(torch.zeros(1, 3, *image_size)).shape[1])


def run(args: argparse.Namespace) -> int:
    """Build, export and check; return the process exit status."""
    output = Path(args.output)
    if output.exists():
        raise FileExistsError(f"--output {output} already exists; remove it or choose another path")
    architecture = resolve_architecture(args)
    image_size = resolve_image_size(args)
    model = build_network(architecture)
    try:
        model.backbone.check_image_size(*image_size)
    except ValueError as error:
        raise ValueError(f"--image_size: {error}") from None
    architecture = model.architecture or architecture
    if args.checkpoint is not None:
        load_network_state(model, checkpoint_state(args), args.checkpoint)
    else:
        log.warning("no --checkpoint: exporting the weights the model is built with")
    model.eval()

    descriptor_dim = descriptor_size(model, image_size)
    output.parent.mkdir(parents=True, exist_ok=True)
    log.info("exporting %s + %s at %dx%d to %s", architecture.backbone_arch, architecture.agg_arch, *image_size, output)
    try:
        export_to_onnx(model, output, image_size, args.opset)
        add_metadata(
            output,
            {
                "backbone": architecture.backbone_arch,
                "backbone_config": json.dumps(architecture.backbone_config),
                "aggregator": architecture.agg_arch,
                "agg_config": json.dumps(architecture.agg_config),
                "image_size": json.dumps(list(image_size)),
                "patch_size": str(model.patch_size),
                "input_mean": json.dumps(IMAGENET_MEAN),
                "input_std": json.dumps(IMAGENET_STD),
                "descriptor_dim": str(descriptor_dim),
            },
        )
    except BaseException as error:
        output.unlink(missing_ok=True)  # our own partial file: it did not exist before
        if isinstance(error, OSError) and error.errno is not None and not isinstance(error, FileNotFoundError):
            raise OSError(error.errno, f"could not write --output {output}: {error.strerror or error}") from None
        raise

    difference = max_onnx_difference(model, output, image_size, args.check_batch_sizes, args.seed)
    sizes = ", ".join(str(size) for size in args.check_batch_sizes)
    height, width = image_size
    print(f"wrote {output}: {INPUT_NAME} [batch, 3, {height}, {width}] -> {OUTPUT_NAME} [batch, {descriptor_dim}]")
    print(f"max |onnxruntime - pytorch| = {difference:.3e} at batch sizes {sizes} (tolerance {args.tolerance:.1e})")
    if not math.isfinite(difference):
        print("FAILED: the descriptors hold NaN or infinite values (are the checkpoint's weights finite?)", file=sys.stderr)
        return 1
    if difference > args.tolerance:
        print(f"FAILED: the ONNX model differs from PyTorch by more than {args.tolerance:.1e}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return run(args)
    except (ValueError, OSError) as error:  # OSError: a full disk, a missing or existing file
        parser.error(str(error))


if __name__ == "__main__":
    sys.exit(main())
