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

    python -m tools.export_onnx --backbone_arch resnet18 --agg_arch GeM \\
        --image_size 224 --out weights/resnet18_gem.onnx
    python -m tools.export_onnx --released dinov2_salad --ckpt_path weights/dino_salad.ckpt \\
        --out weights/dino_salad.onnx
    python -m tools.export_onnx --ckpt_path logs/<run>/checkpoints/last.ckpt --out last.onnx

The older spellings ``--checkpoint``, ``--backbone``, ``--aggregator`` and ``--output`` still work.
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
from models.architecture import Architecture
from models.loading import load_network
from models.released import released_model
from models.vpr_net import VPRNet, build_network
from models.image_size import resolve_image_size as image_size_rule
from utils.atomic_write import replaced_atomically
from utils.cli import flag_names
from utils.errors import UserError, UserFileExistsError, UserWriteError, render
from utils.model_flags import add_model_arguments, add_out_argument

log = logging.getLogger(__name__)

FLAGS = {"image_size": "--image_size", "released": "--released"}
"""How this tool spells the library's parameters in its messages (``utils.errors.render``)."""
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
    add_model_arguments(
        parser,
        title="model: --released, or --backbone_arch and --agg_arch, or none (a Lightning --ckpt_path records them)",
        checkpoint_help="weights to load: a state dict or a Lightning checkpoint with backbone.*/aggregator.* keys "
        "(a Lightning checkpoint of this project also gives the architecture and the image size it was validated "
        "at); without it the model keeps the weights it is built with",
    )
    parser.add_argument(
        "--image_size",
        type=positive_int,
        nargs="+",
        metavar="SIZE",
        help="input height and width (one value: square); default: the released model's size, else the size the "
        "--ckpt_path was validated at",
    )
    add_out_argument(parser, required=True, metavar="FILE.onnx", help="ONNX file to write (must not exist)")
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


def resolve_architecture(args: argparse.Namespace) -> Architecture | None:
    """The architecture from the flags: ``--released`` (the released configuration), or
    ``--backbone_arch`` and ``--agg_arch``, with ``--backbone_config`` and ``--agg_config`` over it;
    ``None`` for a ``--ckpt_path`` alone (the architecture it records).
    """
    if args.released is not None:
        if args.backbone is not None or args.agg_arch is not None:
            raise UserError("--released sets the architecture: drop --backbone_arch/--agg_arch")
        architecture = released_model(args.released).architecture
    elif args.backbone is not None or args.agg_arch is not None:
        if args.backbone is None or args.agg_arch is None:
            raise UserError("give both --backbone_arch and --agg_arch (or --released NAME, or a --ckpt_path alone)")
        architecture = Architecture(args.backbone, {}, args.agg_arch, {})
    elif args.ckpt_path is not None:
        return None
    else:
        raise UserError("give --backbone_arch and --agg_arch, --released NAME, or a --ckpt_path that records them")
    return architecture.with_configs(args.backbone_config, args.agg_config)


def export_network(args: argparse.Namespace, architecture: Architecture | None) -> VPRNet:
    """The network to export, in eval mode: the ``--ckpt_path``'s (read by ``models.loading.load_network``:
    a file of this project, or a ``--released`` model's file in its authors' layout), else
    ``architecture`` (:func:`resolve_architecture`) as built."""
    if args.ckpt_path is not None:
        return load_network(args.ckpt_path, release=args.released, architecture=architecture).network
    log.warning("no --ckpt_path: exporting the weights the model is built with")
    return build_network(architecture).eval()  # type: ignore[arg-type]


def resolve_image_size(args: argparse.Namespace) -> tuple[int, int]:
    """``(H, W)``: ``--image_size`` (1 or 2 values), the released model's size, or the size the
    ``--ckpt_path`` was validated at (``models.image_size.resolve_image_size``)."""
    return image_size_rule(args.image_size, args.released, args.ckpt_path, required=True)


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
    output = Path(args.out)
    if output.exists():
        raise UserFileExistsError(f"--out {output} already exists; remove it or choose another path")
    architecture = resolve_architecture(args)
    image_size = resolve_image_size(args)
    model = export_network(args, architecture)
    try:
        model.backbone.check_image_size(*image_size)
    except UserError as error:
        raise UserError(f"--image_size: {error}") from None
    architecture = model.architecture

    descriptor_dim = descriptor_size(model, image_size)
    output.parent.mkdir(parents=True, exist_ok=True)
    log.info("exporting %s + %s at %dx%d to %s", architecture.backbone_arch, architecture.agg_arch, *image_size, output)
    sizes = ", ".join(str(size) for size in args.check_batch_sizes)
    height, width = image_size
    try:  # written beside --out, checked, then renamed: a failed check, a full disk or a kill leaves nothing at --out
        with replaced_atomically(output, exclusive=True) as temporary:
            export_to_onnx(model, temporary, image_size, args.opset)
            add_metadata(
                temporary,
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
            difference = max_onnx_difference(model, temporary, image_size, args.check_batch_sizes, args.seed)
            print(f"max |onnxruntime - pytorch| = {difference:.3e} at batch sizes {sizes} (tolerance {args.tolerance:.1e})")
            failure = check_failure(difference, args.tolerance)
            if failure is not None:
                raise FailedCheck(failure)
    except FailedCheck as failed:
        print(f"FAILED: {failed}; nothing written to --out {output}", file=sys.stderr)
        return 1
    except FileExistsError:
        raise UserFileExistsError(f"--out {output} appeared during the export; remove it or choose another path") from None
    except UserWriteError as error:
        reason = getattr(error.__cause__, "strerror", None) or error
        raise UserWriteError(f"could not write --out {output}: {reason}", error.errno) from None
    print(f"wrote {output}: {INPUT_NAME} [batch, 3, {height}, {width}] -> {OUTPUT_NAME} [batch, {descriptor_dim}]")
    return 0


class FailedCheck(Exception):
    """The exported model's descriptors are not PyTorch's: the export is not kept."""


def check_failure(difference: float, tolerance: float) -> str | None:
    """Why ``difference`` (largest ``|onnxruntime - PyTorch|``) fails the check, or None."""
    if not math.isfinite(difference):
        return "the descriptors hold NaN or infinite values (are the checkpoint's weights finite?)"
    if difference > tolerance:
        return f"the ONNX model differs from PyTorch by more than {tolerance:.1e}"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return run(args)
    except UserError as error:
        parser.error(render(error, flag_names(parser, {"ckpt_path": "--checkpoint"})))


if __name__ == "__main__":
    sys.exit(main())
