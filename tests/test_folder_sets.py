"""Image folders given to eval.py: the same folder twice is refused, symlinked subfolders are
followed (once, loops guarded), dangling links are reported; a non-finite positive radius is refused."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest
from PIL import Image

from dataloaders.eval_sets import read_gmberton_folders, read_image_folders
from dataloaders.eval_sets.geo import positives_within
from utils.errors import UserError, render


def image(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (40, 80, 120)).save(path)
    return path


@pytest.mark.parametrize("spelling", ["same", "trailing slash", "symlink"])
def test_the_same_folder_as_database_and_queries_is_refused(tmp_path: Path, spelling: str):
    folder = tmp_path / "db"
    image(folder / "@0.00@0.00@.jpg")
    if spelling == "symlink":
        (tmp_path / "link").symlink_to(folder)
    queries = {"same": folder, "trailing slash": Path(f"{folder}/"), "symlink": tmp_path / "link"}[spelling]
    for read in (lambda: read_image_folders("folders", folder, queries), lambda: read_gmberton_folders("folders", folder, queries)):
        with pytest.raises(UserError, match=r"are the same folder: every query would be found in the database") as info:
            read()
        assert render(info.value, {"database_folder": "--database_folder"}).startswith(f"--database_folder {folder} and")


def test_symlinked_subfolders_are_followed_once_and_dangling_links_reported(tmp_path: Path, caplog):
    outside = tmp_path / "elsewhere"
    linked = [image(outside / f"{index}.jpg") for index in range(2)]
    database = tmp_path / "db"
    own = image(database / "own.jpg")
    (database / "more").symlink_to(outside)  # half the database lives elsewhere
    (database / "more" / "back").symlink_to(database)  # a loop back to the top
    (database / "gone.jpg").symlink_to(tmp_path / "deleted.jpg")
    queries = tmp_path / "queries"
    image(queries / "q.jpg")
    with caplog.at_level(logging.INFO):
        folder_set = read_image_folders("folders", database, queries)
    assert folder_set.db_paths == ["db/more/0.jpg", "db/more/1.jpg", "db/own.jpg"]
    assert len(linked) == 2 and own.is_file()
    warnings = [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]
    assert any("skipped 1 link(s) to nothing (dangling symlinks): gone.jpg" in line for line in warnings)
    assert any("skipped 1 linked folder(s) already listed" in line and "more/back" in line for line in warnings)


@pytest.mark.parametrize("threshold", [math.nan, math.inf, -5.0])
def test_a_positive_radius_that_is_not_a_distance_is_refused_naming_the_parameter(threshold: float):
    with pytest.raises(UserError) as info:
        positives_within([[0.0, 0.0]], [[1.0, 1.0]], threshold)
    line = render(info.value, {"positive_dist_threshold": "--positive_dist_threshold"})
    assert line.startswith(f"--positive_dist_threshold {threshold} is not a distance") and "max_distance" not in line
