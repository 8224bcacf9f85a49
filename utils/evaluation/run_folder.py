"""The run folder of an evaluation: a new one per run, or an interrupted one to finish.

While a run works, ``descriptors/<set>/`` holds the descriptors computed so far
(``utils.evaluation.streaming``); a run killed after hours is finished in the same folder with
``eval.py --resume RUN_FOLDER``, which reuses the chunks there after checking them (and sets the
outputs the interrupted attempt wrote aside in ``interrupted_<n>/``). When the run ends, the
folder is removed unless asked to keep it (its ``.npy`` files load with numpy alone).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from dataloaders.eval_sets.file_lists import FILE_LISTS_FOLDER

from utils.errors import UserFileError
from utils.evaluation.outputs import RUN_FILE
from utils.evaluation.results import new_run_dir

log = logging.getLogger(__name__)

DESCRIPTORS_FOLDER = "descriptors"


def open_run_folder(parent: Path, prefix: str, resume: Path | None = None) -> Path:
    """``resume`` when given (an earlier run's folder), else a new folder ``parent/<prefix>_<time>``.

    Raises:
        UserFileError: ``resume`` is not the folder of a run (no ``run.json`` in it).
    """
    if resume is None:
        return new_run_dir(parent, prefix)
    resume = Path(resume)
    if not (resume / RUN_FILE).is_file():
        raise UserFileError(f"resume={resume} is not a run folder (it holds no {RUN_FILE}): give the folder an "
                            "interrupted run printed or created under log_dir")
    set_aside_outputs(resume)
    return resume


def set_aside_outputs(run_dir: Path) -> Path | None:
    """Move the outputs an interrupted attempt wrote (results, figures, predictions) into
    ``run_dir/interrupted_<n>/``, so that the resumed run writes its own and nothing is lost;
    ``run.json``, the descriptors and the file lists stay. Returns the folder, if anything moved."""
    kept = {RUN_FILE, DESCRIPTORS_FOLDER, FILE_LISTS_FOLDER}
    outputs = [path for path in sorted(run_dir.iterdir()) if path.name not in kept and not path.name.startswith("interrupted_")]
    if not outputs:
        return None
    number = 1 + sum(1 for path in run_dir.glob("interrupted_*"))
    aside = run_dir / f"interrupted_{number}"
    aside.mkdir()
    for path in outputs:
        path.rename(aside / path.name)
    log.info("%s: the outputs of the interrupted attempt moved to %s", run_dir, aside.name)
    return aside


def finish_run_folder(run_dir: Path, keep_descriptors: bool = False) -> None:
    """Remove the run's descriptor chunks once every output is written, unless ``keep_descriptors``."""
    if not keep_descriptors:
        shutil.rmtree(Path(run_dir) / DESCRIPTORS_FOLDER, ignore_errors=True)
