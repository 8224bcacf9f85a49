"""Evaluation sets: one ``EvalSet`` description, readers for every on-disk format, a registry.

Typical use::

    from dataloaders.eval_sets import DataRoots, load_eval_set

    eval_set = load_eval_set("msls_val", DataRoots(data_dir=Path("../data")))
    eval_set.check_files_exist()
    images = eval_set.images(transform)  # (tensor [3, H, W], index), database first
"""

from dataloaders.eval_sets.base import EvalImages, EvalSet, ImageTransform
from dataloaders.eval_sets.folders import read_image_folders
from dataloaders.eval_sets.gmberton import read_gmberton, read_gmberton_folders
from dataloaders.eval_sets.pittsburgh_mat import read_pittsburgh_mat
from dataloaders.eval_sets.published_index import (
    read_msls_test_index,
    read_msls_val_index,
    read_standard_index,
)
from dataloaders.eval_sets.registry import (
    EVAL_SETS,
    EvalSetRegistry,
    load_eval_set,
    published_registry,
    register_folder_set,
)
from dataloaders.eval_sets.roots import DataRoots, add_data_root_arguments, data_roots_from_args

__all__ = [
    "EVAL_SETS",
    "DataRoots",
    "EvalImages",
    "EvalSet",
    "EvalSetRegistry",
    "ImageTransform",
    "add_data_root_arguments",
    "data_roots_from_args",
    "load_eval_set",
    "published_registry",
    "read_gmberton",
    "read_gmberton_folders",
    "read_image_folders",
    "read_msls_test_index",
    "read_msls_val_index",
    "read_pittsburgh_mat",
    "read_standard_index",
    "register_folder_set",
]
