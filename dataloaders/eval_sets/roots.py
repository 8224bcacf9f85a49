"""Where the evaluation images and index files are: user-chosen roots, never fixed paths.

Users of the published code have one data folder with ``mapillary/``, ``Pittsburgh/``,
``Nordland/`` and ``SPEDTEST/``, and the index files in the published repo's ``datasets/``
folder (``datasets/msls_val/``, ``datasets/Pittsburgh/``, ...). ``DataRoots`` takes that
folder (``--data_dir``) plus per-family overrides and an index folder.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from utils.errors import UserError, UserFileError


@dataclass(frozen=True)
class ImageRootOption:
    """One family of image folders.

    Attributes:
        field: the ``DataRoots`` attribute (and command-line flag without ``--``).
        published_folder: its folder name under ``--data_dir`` in the published layout.
        description: what the folder holds, for ``--help``.
    """

    field: str
    published_folder: str
    description: str

    @property
    def flag(self) -> str:
        return f"--{self.field}"


MSLS_IMAGES = ImageRootOption("msls_root", "mapillary", "MSLS tree holding train_val/ and test/")
PITTSBURGH_IMAGES = ImageRootOption(
    "pitts_root", "Pittsburgh", "Pittsburgh folder holding 000/... and queries_real/"
)
NORDLAND_IMAGES = ImageRootOption(
    "nordland_root", "Nordland", "Nordland folder holding ref/ and query/"
)
SPED_IMAGES = ImageRootOption("sped_root", "SPEDTEST", "SPED folder holding ref/ and query/")
IMAGE_ROOT_OPTIONS = (MSLS_IMAGES, PITTSBURGH_IMAGES, NORDLAND_IMAGES, SPED_IMAGES)

DATA_DIR_FLAG = "--data_dir"
INDEX_DIR_FLAG = "--index_dir"
DEFAULT_INDEX_SUBFOLDER = "datasets"


@dataclass
class DataRoots:
    """Roots of the evaluation data.

    Attributes:
        data_dir: one folder in the published layout (``mapillary/``, ``Pittsburgh/``,
            ``Nordland/``, ``SPEDTEST/``, and optionally ``datasets/`` with the index files).
        index_dir: folder of the ``.npy`` index files, either flat or with the published
            per-set subfolders; defaults to ``<data_dir>/datasets``.
        msls_root, pitts_root, nordland_root, sped_root: per-family image roots that
            override ``data_dir``.
    """

    data_dir: Path | None = None
    index_dir: Path | None = None
    msls_root: Path | None = None
    pitts_root: Path | None = None
    nordland_root: Path | None = None
    sped_root: Path | None = None

    def __post_init__(self) -> None:
        for name in ("data_dir", "index_dir", *(option.field for option in IMAGE_ROOT_OPTIONS)):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, Path(value).expanduser())

    def image_root(self, option: ImageRootOption, set_name: str) -> Path:
        """The image folder of ``set_name`` (override first, then ``<data_dir>/<published>``).

        Raises:
            UserError: neither the override nor ``data_dir`` is set.
            UserFileError: the folder does not exist.
        """
        override = getattr(self, option.field)
        if override is not None:
            root, setting = override, f"{option.field}={override}"
        elif self.data_dir is not None:
            root, setting = self.data_dir / option.published_folder, f"data_dir={self.data_dir}"
        else:
            raise UserError(
                f"{set_name}: no image folder given; set {option.field}=FOLDER or data_dir=FOLDER "
                f"(a folder holding {option.published_folder}/)"
            )
        if not root.is_dir():
            raise UserFileError(
                f"{set_name}: image folder {root} does not exist (set by {setting})"
            )
        return root

    def index_root(self, set_name: str) -> tuple[Path, str]:
        """``(folder, the setting that chose it)`` of the index files (``index_dir=...``).

        Raises:
            UserError: neither ``index_dir`` nor ``data_dir`` is set.
        """
        if self.index_dir is not None:
            return self.index_dir, f"index_dir={self.index_dir}"
        if self.data_dir is not None:
            return self.data_dir / DEFAULT_INDEX_SUBFOLDER, f"data_dir={self.data_dir}"
        raise UserError(
            f"{set_name}: no index folder given; set index_dir=FOLDER or data_dir=FOLDER "
            f"(index files in <data_dir>/{DEFAULT_INDEX_SUBFOLDER})"
        )

    def index_file(self, file_name: str, subfolder: str, set_name: str) -> Path:
        """Find ``file_name`` in the index folder, flat or in its published ``subfolder``.

        Raises:
            UserFileError: in neither place, naming both and the setting that chose the folder.
        """
        root, setting = self.index_root(set_name)
        candidates = (root / file_name, root / subfolder / file_name)
        for candidate in candidates:
            if candidate.is_file():
                return candidate
        raise UserFileError(
            f"{set_name}: index file {file_name} not found as {candidates[0]} or {candidates[1]} "
            f"(index folder set by {setting}; build it with `python -m tools.build_index`)"
        )


def add_data_root_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--data_dir``, ``--index_dir`` and the per-family root flags to ``parser``."""
    group = parser.add_argument_group("evaluation data")
    group.add_argument(
        DATA_DIR_FLAG,
        type=Path,
        default=None,
        help="folder in the published layout: mapillary/, Pittsburgh/, Nordland/, SPEDTEST/ "
        "(and datasets/ with the index files)",
    )
    group.add_argument(
        INDEX_DIR_FLAG,
        type=Path,
        default=None,
        help="folder of the .npy index files, flat or with the published subfolders "
        "(default: <data_dir>/datasets)",
    )
    for option in IMAGE_ROOT_OPTIONS:
        group.add_argument(
            option.flag,
            type=Path,
            default=None,
            help=f"{option.description} (default: <data_dir>/{option.published_folder})",
        )


def data_roots_from_args(args: argparse.Namespace) -> DataRoots:
    """``DataRoots`` from arguments added by ``add_data_root_arguments``."""
    return DataRoots(
        data_dir=args.data_dir,
        index_dir=args.index_dir,
        **{option.field: getattr(args, option.field) for option in IMAGE_ROOT_OPTIONS},
    )
