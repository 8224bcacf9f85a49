"""Evaluation sets: the registry, the published index reader on real files, every other reader."""

from __future__ import annotations

import gzip
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from dataloaders.eval_sets import (
    DataRoots,
    EvalSet,
    load_eval_set,
    published_registry,
    read_gmberton,
    read_image_folders,
    read_pittsburgh_mat,
)
from dataloaders.constants import POSITIVE_RADIUS_M
from dataloaders.geo import positives_within
from dataloaders.image_io import ImageDecodeError

FIXTURES = Path(__file__).parent / "fixtures"
SALAD_INDEX = FIXTURES / "salad_index"

# counts from docs/DATASETS.md
NORDLAND_DB, NORDLAND_Q = 27_592, 2_760
SPED_DB, SPED_Q = 607, 607
MSLS_VAL_DB, MSLS_VAL_Q_ALL, MSLS_VAL_Q = 18_871, 747, 740
MSLS_TEST_Q = 1_135
MSLS_TEST_CITIES = ["miami", "athens", "buenosaires", "stockholm", "bengaluru", "kampala"]
MSLS_KEY_LENGTH = 22
CANONICAL_NAMES = (
    "msls_val", "msls_test", "pitts30k_val", "pitts30k_test", "pitts250k_test", "nordland", "sped"
)


def to_tensor(image: Image.Image) -> torch.Tensor:
    """Stand-in eval transform: ``[3, H, W]`` float in [0, 1]."""
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)


def write_jpeg(path: Path, size: tuple[int, int] = (32, 24)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (10, 200, 30)).save(path, format="JPEG")
    return path


def copy_fixture(name: str, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(SALAD_INDEX / name, folder / name)


def nordland_db_images() -> np.ndarray:
    with gzip.open(SALAD_INDEX / "Nordland_dbImages.npy.gz") as file:
        return np.load(file)


# ---------------------------------------------------------------- published index: real files


def test_nordland_reads_published_files_from_flat_index_dir(tmp_path: Path) -> None:
    index_dir = tmp_path / "index"
    for name in ("Nordland_qImages.npy", "Nordland_gt.npy"):
        copy_fixture(name, index_dir)
    np.save(index_dir / "Nordland_dbImages.npy", nordland_db_images())
    (tmp_path / "nordland_images").mkdir()

    eval_set = load_eval_set(
        "nordland", DataRoots(index_dir=index_dir, nordland_root=tmp_path / "nordland_images")
    )

    assert (eval_set.num_db, eval_set.num_queries) == (NORDLAND_DB, NORDLAND_Q)
    assert eval_set.db_paths[5] == "ref/0000005.jpg"
    assert eval_set.query_paths[17] == "query/0000017.jpg"
    # docs/DATASETS.md: gt[i] = {10i-1, 10i, 10i+1} within range
    for i, positives in enumerate(eval_set.ground_truth):
        expected = [j for j in (10 * i - 1, 10 * i, 10 * i + 1) if 0 <= j < NORDLAND_DB]
        assert positives.dtype == np.int64
        assert positives.tolist() == expected


def test_sped_2d_ground_truth_becomes_one_row_per_query(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    for name in ("SPED_dbImages.npy", "SPED_qImages.npy", "SPED_gt.npy"):
        copy_fixture(name, data_dir / "datasets" / "SPED")  # the published repo layout
    (data_dir / "SPEDTEST").mkdir()

    eval_set = load_eval_set("SPED", DataRoots(data_dir=data_dir))

    assert eval_set.name == "sped"
    assert eval_set.image_root == data_dir / "SPEDTEST"
    assert (eval_set.num_db, eval_set.num_queries) == (SPED_DB, SPED_Q)
    assert [row.tolist() for row in eval_set.ground_truth] == [[i] for i in range(SPED_Q)]


def test_msls_val_queries_are_the_740_selected_by_qidx(tmp_path: Path) -> None:
    index_dir = tmp_path / "datasets"
    for name in ("msls_val_qImages.npy", "msls_val_qIdx.npy", "msls_val_pIdx.npy"):
        copy_fixture(name, index_dir / "msls_val")
    db_images = [f"train_val/cph/database/images/{i:022d}.jpg" for i in range(MSLS_VAL_DB)]
    np.save(index_dir / "msls_val" / "msls_val_dbImages.npy", np.array(db_images))
    (tmp_path / "mapillary").mkdir()

    eval_set = load_eval_set(
        "MSLS", DataRoots(index_dir=index_dir, msls_root=tmp_path / "mapillary")
    )

    all_queries = np.load(SALAD_INDEX / "msls_val_qImages.npy").tolist()
    assert len(all_queries) == MSLS_VAL_Q_ALL
    assert eval_set.name == "msls_val"
    assert (eval_set.num_db, eval_set.num_queries) == (MSLS_VAL_DB, MSLS_VAL_Q)
    assert len(set(all_queries) - set(eval_set.query_paths)) == MSLS_VAL_Q_ALL - MSLS_VAL_Q
    assert all(len(positives) > 0 for positives in eval_set.ground_truth)
    # cities cph then sf, taken from the paths
    assert set(eval_set.query_groups) == {"cph", "sf"}
    first_sf = eval_set.query_groups.index("sf")
    assert set(eval_set.query_groups[first_sf:]) == {"sf"}
    for path, group in zip(eval_set.query_paths, eval_set.query_groups):
        assert path.split("/")[1] == group
    assert all(len(key) == MSLS_KEY_LENGTH and "/" not in key for key in eval_set.query_keys)


def test_msls_test_has_no_ground_truth_and_city_groups(tmp_path: Path) -> None:
    index_dir = tmp_path / "datasets"
    copy_fixture("msls_test_qImages.npy", index_dir)
    db_images = np.array(
        [
            f"test/{city}/database/images/{city[:2]}{i:020d}.jpg"
            for city in MSLS_TEST_CITIES
            for i in range(3)
        ],
        dtype=object,
    )
    np.save(index_dir / "msls_test_dbImages.npy", db_images, allow_pickle=True)
    (tmp_path / "mapillary").mkdir()

    eval_set = load_eval_set(
        "msls_Test", DataRoots(index_dir=index_dir, msls_root=tmp_path / "mapillary")
    )

    assert eval_set.name == "msls_test"
    assert eval_set.num_queries == MSLS_TEST_Q
    assert eval_set.ground_truth is None and not eval_set.has_ground_truth
    assert set(eval_set.query_groups) == set(MSLS_TEST_CITIES)
    assert eval_set.db_groups == [city for city in MSLS_TEST_CITIES for _ in range(3)]
    assert all(len(key) == MSLS_KEY_LENGTH for key in eval_set.query_keys)
    assert eval_set.db_keys[0] == f"mi{0:020d}"


# ---------------------------------------------------------------- registry and roots


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("msls_val", "msls_val"),
        ("MSLS", "msls_val"),
        ("msls", "msls_val"),
        ("MSLS_Test", "msls_test"),
        ("MSLS_TEST", "msls_test"),
        ("Nordland", "nordland"),
        ("SPED", "sped"),
        ("pitts30k_val", "pitts30k_val"),
        ("PITTS30K_TEST", "pitts30k_test"),
        ("pitts250k_test", "pitts250k_test"),
    ],
)
def test_aliases_resolve_case_insensitively(name: str, canonical: str) -> None:
    assert published_registry().resolve(name) == canonical


@pytest.mark.parametrize("name", ["pitts", "nordland_summer", "msls_val2", "Pitts30k", "sped ", ""])
def test_unknown_or_partial_names_are_rejected_listing_known_ones(name: str) -> None:
    with pytest.raises(ValueError, match="unknown evaluation set") as error:
        published_registry().resolve(name)
    for known in CANONICAL_NAMES:
        assert known in str(error.value)


def test_missing_roots_name_the_parameters(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="set index_dir=FOLDER or data_dir=FOLDER"):
        load_eval_set("sped", DataRoots())
    index_dir = tmp_path / "index"
    for name in ("SPED_dbImages.npy", "SPED_qImages.npy", "SPED_gt.npy"):
        copy_fixture(name, index_dir)
    with pytest.raises(ValueError, match="set sped_root=FOLDER or data_dir=FOLDER"):
        load_eval_set("sped", DataRoots(index_dir=index_dir))
    missing_root = tmp_path / "no_such_folder"
    with pytest.raises(FileNotFoundError, match=rf"{missing_root} does not exist \(set by sped_root={missing_root}\)"):
        load_eval_set("sped", DataRoots(index_dir=index_dir, sped_root=missing_root))


def test_missing_index_file_names_both_places_and_parameter(tmp_path: Path) -> None:
    (tmp_path / "Pittsburgh").mkdir()
    with pytest.raises(FileNotFoundError) as error:
        load_eval_set("pitts30k_test", DataRoots(data_dir=tmp_path))
    message = str(error.value)
    assert str(tmp_path / "datasets" / "pitts30k_test_dbImages.npy") in message
    assert str(tmp_path / "datasets" / "Pittsburgh" / "pitts30k_test_dbImages.npy") in message
    assert f"set by data_dir={tmp_path};" in message


def test_override_root_wins_over_data_dir(tmp_path: Path) -> None:
    for name in ("SPED_dbImages.npy", "SPED_qImages.npy", "SPED_gt.npy"):
        copy_fixture(name, tmp_path / "data" / "datasets")
    (tmp_path / "data" / "SPEDTEST").mkdir()
    (tmp_path / "elsewhere").mkdir()
    roots = DataRoots(data_dir=tmp_path / "data", sped_root=tmp_path / "elsewhere")
    assert load_eval_set("sped", roots).image_root == tmp_path / "elsewhere"


def test_register_folder_set_with_and_without_labels(tmp_path: Path) -> None:
    for name in ("@0@0@x@.jpg", "@100@0@x@.jpg"):
        write_jpeg(tmp_path / "db" / name)
    write_jpeg(tmp_path / "q" / "@3@4@x@.jpg")
    registry = published_registry()
    registry.register_folder_set(
        "tokyo", tmp_path / "db", tmp_path / "q", positive_dist_threshold=5.0
    )
    registry.register_folder_set("plain", tmp_path / "db", tmp_path / "q")

    labelled = registry.load("tokyo", DataRoots())
    unlabelled = registry.load("plain", DataRoots())

    assert [positives.tolist() for positives in labelled.ground_truth] == [[0]]
    assert unlabelled.ground_truth is None
    assert unlabelled.num_db == 2 and unlabelled.num_queries == 1
    with pytest.raises(ValueError, match="already registered"):
        registry.register_folder_set("tokyo", tmp_path / "db", tmp_path / "q")
    with pytest.raises(ValueError, match="unknown evaluation set"):
        registry.resolve("TOKYO")  # user names are exact


# ---------------------------------------------------------------- EvalSet behaviour


def make_set(tmp_path: Path, existing: list[str], missing: list[str]) -> EvalSet:
    for name in existing:
        write_jpeg(tmp_path / name)
    paths = existing + missing
    return EvalSet("toy", tmp_path, db_paths=paths[:-1], query_paths=paths[-1:])


def test_check_files_exist_reports_count_first_paths_and_root(tmp_path: Path) -> None:
    missing = [f"gone/{i}.jpg" for i in range(7)]
    eval_set = make_set(tmp_path, ["a.jpg", "b.jpg"], missing)
    with pytest.raises(FileNotFoundError) as error:
        eval_set.check_files_exist()
    message = str(error.value)
    assert "7 of 9" in message
    assert str(tmp_path / "gone" / "0.jpg") in message
    assert str(tmp_path / "gone" / "6.jpg") not in message  # only the first few
    assert f"under {tmp_path}" in message
    make_set(tmp_path, ["a.jpg", "b.jpg"], []).check_files_exist()  # nothing missing: no error


def test_images_are_database_then_queries_with_their_index(tmp_path: Path) -> None:
    write_jpeg(tmp_path / "db.jpg", size=(40, 30))
    write_jpeg(tmp_path / "sub" / "query.jpg", size=(20, 10))
    eval_set = EvalSet("toy", tmp_path, ["db.jpg"], [str(tmp_path / "sub" / "query.jpg")])

    assert eval_set.image_paths() == [tmp_path / "db.jpg", tmp_path / "sub" / "query.jpg"]
    images = eval_set.images(to_tensor)
    assert len(images) == 2
    db_image, db_index = images[0]
    query_image, query_index = images[1]
    assert (db_index, query_index) == (0, 1)
    assert db_image.shape == (3, 30, 40) and query_image.shape == (3, 10, 20)


def test_decode_failure_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg at all")
    eval_set = EvalSet("toy", tmp_path, ["broken.jpg"], [])
    with pytest.raises(ImageDecodeError, match="broken.jpg"):
        eval_set.images(to_tensor)[0]


def test_ground_truth_must_match_queries_and_database(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="ground_truth has 1 entries, expected 2"):
        EvalSet("toy", tmp_path, ["a.jpg"], ["q1.jpg", "q2.jpg"], ground_truth=[np.array([0])])
    with pytest.raises(ValueError, match="database index"):
        EvalSet("toy", tmp_path, ["a.jpg"], ["q1.jpg"], ground_truth=[np.array([1])])


# ---------------------------------------------------------------- other formats


def test_positives_radius_is_inclusive_and_sorted() -> None:
    db = np.array([[100.0, 0.0], [15.0, 20.0], [0.0, 0.0], [15.0, 20.01], [24.9, 0.0]])
    positives = positives_within(db, np.array([[0.0, 0.0], [500.0, 500.0]]))  # the published 25 m
    assert POSITIVE_RADIUS_M == 25.0
    assert positives[0].tolist() == [1, 2, 4]  # (15, 20) is exactly 25 m away
    assert positives[1].tolist() == []
    assert all(found.dtype == np.int64 for found in positives)
    assert positives_within(db, np.array([[0.0, 0.0]]), 20.0)[0].tolist() == [2]


def write_pittsburgh_mat(
    path: Path,
    db_names: list[str],
    db_utm: np.ndarray,
    query_names: list[str],
    query_utm: np.ndarray,
) -> None:
    """A dbStruct with the fields in the order docs/DATASETS.md documents."""

    def cells(names: list[str]) -> np.ndarray:
        array = np.empty((len(names), 1), dtype=object)
        for i, name in enumerate(names):
            array[i, 0] = name
        return array

    db_struct = {
        "whichSet": "test",
        "dbImageFns": cells(db_names),
        "utmDb": db_utm.T,
        "qImageFns": cells(query_names),
        "utmQ": query_utm.T,
        "numImages": len(db_names),
        "numQueries": len(query_names),
        "posDistThr": 25,
        "posDistSqThr": 625,
        "nonTrivPosDistSqThr": 100,
    }
    scipy.io.savemat(path, {"dbStruct": db_struct})


PITTS_DB = [
    "000/000000_pitch1_yaw1.jpg", "000/000000_pitch1_yaw2.jpg", "000/000001_pitch1_yaw1.jpg"
]
PITTS_DB_UTM = np.array([[585000.0, 4477000.0], [585020.0, 4477000.0], [585100.0, 4477000.0]])
PITTS_Q = ["000/000005_pitch1_yaw1.jpg", "000/000006_pitch1_yaw1.jpg"]
PITTS_Q_UTM = np.array([[585010.0, 4477000.0], [585045.0, 4477000.0]])
# by hand: query 0 is 10 m from db 0 and db 1; query 1 is 25 m from db 1 (inclusive), 55 m from db 2
PITTS_GT = [[0, 1], [1]]


def test_pittsburgh_mat_reader(tmp_path: Path) -> None:
    mat_file = tmp_path / "pitts30k_test.mat"
    write_pittsburgh_mat(mat_file, PITTS_DB, PITTS_DB_UTM, PITTS_Q, PITTS_Q_UTM)

    eval_set = read_pittsburgh_mat(mat_file, image_root=tmp_path)

    assert eval_set.name == "pitts30k_test"
    assert eval_set.db_paths == PITTS_DB
    assert eval_set.query_paths == [f"queries_real/{name}" for name in PITTS_Q]
    assert [positives.tolist() for positives in eval_set.ground_truth] == PITTS_GT


def test_pittsburgh_mat_without_db_struct_is_rejected(tmp_path: Path) -> None:
    scipy.io.savemat(tmp_path / "other.mat", {"something": np.zeros(3)})
    with pytest.raises(ValueError, match="other.mat.*dbStruct"):
        read_pittsburgh_mat(tmp_path / "other.mat", image_root=tmp_path)


def gmberton_name(east: float, north: float) -> str:
    return f"@{east:.2f}@{north:.2f}@17@T@37.0@-122.0@pano@@0@@@@201901@@.jpg"


@pytest.mark.parametrize("nested", [True, False])
def test_gmberton_folder_reader(tmp_path: Path, nested: bool) -> None:
    base = tmp_path / "images" / "test" if nested else tmp_path
    # written out of order: the reader sorts file names
    for east in (200.0, 100.0, 130.0):
        write_jpeg(base / "database" / gmberton_name(east, 50.0))
    write_jpeg(base / "queries" / gmberton_name(110.0, 50.0))
    write_jpeg(base / "queries" / gmberton_name(900.0, 50.0))

    eval_set = read_gmberton(tmp_path, "toy_gmberton")

    prefix = "images/test/" if nested else ""
    assert eval_set.db_paths == [
        f"{prefix}database/{gmberton_name(east, 50.0)}" for east in (100.0, 130.0, 200.0)
    ]
    assert eval_set.query_paths[0] == f"{prefix}queries/{gmberton_name(110.0, 50.0)}"
    # 10 m from 100, 20 m from 130, 90 m from 200; the second query has none
    assert [positives.tolist() for positives in eval_set.ground_truth] == [[0, 1], []]
    eval_set.check_files_exist()


def test_gmberton_bad_file_name_is_named(tmp_path: Path) -> None:
    write_jpeg(tmp_path / "database" / gmberton_name(1.0, 2.0))
    write_jpeg(tmp_path / "queries" / "holiday_photo.jpg")
    with pytest.raises(ValueError, match="holiday_photo.jpg"):
        read_gmberton(tmp_path, "bad")


def test_gmberton_root_without_splits_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="database,queries"):
        read_gmberton(tmp_path, "empty")


def test_unlabelled_folders_recursive_sorted_images_only(tmp_path: Path) -> None:
    for name in ("b/2.png", "a/1.JPG", "c.jpeg"):
        write_jpeg(tmp_path / "database" / name)
    (tmp_path / "database" / "notes.txt").write_text("not an image")
    write_jpeg(tmp_path / "queries" / "q.jpg")

    eval_set = read_image_folders("mine", tmp_path / "database", tmp_path / "queries")

    assert eval_set.db_paths == ["database/a/1.JPG", "database/b/2.png", "database/c.jpeg"]
    assert eval_set.query_paths == ["queries/q.jpg"]
    assert eval_set.ground_truth is None
    assert eval_set.image_paths()[0] == tmp_path / "database" / "a" / "1.JPG"


APPLE_DOUBLE = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + bytes(64)
"""The start of a macOS AppleDouble file (``._name``): resource fork and metadata, not an image."""


def test_folders_take_every_format_pillow_decodes_and_say_what_they_skip(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    database = tmp_path / "database"
    database.mkdir()
    for name in ("a.webp", "b.tif", "c.bmp", "d.JPG"):
        Image.new("RGB", (32, 24), (10, 200, 30)).save(database / name)
    for name in ("notes.txt", "gps.csv", "e.json", "f.yaml"):
        (database / name).write_text("not an image")
    write_jpeg(tmp_path / "queries" / "q.jpg")

    with caplog.at_level(logging.INFO, logger="dataloaders.eval_sets.folders"):
        eval_set = read_image_folders("mine", database, tmp_path / "queries")

    assert eval_set.db_paths == ["database/a.webp", "database/b.tif", "database/c.bmp", "database/d.JPG"]
    skipped = [record.getMessage() for record in caplog.records if "skipped" in record.getMessage()]
    assert skipped == [
        f"database folder {database}: skipped 4 file(s) that are not images this Pillow build can read: "
        "e.json, f.yaml, gps.csv, ..."
    ]
    images = eval_set.images(to_tensor)
    assert [tuple(images[i][0].shape) for i in range(4)] == [(3, 24, 32)] * 4  # each one decodes


def test_hidden_files_are_skipped_and_counted_in_every_folder_reader(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for east in (100.0, 130.0):
        write_jpeg(tmp_path / "database" / gmberton_name(east, 50.0))
        (tmp_path / "database" / f"._{gmberton_name(east, 50.0)}").write_bytes(APPLE_DOUBLE)  # copied from a Mac
    write_jpeg(tmp_path / "database" / ".ipynb_checkpoints" / gmberton_name(100.0, 50.0))
    write_jpeg(tmp_path / "queries" / gmberton_name(110.0, 50.0))

    with caplog.at_level(logging.INFO, logger="dataloaders.eval_sets.folders"):
        labelled = read_gmberton(tmp_path, "mac_copy")
        unlabelled = read_image_folders("mac_copy", tmp_path / "database", tmp_path / "queries")

    expected = [f"database/{gmberton_name(east, 50.0)}" for east in (100.0, 130.0)]
    assert labelled.db_paths == expected and unlabelled.db_paths == expected
    labelled.images(to_tensor)[0]  # the run goes on: every listed file decodes
    skipped = [record.getMessage() for record in caplog.records if "skipped" in record.getMessage()]
    assert len(skipped) == 2 and all("skipped 3 hidden file(s)" in message for message in skipped)
    assert f"._{gmberton_name(100.0, 50.0)}" in skipped[0]


def test_empty_or_missing_folder_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "database").mkdir()
    write_jpeg(tmp_path / "queries" / "q.jpg")
    with pytest.raises(ValueError, match="holds no"):
        read_image_folders("mine", tmp_path / "database", tmp_path / "queries")
    with pytest.raises(FileNotFoundError, match="not a directory"):
        read_image_folders("mine", tmp_path / "nowhere", tmp_path / "queries")
