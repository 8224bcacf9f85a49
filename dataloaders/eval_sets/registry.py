"""Evaluation sets by name.

Canonical names (exact): ``msls_val``, ``msls_test``, ``pitts30k_val``, ``pitts30k_test``,
``pitts250k_test``, ``nordland``, ``sped``. The published code's command-line names
(``MSLS``, ``MSLS_Test``, ``Nordland``, ``SPED``, ``pitts30k_test``, ``pitts30k_val``,
``pitts250k_test``) are accepted as aliases, compared after lower-casing; no name is ever
matched by substring. Users add their own sets with ``register_folder_set`` (two image
folders) or ``register_index_set`` (index files written by ``tools/build_index.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from dataloaders.eval_sets.base import EvalSet
from dataloaders.eval_sets.folders import read_image_folders
from dataloaders.eval_sets.gmberton import read_gmberton_folders
from dataloaders.eval_sets.published_index import (
    read_msls_test_index,
    read_msls_val_index,
    read_standard_index,
)
from dataloaders.eval_sets.roots import (
    MSLS_IMAGES,
    NORDLAND_IMAGES,
    PITTSBURGH_IMAGES,
    SPED_IMAGES,
    DataRoots,
    ImageRootOption,
)
from utils.errors import UserError, UserFileError

EvalSetLoader = Callable[[DataRoots], EvalSet]

STANDARD_INDEX_PARTS = ("dbImages", "qImages", "gt")
MSLS_VAL_INDEX_PARTS = ("dbImages", "qImages", "qIdx", "pIdx")
MSLS_TEST_INDEX_PARTS = ("dbImages", "qImages")


@dataclass(frozen=True)
class PublishedSet:
    """A set stored in the published index format.

    Attributes:
        name: canonical name.
        file_prefix: index files are ``<file_prefix>_<part>.npy``.
        index_subfolder: the published repo's ``datasets/<subfolder>/`` holding them.
        index_parts: the ``<part>`` names, in the order ``reader`` takes the files.
        reader: ``reader(name, image_root, *index_files) -> EvalSet``.
        images: which image root the paths are relative to.
    """

    name: str
    file_prefix: str
    index_subfolder: str
    index_parts: tuple[str, ...]
    reader: Callable[..., EvalSet]
    images: ImageRootOption

    def load(self, roots: DataRoots) -> EvalSet:
        """Read the index files found through ``roots``; image paths under its image root."""
        index_files = [
            roots.index_file(f"{self.file_prefix}_{part}.npy", self.index_subfolder, self.name)
            for part in self.index_parts
        ]
        image_root = roots.image_root(self.images, self.name)
        return self.reader(self.name, image_root, *index_files)


def _standard_set(
    name: str, file_prefix: str, subfolder: str, images: ImageRootOption
) -> PublishedSet:
    """A set stored as ``<file_prefix>_{dbImages,qImages,gt}.npy``."""
    return PublishedSet(
        name=name,
        file_prefix=file_prefix,
        index_subfolder=subfolder,
        index_parts=STANDARD_INDEX_PARTS,
        reader=read_standard_index,
        images=images,
    )


PUBLISHED_SETS = (
    PublishedSet(
        name="msls_val",
        file_prefix="msls_val",
        index_subfolder="msls_val",
        index_parts=MSLS_VAL_INDEX_PARTS,
        reader=read_msls_val_index,
        images=MSLS_IMAGES,
    ),
    PublishedSet(
        name="msls_test",
        file_prefix="msls_test",
        index_subfolder="msls_test",
        index_parts=MSLS_TEST_INDEX_PARTS,
        reader=read_msls_test_index,
        images=MSLS_IMAGES,
    ),
    _standard_set("pitts30k_val", "pitts30k_val", "Pittsburgh", PITTSBURGH_IMAGES),
    _standard_set("pitts30k_test", "pitts30k_test", "Pittsburgh", PITTSBURGH_IMAGES),
    _standard_set("pitts250k_test", "pitts250k_test", "Pittsburgh", PITTSBURGH_IMAGES),
    _standard_set("nordland", "Nordland", "Nordland", NORDLAND_IMAGES),
    _standard_set("sped", "SPED", "SPED", SPED_IMAGES),
)

# the published eval.py's --val_datasets names -> canonical names
PUBLISHED_CLI_ALIASES = {
    "MSLS": "msls_val",
    "MSLS_Test": "msls_test",
    "Nordland": "nordland",
    "SPED": "sped",
    "pitts30k_test": "pitts30k_test",
    "pitts30k_val": "pitts30k_val",
    "pitts250k_test": "pitts250k_test",
}


class EvalSetRegistry:
    """Name -> loader of an ``EvalSet``; exact names plus case-insensitive aliases."""

    def __init__(self) -> None:
        self._loaders: dict[str, EvalSetLoader] = {}
        self._aliases: dict[str, str] = {}

    def register(self, name: str, loader: EvalSetLoader, aliases: Sequence[str] = ()) -> None:
        """Register ``loader`` as ``name``; each alias matches after lower-casing.

        Raises:
            ValueError: ``name`` or an alias is already taken.
        """
        if name in self._loaders:
            raise ValueError(f"evaluation set {name!r} is already registered")
        folded = [alias.lower() for alias in aliases]
        taken = [alias for alias in folded if alias in self._aliases]
        if taken:
            raise ValueError(f"alias {taken[0]!r} of {name!r} is already registered")
        self._loaders[name] = loader
        self._aliases.update({alias: name for alias in folded})

    def register_folder_set(
        self,
        name: str,
        database_folder: Path,
        queries_folder: Path,
        positive_dist_threshold: float | None = None,
    ) -> None:
        """Register two image folders as set ``name``.

        With ``positive_dist_threshold`` (metres) the file names must be gmberton-style
        (``@UTM_east@UTM_north@...``) and positives are computed; without it the set has no
        ground truth (descriptors / predictions only).
        """
        database_folder, queries_folder = Path(database_folder), Path(queries_folder)

        def load_folders(_roots: DataRoots) -> EvalSet:
            if positive_dist_threshold is None:
                return read_image_folders(name, database_folder, queries_folder)
            return read_gmberton_folders(
                name, database_folder, queries_folder, positive_dist_threshold
            )

        self.register(name, load_folders)

    def register_index_set(
        self, name: str, image_root: Path, index_dir: Path, file_prefix: str | None = None
    ) -> None:
        """Register ``<index_dir>/<file_prefix>_{dbImages,qImages,gt}.npy`` as set ``name``.

        These are the files ``tools/build_index.py`` writes (``pitts``, ``vprbench``,
        ``gmberton``); image paths in them are relative to ``image_root``.
        """
        prefix = file_prefix or name
        image_root, index_dir = Path(image_root), Path(index_dir)

        def load_index(_roots: DataRoots) -> EvalSet:
            if not image_root.is_dir():
                raise UserFileError(f"{name}: image folder {image_root} does not exist")
            files = [index_dir / f"{prefix}_{part}.npy" for part in STANDARD_INDEX_PARTS]
            return read_standard_index(name, image_root, *files)

        self.register(name, load_index)

    def resolve(self, name: str) -> str:
        """The canonical name for ``name`` (itself, or the set an alias points to).

        Raises:
            ValueError: unknown name, listing the known names and aliases.
        """
        if name in self._loaders:
            return name
        canonical = self._aliases.get(name.lower())
        if canonical is not None:
            return canonical
        raise UserError(
            f"unknown evaluation set {name!r}; known: {', '.join(self.names())} "
            f"(aliases, any case: {', '.join(sorted(self._aliases))})"
        )

    def load(self, name: str, roots: DataRoots) -> EvalSet:
        """Load set ``name`` (canonical or alias) from ``roots``."""
        return self._loaders[self.resolve(name)](roots)

    def names(self) -> list[str]:
        """Canonical names, sorted."""
        return sorted(self._loaders)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        return name in self._loaders or name.lower() in self._aliases


def published_registry() -> EvalSetRegistry:
    """A fresh registry holding the seven published sets and their CLI aliases."""
    registry = EvalSetRegistry()
    aliases_of: dict[str, list[str]] = {}
    for alias, canonical in PUBLISHED_CLI_ALIASES.items():
        aliases_of.setdefault(canonical, []).append(alias)
    for published in PUBLISHED_SETS:
        registry.register(published.name, published.load, aliases_of.get(published.name, ()))
    return registry


EVAL_SETS = published_registry()


def load_eval_set(name: str, roots: DataRoots, registry: EvalSetRegistry | None = None) -> EvalSet:
    """Load evaluation set ``name`` from ``roots`` (default: the module registry ``EVAL_SETS``)."""
    return (registry if registry is not None else EVAL_SETS).load(name, roots)


def register_folder_set(
    name: str,
    database_folder: Path,
    queries_folder: Path,
    positive_dist_threshold: float | None = None,
) -> None:
    """Register two image folders in ``EVAL_SETS`` (see ``EvalSetRegistry.register_folder_set``)."""
    EVAL_SETS.register_folder_set(name, database_folder, queries_folder, positive_dist_threshold)
