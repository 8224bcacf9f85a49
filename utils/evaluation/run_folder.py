"""The run folder of an evaluation: a new one per run, or an interrupted one to finish.

While a run works, ``descriptors/<set>/`` holds the descriptors computed so far
(``utils.evaluation.streaming``); a run killed after hours is finished in the same folder with
``eval.py --resume RUN_FOLDER``, which reuses the chunks there after checking them (and sets the
outputs the interrupted attempt wrote aside in ``interrupted_<n>/``). When the run ends, the
folder is removed unless asked to keep it (its ``.npy`` files load with numpy alone), and
``run.json`` records when it finished.

``run.json`` holds the run's identity (what it computes: the checkpoint's SHA-256, the settings,
the sets and their image lists, the chunk size): a resume with another one, or of a run that
finished, is refused by :func:`check_resume` before anything in the folder changes.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from dataloaders.eval_sets.file_lists import FILE_LISTS_FOLDER

from utils.errors import UserError, UserFileError
from utils.evaluation.outputs import RUN_FILE
from utils.evaluation.results import new_run_dir, write_results_json
from utils.evaluation.streaming import differences, read_json_object

log = logging.getLogger(__name__)

DESCRIPTORS_FOLDER = "descriptors"
IDENTITY_FIELD = "identity"
"""``run.json``'s record of what the run computes (``Evaluator.run_identity``)."""
FINISHED_FIELD = "finished"
"""``run.json``'s time the run finished (absent while it has not)."""


def open_run_folder(parent: Path, prefix: str, resume: Path | None = None) -> Path:
    """``resume`` when given (an earlier run's folder, unchanged: see :func:`check_resume` and
    :func:`set_aside_outputs`), else a new folder ``parent/<prefix>_<time>``.

    Raises:
        UserFileError: ``resume`` is not the folder of a run (no ``run.json`` in it).
    """
    if resume is None:
        return new_run_dir(parent, prefix)
    resume = Path(resume)
    if not (resume / RUN_FILE).is_file():
        raise UserFileError(f"resume={resume} is not a run folder (it holds no {RUN_FILE}): give the folder an "
                            "interrupted run printed or created under log_dir")
    return resume


def read_run_info(run_dir: Path) -> dict[str, Any]:
    """The run's ``run.json``.

    Raises:
        UserFileError: it is unreadable or not a JSON object.
    """
    return read_json_object(Path(run_dir) / RUN_FILE, "this run cannot be resumed; start a new run")


def check_resume(run_dir: Path, identity: Mapping[str, Any]) -> None:
    """Refuse to resume ``run_dir`` with ``identity`` (what this attempt would compute) when the run
    finished, or when its ``run.json`` records another identity; changes nothing.

    Raises:
        UserError: finished, or other settings (each named with both values).
    """
    info = read_run_info(run_dir)
    if info.get(FINISHED_FIELD):
        raise UserError(f"resume={run_dir} finished at {info[FINISHED_FIELD]}: nothing to resume (its outputs are "
                        "in that folder); start a new run without resume=")
    recorded = info.get(IDENTITY_FIELD)
    if recorded is None:  # written by an older version: the descriptors' identity is still checked
        log.warning("%s holds no record of the run's settings (an older run): only its descriptors are checked",
                    Path(run_dir) / RUN_FILE)
        return
    current = json.loads(json.dumps(identity))
    if recorded != current:
        raise UserError(f"resume={run_dir} was run with other settings ({differences(recorded, current)}): resume "
                        "with the settings of the interrupted run, or start a new run")


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
    """Once every output is written: record in ``run.json`` that the run finished, then remove the
    run's descriptor chunks unless ``keep_descriptors``."""
    info = read_run_info(run_dir)
    info[FINISHED_FIELD] = datetime.now().isoformat(timespec="seconds")
    write_results_json(Path(run_dir) / RUN_FILE, info, overwrite=True)
    if not keep_descriptors:
        shutil.rmtree(Path(run_dir) / DESCRIPTORS_FOLDER, ignore_errors=True)
