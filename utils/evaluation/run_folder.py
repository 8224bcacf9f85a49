"""The run folder of an evaluation: a new one per run, or an interrupted one to finish.

While a run works, ``descriptors/<set>/`` holds the descriptors computed so far
(``utils.evaluation.streaming``); a run killed after hours is finished in the same folder with
``eval.py --resume RUN_FOLDER``, which reuses the chunks there after checking them. When the run
ends, the folder is removed unless asked to keep it (its ``.npy`` files load with numpy alone).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from utils.errors import UserFileError
from utils.evaluation.outputs import RUN_FILE
from utils.evaluation.results import new_run_dir

DESCRIPTORS_FOLDER = "descriptors"


def open_run_folder(parent: Path, prefix: str, resume: Path | None = None) -> Path:
    """``resume`` when given (an earlier run's folder), else a new folder ``parent/<prefix>_<time>``.

    Raises:
        UserFileError: ``resume`` is not the folder of a run (no ``run.json`` in it).
    """
    if resume is None:
        return new_run_dir(parent, prefix)
    if not (Path(resume) / RUN_FILE).is_file():
        raise UserFileError(f"resume={resume} is not a run folder (it holds no {RUN_FILE}): give the folder an "
                            "interrupted run printed or created under log_dir")
    return Path(resume)


def finish_run_folder(run_dir: Path, keep_descriptors: bool = False) -> None:
    """Remove the run's descriptor chunks once every output is written, unless ``keep_descriptors``."""
    if not keep_descriptors:
        shutil.rmtree(Path(run_dir) / DESCRIPTORS_FOLDER, ignore_errors=True)
