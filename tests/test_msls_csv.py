"""One validation of an MSLS CSV (dataloaders.msls_csv), shared by CliqueMining's training reader
(read_msls_city) and the evaluation reader (read_city_folder, tools.build_index msls): a broken
file is refused by both, in the same one line naming the file, the row and the column."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from dataloaders.eval_sets.msls_raw import read_city_folder, read_msls_val
from dataloaders.msls_cliques import read_msls_city
from tests.test_index_builders import MSLS_VAL_TREE, write_msls_tree
from tools import build_index
from utils.errors import UserError

CITY = {"cph": MSLS_VAL_TREE["cph"]}


def msls_tree(tmp_path: Path) -> Path:
    """The raw MSLS tree of city cph (train_val, with positions and clusters), written by the test."""
    return write_msls_tree(tmp_path / "mapillary", "train_val", CITY, with_positions=True)


def set_cell(path: Path, column: str, row: int, value: str) -> None:
    """Write ``value`` as the text of ``column`` in data row ``row`` (0 = line 2) of the CSV ``path``."""
    lines = path.read_text().splitlines()
    fields = lines[1 + row].split(",")
    fields[lines[0].split(",").index(column)] = value
    lines[1 + row] = ",".join(fields)
    path.write_text("\n".join(lines) + "\n")


def refusals(root: Path) -> list[str]:
    """The one-line refusals of the training reader and of the evaluation reader."""
    messages = []
    for read in (lambda: read_msls_city(root, "cph"),
                 lambda: read_city_folder(root, "train_val", "cph", "database", with_positions=True)):
        with pytest.raises(UserError) as info:
            read()
        messages.append(str(info.value))
    return messages


@pytest.mark.parametrize(
    ("column", "value", "shown"),
    [("easting", "nan", "nan"), ("northing", "1e300", "1e+300"), ("easting", "", "nan"), ("northing", "abc", "'abc'"),
     ("easting", "1e400", "inf")],
)
def test_a_position_that_is_not_one_is_refused_by_training_and_evaluation_alike(
        tmp_path: Path, column: str, value: str, shown: str) -> None:
    root = msls_tree(tmp_path)
    table = root / "train_val" / "cph" / "database" / "postprocessed.csv"
    set_cell(table, column, 1, value)
    training, evaluation = refusals(root)
    assert training == evaluation
    assert training.startswith(f"{table}: row 3, column {column} holds {shown}, not a UTM position (")
    assert "\n" not in training


@pytest.mark.parametrize("value", ["nan", "", "2.5", "north"])
def test_a_cluster_id_that_is_not_an_integer_is_refused_by_training(tmp_path: Path, value: str) -> None:
    root = msls_tree(tmp_path)
    table = root / "train_val" / "cph" / "query" / "postprocessed.csv"
    set_cell(table, "unique_cluster", 4, value)
    with pytest.raises(UserError, match=rf"^{table}: row 6, column unique_cluster holds \S+, not an integer \(1 such rows\)"):
        read_msls_city(root, "cph")
    set_cell(table, "unique_cluster", 4, "7.0")  # an integer written as a float is one
    assert read_msls_city(root, "cph").num_clusters == 2


def test_a_pano_flag_that_is_not_one_is_refused_by_training_and_evaluation_alike(tmp_path: Path) -> None:
    root = msls_tree(tmp_path)
    table = root / "train_val" / "cph" / "database" / "raw.csv"
    set_cell(table, "pano", 0, "maybe")
    training, evaluation = refusals(root)
    assert training == evaluation == (f"{table}: row 2, column pano holds 'maybe', not True or False (1 such rows): "
                                      "fix the file or restore it from the MSLS download")


@pytest.mark.parametrize("content", ["", "header"], ids=["0-byte", "header-only"])
def test_an_empty_csv_is_refused_by_training_evaluation_and_build_index(tmp_path: Path, content: str) -> None:
    root = msls_tree(tmp_path)
    table = root / "train_val" / "cph" / "database" / "postprocessed.csv"
    table.write_text(table.read_text().splitlines()[0] + "\n" if content else "")
    expected = (f"{table} holds no rows (only a header)" if content else f"{table} is not a readable CSV") + \
        "; restore it from the MSLS download"
    training, evaluation = refusals(root)
    assert training == evaluation == expected
    with pytest.raises(SystemExit) as info:
        build_index.main(["msls", "--msls_root", str(root), "--out", str(tmp_path / "out"), "--splits", "val",
                          "--val_cities", "cph"])
    assert info.value.code == f"build_index msls: error: {expected}"
    assert not (tmp_path / "out").exists()


def test_a_city_side_with_no_kept_image_is_refused_not_dropped(tmp_path: Path) -> None:
    root = msls_tree(tmp_path)
    subtasks = root / "train_val" / "cph" / "database" / "subtask_index.csv"
    for row in range(len(CITY["cph"]["database"])):
        set_cell(subtasks, "all", row, "False")
    with pytest.raises(UserError, match=r"^MSLS: no image of \S+/cph/database is kept \(subtask_index.csv's 'all' "
                                        r"true and not a panorama\), so city cph would be dropped: [^\n]*cities=$"):
        read_msls_val(root, ["cph"])


def test_a_city_whose_queries_have_no_positive_is_named_in_a_warning(tmp_path: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    root = msls_tree(tmp_path)
    with caplog.at_level(logging.WARNING):
        read_msls_val(root, ["cph"], positive_dist_threshold=25.0)
        assert caplog.text == ""
        index = read_msls_val(root, ["cph"], positive_dist_threshold=1.0)  # every query is 5 m or more away
    assert len(index.query_idx) == 0
    assert "MSLS city cph: none of its 3 queries has a database image within 1 m" in caplog.text
