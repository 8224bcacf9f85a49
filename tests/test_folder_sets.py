"""Evaluation sets: the same folder as database and queries, an image listed twice, a set without
queries and a non-finite positive radius are refused; symlinked subfolders are followed (once, loops
guarded), dangling links reported; positions that are not positions are named with their file."""

from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dataloaders.eval_sets import EvalSet, read_gmberton_folders, read_image_folders
from dataloaders.geo import positives_within
from dataloaders.eval_sets.msls_raw import read_city_folder
from utils.errors import UserError, render
from utils.evaluation.pipeline import evaluate_sets


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


@pytest.mark.parametrize("layout", ["queries inside the database", "links to database images"])
def test_queries_that_are_database_images_are_refused(tmp_path: Path, layout: str):
    folder = tmp_path / "db"
    images = [image(folder / f"@{index}.00@0.00@.jpg") for index in range(2)]
    if layout == "queries inside the database":
        queries = folder / "queries"
        image(queries / "@5.00@0.00@.jpg")
    else:
        queries = tmp_path / "queries"
        queries.mkdir()
        (queries / "@1.00@0.00@.jpg").symlink_to(images[1])
    for read in (lambda: read_image_folders("folders", folder, queries), lambda: read_gmberton_folders("folders", folder, queries)):
        with pytest.raises(UserError, match=rf"^1 of the 1 images of queries_folder={queries} are images of "
                                            rf"database_folder={folder} \(first: .*\): each would be found"):
            read()


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


def test_a_database_image_listed_twice_is_refused(tmp_path: Path):
    with pytest.raises(UserError, match=r"^index: the database lists db/a.jpg more than once \(1 repeated entries\)"):
        EvalSet("index", tmp_path, ["db/a.jpg", "db/b.jpg", "db/a.jpg"], ["q/1.jpg"], ground_truth=[np.array([0])])


def test_a_set_without_queries_is_refused_before_the_database_pass(tmp_path: Path):
    class NoPass:
        def evaluate(self, eval_set: EvalSet) -> None:
            pytest.fail("the database was described")

    empty = EvalSet("folders", tmp_path, ["db/a.jpg", "db/b.jpg"], [])
    with pytest.raises(UserError, match=r"^folders: no query image \(its database has 2\)"):
        evaluate_sets(NoPass(), [empty])


def test_a_radius_no_query_has_a_positive_within_is_refused_before_the_database_pass(tmp_path: Path, caplog):
    class NoPass:
        def evaluate(self, eval_set: EvalSet) -> None:
            pytest.fail("the database was described")

    image(tmp_path / "db" / "@0.00@0.00@.jpg")
    image(tmp_path / "queries" / "@3.00@0.00@.jpg")
    image(tmp_path / "queries" / "@90.00@0.00@.jpg")
    for radius in (0.0, 1.0):  # the queries are 3 m and 90 m away
        eval_set = read_gmberton_folders("folders", tmp_path / "db", tmp_path / "queries", positive_dist_threshold=radius)
        with pytest.raises(UserError, match=r"^folders: none of the 2 queries has a database image within the positive "
                                            r"radius \(positive_dist_threshold=\), so every recall would be 0"):
            evaluate_sets(NoPass(), [eval_set])
    some = read_gmberton_folders("folders", tmp_path / "db", tmp_path / "queries", positive_dist_threshold=25.0)
    with caplog.at_level(logging.WARNING), pytest.raises(pytest.fail.Exception):
        evaluate_sets(NoPass(), [some])  # one query has a positive: evaluated, with a warning
    assert "folders: 1 of the 2 queries have no database image within the positive radius" in caplog.text


@pytest.mark.parametrize("value", ["nan", "inf", "1e300"])
def test_a_position_that_is_not_one_is_named_with_its_file(tmp_path: Path, small_toy_world: Path, value: str):
    named = image(tmp_path / "db" / f"@{value}@4180045.9@.jpg")
    image(tmp_path / "queries" / "@0.0@0.0@.jpg")
    with pytest.raises(UserError, match=rf"^{named}: UTM position {value}, 4180045.9 in the file name is not a position"):
        read_gmberton_folders("folders", tmp_path / "db", tmp_path / "queries")

    city = tmp_path / "mapillary"
    shutil.copytree(small_toy_world / "mapillary" / "train_val" / "sf", city / "train_val" / "sf")
    table = city / "train_val" / "sf" / "query" / "postprocessed.csv"
    lines = table.read_text().splitlines()
    fields = lines[2].split(",")
    fields[3] = value  # northing of the second row
    table.write_text("\n".join([*lines[:2], ",".join(fields), *lines[3:]]) + "\n")
    with pytest.raises(UserError, match=rf"^{table}: row 3, column northing holds {value.replace('1e300', '1e[+]300')}, "
                                        r"not a UTM position \(NaN, infinite, not a number or beyond 1e\+09 m; 1 such rows\)"):
        read_city_folder(city, "train_val", "sf", "query", with_positions=True)


def test_queries_identical_to_database_images_are_counted_in_a_warning(tmp_path: Path, caplog):
    from utils.evaluation.retrieval import retrieve

    eval_set = EvalSet("folders", tmp_path, ["db/a.jpg", "db/b.jpg"], ["q/a_copy.jpg", "q/c.jpg"])
    database = np.eye(4, dtype=np.float32)[:2]
    queries = np.stack([database[0], np.array([0.0, 0.6, 0.8, 0.0], dtype=np.float32)])  # a copy, and another image
    with caplog.at_level(logging.WARNING):
        retrieve(eval_set, np.concatenate([database, queries]), ks=(1,))
    assert "folders: 1 of the 2 queries have a database image of identical descriptor" in caplog.text
