"""Index builders: the published VPR-Bench files rebuilt exactly; MSLS, Pittsburgh, gmberton."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dataloaders.eval_sets import DataRoots, published_registry, read_gmberton
from dataloaders.index_builders import (
    gmberton_index_files,
    msls_test_index_files,
    msls_val_index_files,
    pittsburgh_index_files,
    vprbench_index_files,
    write_index_files,
)
from tests.test_eval_sets import (
    PITTS_DB,
    PITTS_DB_UTM,
    PITTS_GT,
    PITTS_Q,
    PITTS_Q_UTM,
    gmberton_name,
    write_jpeg,
    write_pittsburgh_mat,
)
from tools import build_index

FIXTURES = Path(__file__).parent / "fixtures"
SALAD_INDEX = FIXTURES / "salad_index"
VPRBENCH = FIXTURES / "vprbench"


def load_published(name: str) -> np.ndarray:
    if (SALAD_INDEX / name).is_file():
        return np.load(SALAD_INDEX / name, allow_pickle=True)
    with gzip.open(SALAD_INDEX / f"{name}.gz") as file:
        return np.load(file, allow_pickle=True)


def assert_same_array(built: np.ndarray, published: np.ndarray) -> None:
    """Equal dtype, shape and values; object arrays item by item (item dtype included)."""
    assert built.dtype == published.dtype
    assert built.shape == published.shape
    if published.dtype != object:
        np.testing.assert_array_equal(built, published)
        return
    for built_item, published_item in zip(built, published):
        assert type(built_item) is type(published_item)
        if isinstance(published_item, np.ndarray):
            assert built_item.dtype == published_item.dtype
            np.testing.assert_array_equal(built_item, published_item)
        else:
            assert built_item == published_item


def vprbench_folder(root: Path, prefix: str) -> Path:
    """Empty image files named as in the published ``<prefix>_{db,q}Images.npy``."""
    for list_name in (f"{prefix}_dbImages.npy", f"{prefix}_qImages.npy"):
        for relative in load_published(list_name):
            path = root / str(relative)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
    return root


# ---------------------------------------------------------------- VPR-Bench: exact rebuild


@pytest.mark.parametrize(
    ("prefix", "ground_truth"), [("SPED", "SPEDTEST"), ("Nordland", "Nordland")]
)
def test_vprbench_rebuild_equals_published_files(
    tmp_path: Path, prefix: str, ground_truth: str
) -> None:
    root = vprbench_folder(tmp_path / prefix, prefix)

    files = vprbench_index_files(root, prefix, VPRBENCH / f"{ground_truth}_ground_truth_new.npy")

    assert sorted(files) == sorted(f"{prefix}_{part}.npy" for part in ("dbImages", "qImages", "gt"))
    for name, built in files.items():
        assert_same_array(built, load_published(name))


def test_vprbench_cli_writes_files_and_refuses_to_overwrite(tmp_path: Path) -> None:
    root = vprbench_folder(tmp_path / "SPEDTEST", "SPED")
    out_dir = tmp_path / "out"
    arguments = [
        "vprbench",
        "--dataset_root", str(root),
        "--name", "SPED",
        "--ground_truth", str(VPRBENCH / "SPEDTEST_ground_truth_new.npy"),
        "--out_dir", str(out_dir),
    ]

    build_index.main(arguments)
    for part in ("dbImages", "qImages", "gt"):
        name = f"SPED_{part}.npy"
        assert_same_array(np.load(out_dir / name, allow_pickle=True), load_published(name))

    (out_dir / "SPED_gt.npy").write_bytes(b"user's own file")
    with pytest.raises(SystemExit, match="already exist.*--force"):
        build_index.main(arguments)
    assert (out_dir / "SPED_gt.npy").read_bytes() == b"user's own file"
    build_index.main([*arguments, "--force"])
    assert_same_array(np.load(out_dir / "SPED_gt.npy"), load_published("SPED_gt.npy"))


def test_vprbench_ground_truth_that_does_not_fit_the_folders_is_rejected(tmp_path: Path) -> None:
    root = tmp_path / "tiny"
    for relative in ("ref/0000000.jpg", "query/0000000.jpg", "query/0000001.jpg"):
        write_jpeg(root / relative)
    ground_truth = np.empty((2, 2), dtype=object)
    ground_truth[0] = [0, [0]]
    ground_truth[1] = [1, [3]]  # only one reference image exists
    np.save(root / "ground_truth_new.npy", ground_truth, allow_pickle=True)
    with pytest.raises(ValueError, match="reference index 3"):
        vprbench_index_files(root, "tiny")


def test_write_index_files_writes_nothing_when_one_exists(tmp_path: Path) -> None:
    (tmp_path / "b.npy").write_bytes(b"keep me")
    files = {"a.npy": np.arange(3), "b.npy": np.arange(2)}
    with pytest.raises(FileExistsError, match="b.npy"):
        write_index_files(files, tmp_path)
    assert not (tmp_path / "a.npy").exists()
    assert (tmp_path / "b.npy").read_bytes() == b"keep me"


# ---------------------------------------------------------------- MSLS raw tree

# (key, easting, northing, pano, in subtask "all") per image, per city and role.
# The key "00123" must stay text; "-L7b..." starts with a dash like real MSLS keys.
MSLS_VAL_TREE = {
    "cph": {
        "database": [
            ("cdb0", 0.0, 0.0, False, True),
            ("00123", 10.0, 0.0, False, True),
            ("cdb2", 1000.0, 0.0, True, True),  # panorama: dropped
            ("cdb3", 2000.0, 0.0, False, False),  # not in subtask "all": dropped
            ("-L7bcdb4", 3000.0, 0.0, False, True),
        ],
        "query": [
            ("cq0", 5.0, 0.0, False, True),  # 5 m from cdb0 and 00123
            ("cq1", 1000.0, 0.0, False, True),  # only near the dropped panorama: no positive
            ("cq2", 0.0, 0.0, False, False),  # not in subtask "all"
            ("cq3", 3010.0, 0.0, True, True),  # panorama
            ("cq4", 3020.0, 0.0, False, True),  # 20 m from -L7bcdb4
        ],
    },
    "sf": {
        "database": [("sdb0", 0.0, 0.0, False, True), ("sdb1", 30.0, 0.0, False, True)],
        "query": [
            ("sq0", 26.0, 0.0, False, True),  # 4 m from sdb1, 26 m from sdb0
            ("sq1", 15.0, 0.0, False, True),  # 15 m from both
        ],
    },
}
# worked out by hand from the table above (docs/DATASETS.md protocol)
EXPECTED_VAL_DB = [
    "train_val/cph/database/images/cdb0.jpg",
    "train_val/cph/database/images/00123.jpg",
    "train_val/cph/database/images/-L7bcdb4.jpg",
    "train_val/sf/database/images/sdb0.jpg",
    "train_val/sf/database/images/sdb1.jpg",
]
EXPECTED_VAL_QUERIES = [
    "train_val/cph/query/images/cq0.jpg",
    "train_val/cph/query/images/cq1.jpg",
    "train_val/cph/query/images/cq4.jpg",
    "train_val/sf/query/images/sq0.jpg",
    "train_val/sf/query/images/sq1.jpg",
]
EXPECTED_VAL_QIDX = [0, 2, 3, 4]
EXPECTED_VAL_PIDX = [[0, 1], [2], [4], [3, 4]]


def write_msls_folder(folder: Path, rows: list[tuple], with_positions: bool) -> None:
    """The CSVs of one MSLS folder, each with pandas' leading unnamed index column."""
    folder.mkdir(parents=True)
    keys = [row[0] for row in rows]
    pd.DataFrame(
        {"key": keys, "sequence_key": "seq", "frame_number": range(len(rows))}
    ).to_csv(folder / "seq_info.csv")
    subtasks = pd.DataFrame({"all": [row[4] for row in rows], "s2w": False})
    subtasks.to_csv(folder / "subtask_index.csv")
    if with_positions:
        pd.DataFrame(
            {
                "key": keys,
                "lon": 12.5,
                "lat": 55.6,
                "ca": 0.0,
                "captured_at": 0,
                "pano": [row[3] for row in rows],
            }
        ).to_csv(folder / "raw.csv")
        pd.DataFrame(
            {
                "key": keys,
                "easting": [row[1] for row in rows],
                "northing": [row[2] for row in rows],
                "unique_cluster": 0,
                "control_panel": False,
                "night": False,
                "view_direction": "Forward",
            }
        ).to_csv(folder / "postprocessed.csv")


def write_msls_tree(root: Path, split: str, tree: dict, with_positions: bool) -> Path:
    for city, roles in tree.items():
        for role, rows in roles.items():
            write_msls_folder(root / split / city / role, rows, with_positions)
    return root


def test_msls_val_follows_the_published_protocol(tmp_path: Path) -> None:
    root = write_msls_tree(tmp_path / "msls", "train_val", MSLS_VAL_TREE, with_positions=True)

    files = msls_val_index_files(root)

    assert files["msls_val_dbImages.npy"].tolist() == EXPECTED_VAL_DB
    assert files["msls_val_qImages.npy"].tolist() == EXPECTED_VAL_QUERIES
    assert files["msls_val_dbImages.npy"].dtype.kind == "U"
    assert files["msls_val_qIdx.npy"].dtype == np.int64
    assert files["msls_val_qIdx.npy"].tolist() == EXPECTED_VAL_QIDX
    positives = files["msls_val_pIdx.npy"]
    assert positives.dtype == object and positives.shape == (len(EXPECTED_VAL_QIDX),)
    assert [row.dtype for row in positives] == [np.dtype(np.int64)] * len(EXPECTED_VAL_QIDX)
    assert [row.tolist() for row in positives] == EXPECTED_VAL_PIDX


def test_msls_val_files_load_through_the_registry(tmp_path: Path) -> None:
    root = write_msls_tree(tmp_path / "mapillary", "train_val", MSLS_VAL_TREE, with_positions=True)
    write_index_files(msls_val_index_files(root), tmp_path / "datasets" / "msls_val")

    eval_set = published_registry().load("MSLS", DataRoots(data_dir=tmp_path))

    assert eval_set.query_paths == [EXPECTED_VAL_QUERIES[i] for i in EXPECTED_VAL_QIDX]
    assert eval_set.query_groups == ["cph", "cph", "sf", "sf"]
    assert eval_set.query_keys == ["cq0", "cq4", "sq0", "sq1"]


def test_msls_test_keeps_subtask_images_as_object_arrays(tmp_path: Path) -> None:
    tree = {
        "miami": {
            "database": [("m0", 0, 0, False, True), ("m1", 0, 0, False, False)],
            "query": [("mq", 0, 0, False, True)],
        },
        "athens": {
            "database": [("a0", 0, 0, False, True)],
            "query": [("aq0", 0, 0, False, True), ("aq1", 0, 0, False, True)],
        },
    }
    root = write_msls_tree(tmp_path, "test", tree, with_positions=False)

    files = msls_test_index_files(root, cities=["miami", "athens"])

    db_images, query_images = files["msls_test_dbImages.npy"], files["msls_test_qImages.npy"]
    assert db_images.dtype == object and query_images.dtype == object
    assert all(type(path) is str for path in (*db_images, *query_images))
    assert db_images.tolist() == [
        "test/miami/database/images/m0.jpg",  # m1 is not in subtask "all"
        "test/athens/database/images/a0.jpg",
    ]
    assert query_images.tolist() == [
        "test/miami/query/images/mq.jpg",
        "test/athens/query/images/aq0.jpg",
        "test/athens/query/images/aq1.jpg",
    ]


def test_msls_absent_city_is_a_clear_error(tmp_path: Path) -> None:
    cph_only = {"cph": MSLS_VAL_TREE["cph"]}
    root = write_msls_tree(tmp_path, "train_val", cph_only, with_positions=True)
    with pytest.raises(FileNotFoundError, match=f"{root / 'train_val' / 'sf'} .*msls_root={root} and cities="):
        msls_val_index_files(root)


def test_msls_csvs_that_disagree_on_keys_are_rejected(tmp_path: Path) -> None:
    cph_only = {"cph": MSLS_VAL_TREE["cph"]}
    root = write_msls_tree(tmp_path, "train_val", cph_only, with_positions=True)
    raw_csv = root / "train_val" / "cph" / "query" / "raw.csv"
    raw = pd.read_csv(raw_csv, index_col=0)
    raw.loc[0, "key"] = "someone_else"
    raw.to_csv(raw_csv)
    with pytest.raises(ValueError, match="raw.csv differ"):
        msls_val_index_files(root, cities=["cph"])


# ---------------------------------------------------------------- Pittsburgh and gmberton


def test_pittsburgh_index_files_from_mat(tmp_path: Path) -> None:
    mat_file = tmp_path / "pitts30k_val.mat"
    write_pittsburgh_mat(mat_file, PITTS_DB, PITTS_DB_UTM, PITTS_Q, PITTS_Q_UTM)

    files = pittsburgh_index_files(mat_file)

    assert sorted(files) == [f"pitts30k_val_{part}.npy" for part in ("dbImages", "gt", "qImages")]
    assert files["pitts30k_val_dbImages.npy"].dtype.kind == "U"
    assert files["pitts30k_val_dbImages.npy"].tolist() == PITTS_DB
    expected_queries = [f"queries_real/{name}" for name in PITTS_Q]
    assert files["pitts30k_val_qImages.npy"].tolist() == expected_queries
    gt = files["pitts30k_val_gt.npy"]
    assert gt.dtype == object and [row.tolist() for row in gt] == PITTS_GT


@pytest.mark.parametrize("damage", ["truncated", "cut_in_the_header", "text", "empty"])
def test_a_broken_pittsburgh_mat_is_one_line_naming_it(tmp_path: Path, damage: str) -> None:
    mat_file = tmp_path / "pitts30k_val.mat"
    write_pittsburgh_mat(mat_file, PITTS_DB, PITTS_DB_UTM, PITTS_Q, PITTS_Q_UTM)
    content = mat_file.read_bytes()
    broken = {"truncated": content[: len(content) * 2 // 3], "cut_in_the_header": content[:100],
              "text": b"<html>Service unavailable</html>\n", "empty": b""}[damage]
    mat_file.write_bytes(broken)
    with pytest.raises(SystemExit) as exit_info:
        build_index.main(["pitts", "--mat", str(mat_file), "--out_dir", str(tmp_path / "out")])
    message = str(exit_info.value)
    assert message.startswith(f"build_index pitts: error: Pittsburgh .mat file {mat_file} is not a readable MATLAB file")
    assert "\n" not in message and message.endswith("download it again")
    assert not (tmp_path / "out").exists()


def test_equal_length_positives_stay_an_object_array(tmp_path: Path) -> None:
    mat_file = tmp_path / "pitts30k_test.mat"
    write_pittsburgh_mat(mat_file, PITTS_DB, PITTS_DB_UTM, PITTS_Q[:1], PITTS_Q_UTM[:1])
    gt = pittsburgh_index_files(mat_file)["pitts30k_test_gt.npy"]
    assert gt.dtype == object and gt.shape == (1,) and gt[0].dtype == np.int64


def test_gmberton_index_round_trips_through_register_index_set(tmp_path: Path) -> None:
    root = tmp_path / "tokyo"
    for east in (100.0, 130.0, 200.0):
        write_jpeg(root / "images" / "test" / "database" / gmberton_name(east, 7.0))
    write_jpeg(root / "images" / "test" / "queries" / gmberton_name(110.0, 7.0))
    write_index_files(gmberton_index_files(root, "tokyo"), tmp_path / "index")
    registry = published_registry()
    registry.register_index_set("tokyo", image_root=root, index_dir=tmp_path / "index")

    from_index = registry.load("tokyo", DataRoots())
    direct = read_gmberton(root, "tokyo")

    assert from_index.db_paths == direct.db_paths
    assert from_index.query_paths == direct.query_paths
    assert [row.tolist() for row in from_index.ground_truth] == [[0, 1]]
    from_index.check_files_exist()


# ---------------------------------------------------------------- toy world (toy_world)

TOY_INDEX_FOLDERS = {
    "msls_val": "msls_val",
    "msls_test": "msls_test",
    "pitts30k_val": "Pittsburgh",
    "pitts30k_test": "Pittsburgh",
    "pitts250k_test": "Pittsburgh",
    "nordland": "Nordland",
    "sped": "SPED",
}


@pytest.fixture(scope="module")
def toy_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from toy_world import generate_toy_world

    root = tmp_path_factory.mktemp("toy") / "world"
    generate_toy_world(root, seed=3, size="small", image_size=16, progress=False)
    return root


def test_every_toy_world_set_loads_through_the_registry(toy_world: Path) -> None:
    registry = published_registry()
    gmberton_splits = toy_world / "gmberton" / "toy_city" / "images" / "test"
    registry.register_folder_set(
        "toy_city", gmberton_splits / "database", gmberton_splits / "queries", 25.0
    )
    for name in [*TOY_INDEX_FOLDERS, "toy_city"]:
        eval_set = registry.load(name, DataRoots(data_dir=toy_world))
        assert eval_set.num_db > 0 and eval_set.num_queries > 0, name
        eval_set.check_files_exist()


def test_builders_reproduce_the_toy_worlds_index_files(toy_world: Path) -> None:
    built = {
        "msls_val": msls_val_index_files(toy_world / "mapillary"),
        "msls_test": msls_test_index_files(toy_world / "mapillary"),
        "nordland": vprbench_index_files(toy_world / "Nordland", "Nordland"),
        "sped": vprbench_index_files(toy_world / "SPEDTEST", "SPED"),
    }
    for name in ("pitts30k_val", "pitts30k_test", "pitts250k_test"):
        built[name] = pittsburgh_index_files(toy_world / "Pittsburgh" / "datasets" / f"{name}.mat")
    for name, files in built.items():
        for file_name, array in files.items():
            published = toy_world / "datasets" / TOY_INDEX_FOLDERS[name] / file_name
            assert_same_array(array, np.load(published, allow_pickle=True))
    assert sum(len(files) for files in built.values()) == 4 + 2 + 3 * 5
