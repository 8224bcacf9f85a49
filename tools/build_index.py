"""Rebuild the published ``.npy`` evaluation index files from raw downloads.

Usage (from the repository root)::

    python -m tools.build_index msls --msls_root ../data/mapillary --out ../data/datasets
    python -m tools.build_index pitts --mat pitts30k_test.mat --out ../data/datasets
    python -m tools.build_index vprbench --dataset_root ../data/SPEDTEST --name SPED \
        --out ../data/datasets
    python -m tools.build_index gmberton --root ../data/tokyo247 --name tokyo247 \
        --out ../data/datasets

Existing files are never overwritten unless ``--force`` is given.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python tools/build_index.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dataloaders.constants import MSLS_TEST_CITIES, MSLS_VAL_CITIES, POSITIVE_RADIUS_M
from dataloaders.index_builders import (
    IndexFiles,
    gmberton_index_files,
    msls_test_index_files,
    msls_val_index_files,
    pittsburgh_index_files,
    vprbench_index_files,
    write_index_files,
)
from utils.errors import UserError, render

PARAMETER_FLAGS = {"force=True": "--force", "msls_root": "--msls_root", "cities": "--val_cities/--test_cities"}
"""Library settings named in messages -> this tool's flags (:func:`utils.errors.render`)."""
from utils.model_flags import add_out_argument


def build_msls(args: argparse.Namespace) -> IndexFiles:
    """MSLS val and/or test index files (``--splits``)."""
    files: IndexFiles = {}
    if "val" in args.splits:
        files.update(
            msls_val_index_files(args.msls_root, args.val_cities, args.positive_dist_threshold)
        )
    if "test" in args.splits:
        files.update(msls_test_index_files(args.msls_root, args.test_cities))
    return files


def build_pitts(args: argparse.Namespace) -> IndexFiles:
    """Pittsburgh index files from ``--mat``."""
    return pittsburgh_index_files(args.mat, args.name)


def build_vprbench(args: argparse.Namespace) -> IndexFiles:
    """Nordland / SPED index files from a VPR-Bench folder."""
    return vprbench_index_files(args.dataset_root, args.name, args.ground_truth)


def build_gmberton(args: argparse.Namespace) -> IndexFiles:
    """Index files of a gmberton-format folder."""
    return gmberton_index_files(args.root, args.name, args.positive_dist_threshold)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The subcommand and its options; ``args.build`` is the matching ``build_*`` function."""
    parser = argparse.ArgumentParser(
        prog="python -m tools.build_index",
        description="Rebuild the published SALAD .npy evaluation index files from raw downloads.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    def add_command(name: str, help_text: str) -> argparse.ArgumentParser:
        command = commands.add_parser(
            name,
            help=help_text,
            description=help_text,
        )
        add_out_argument(command, folder=True, type=Path, required=True, help="folder to write the .npy files into")
        command.add_argument(
            "--force", action="store_true", help="overwrite existing index files"
        )
        return command

    msls = add_command(
        "msls",
        "MSLS val (msls_val_{dbImages,qImages,qIdx,pIdx}.npy, 740 of 747 queries) and MSLS "
        "test (msls_test_{dbImages,qImages}.npy) from the mapillary_sls tree",
    )
    msls.add_argument(
        "--msls_root", type=Path, required=True, help="folder holding train_val/ and test/"
    )
    msls.add_argument(
        "--splits",
        nargs="+",
        choices=("val", "test"),
        default=["val", "test"],
        help="which index files to build (default: val test)",
    )
    msls.add_argument(
        "--val_cities",
        nargs="+",
        default=list(MSLS_VAL_CITIES),
        help=f"cities under train_val/, in order (default: {' '.join(MSLS_VAL_CITIES)})",
    )
    msls.add_argument(
        "--test_cities",
        nargs="+",
        default=list(MSLS_TEST_CITIES),
        help=f"cities under test/, in order (default: {' '.join(MSLS_TEST_CITIES)})",
    )
    msls.add_argument(
        "--positive_dist_threshold",
        type=float,
        default=POSITIVE_RADIUS_M,
        help="val positive radius in metres, UTM (default: %(default)s)",
    )
    msls.set_defaults(build=build_msls)

    pitts = add_command(
        "pitts", "Pittsburgh <name>_{dbImages,qImages,gt}.npy from a dbStruct .mat file"
    )
    pitts.add_argument("--mat", type=Path, required=True, help="e.g. datasets/pitts30k_test.mat")
    pitts.add_argument(
        "--name",
        default=None,
        help="file prefix (default: the .mat file's stem, e.g. pitts30k_test)",
    )
    pitts.set_defaults(build=build_pitts)

    vprbench = add_command(
        "vprbench", "Nordland / SPED <name>_{dbImages,qImages,gt}.npy from a VPR-Bench folder"
    )
    vprbench.add_argument(
        "--dataset_root", type=Path, required=True, help="folder holding ref/ and query/"
    )
    vprbench.add_argument(
        "--name", required=True, help="file prefix: Nordland or SPED for the published files"
    )
    vprbench.add_argument(
        "--ground_truth",
        type=Path,
        default=None,
        help="VPR-Bench ground_truth_new.npy (default: <dataset_root>/ground_truth_new.npy)",
    )
    vprbench.set_defaults(build=build_vprbench)

    gmberton = add_command(
        "gmberton",
        "<name>_{dbImages,qImages,gt}.npy from a gmberton (VPR-datasets-downloader) folder; "
        "image paths relative to --root",
    )
    gmberton.add_argument(
        "--root",
        type=Path,
        required=True,
        help="folder holding images/test/{database,queries}/ or {database,queries}/",
    )
    gmberton.add_argument("--name", required=True, help="file prefix of the index files")
    gmberton.add_argument(
        "--positive_dist_threshold",
        type=float,
        default=POSITIVE_RADIUS_M,
        help="positive radius in metres, UTM (default: %(default)s)",
    )
    gmberton.set_defaults(build=build_gmberton)

    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Build the files of the chosen subcommand, write them, print their paths."""
    args = parse_args(argv)
    try:
        written = write_index_files(args.build(args), args.out, force=args.force)
    except UserError as error:
        sys.exit(f"build_index {args.command}: error: {render(error, PARAMETER_FLAGS)}")
    for path in written:
        print(path)


if __name__ == "__main__":
    main()
