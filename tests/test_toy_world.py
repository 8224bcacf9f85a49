"""The procedural toy world: determinism, the published layouts and index formats, ground
truth that agrees with the coordinates, and train / evaluation separation.

Expected formats come from docs/DATASETS.md and from slices of the published files in
``tests/fixtures/toy_world_reference`` (same dtypes); ground truth is recomputed here from the
coordinates the generator wrote (CSV, .mat, file names) with scipy, independently of the
generator's own code.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.io
from PIL import Image
from scipy.spatial.distance import cdist

from dataloaders.constants import MSLS_TEST_CITIES, MSLS_VAL_CITIES
from toy_world import (
    SUMMARY_FILE,
    TOY_WORLD_SIZES,
    TOY_WORLD_VERSION,
    ToyWorldSize,
    generate_toy_world,
)
from tools import make_toy_world

REPO_ROOT = Path(__file__).resolve().parents[1]
REFERENCE = Path(__file__).parent / "fixtures" / "toy_world_reference"

TINY = replace(
    TOY_WORLD_SIZES["small"],
    gsv_cities=("Bangkok", "PRS"), gsv_places_per_city=4, gsv_images_per_place=(4, 5),
    msls_val_db_per_city=12, msls_val_queries_per_city=6, msls_test_db_per_city=2, msls_test_queries_per_city=1,
    pitts_db_places_per_area=1, pitts_query_places_per_set=1, nordland_queries=3, sped_pairs=3,
    gmberton_db=4, gmberton_queries=2,
)
IMAGE_SIZE = 32

GSV_NAME = re.compile(
    r"^(?P<city_id>[A-Za-z]+)_(?P<place_id>\d{7})_(?P<year>\d{4})_(?P<month>\d{2})_(?P<northdeg>\d{3})_"
    r"(?P<lat>-?\d+\.\d+)_(?P<lon>-?\d+\.\d+)_(?P<panoid>[A-Za-z0-9_-]{22})\.jpg$")
PITTS_DB_NAME = re.compile(r"^(?P<folder>\d{3})/(?P<number>\d{6})_pitch[12]_yaw([1-9]|1[0-2])\.jpg$")
PITTS_Q_NAME = re.compile(r"^queries_real/(?P<folder>\d{3})/(?P<number>\d{6})_pitch[12]_yaw([1-9]|1[0-2])\.jpg$")
MSLS_KEY = r"[A-Za-z0-9_-]{22}"
VPRBENCH_NAME = re.compile(r"^(ref|query)/\d{7}\.jpg$")


def tree_digest(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root``, by relative path."""
    return {str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(root.rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("toy") / "world"
    generate_toy_world(root, seed=0, size=TINY, image_size=IMAGE_SIZE, progress=False)
    return root


def reference(name: str) -> np.ndarray:
    return np.load(REFERENCE / name, allow_pickle=True)


def assert_same_structure(generated: np.ndarray, published: np.ndarray) -> None:
    """Same dtype (any length for unicode strings), dimensions, and for object arrays the same
    element types."""
    assert generated.dtype.kind == published.dtype.kind
    if published.dtype.kind != "U":
        assert generated.dtype == published.dtype
    assert generated.ndim == published.ndim
    assert generated.shape[1:] == published.shape[1:]
    if published.dtype == object:
        for gen_item, pub_item in zip(generated.flat, published.flat):
            assert type(gen_item) is type(pub_item)
            if isinstance(pub_item, np.ndarray):
                assert gen_item.dtype == pub_item.dtype


# ------------------------------------------------------------------------------ determinism


def test_same_seed_gives_identical_files_and_other_seed_differs(world: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    generate_toy_world(again, seed=0, size=TINY, image_size=IMAGE_SIZE, workers=2, progress=False)
    first, second = tree_digest(world), tree_digest(again)
    assert first == second  # byte-identical, although rendered with another number of workers

    other = tmp_path / "other"
    generate_toy_world(other, seed=1, size=TINY, image_size=IMAGE_SIZE, progress=False)
    third = tree_digest(other)
    gsv_first = {p for p in first if p.startswith("gsv-cities/Images")}
    gsv_third = {p for p in third if p.startswith("gsv-cities/Images")}
    assert gsv_first != gsv_third
    shared = set(first) & set(third)
    shared_images = [p for p in shared if p.endswith(".jpg")]
    assert shared_images  # e.g. Nordland/ref/0000000.jpg exists in both ...
    assert all(first[p] != third[p] for p in shared_images)  # ... with other pixels


def test_summary_records_what_was_generated(world: Path) -> None:
    summary = json.loads((world / SUMMARY_FILE).read_text())
    assert summary["seed"] == 0
    assert summary["version"] == TOY_WORLD_VERSION
    assert summary["image_size"] == IMAGE_SIZE
    assert summary["gsv_cities"] == list(TINY.gsv_cities)
    images = list(world.rglob("*.jpg"))
    assert summary["num_images"] == len(images)
    assert summary["counts"]["gsv_total"]["images"] == len(list((world / "gsv-cities" / "Images").rglob("*.jpg")))
    with Image.open(images[0]) as image:
        assert image.format == "JPEG" and image.size == (IMAGE_SIZE, IMAGE_SIZE)


def test_refuses_a_non_empty_output_folder(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="not empty"):
        generate_toy_world(tmp_path, size=TINY, progress=False)
    assert [p.name for p in tmp_path.iterdir()] == ["mine.txt"]


def test_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown toy world size 'huge'"):
        generate_toy_world(tmp_path / "a", size="huge", progress=False)
    with pytest.raises(ValueError, match="seed"):
        generate_toy_world(tmp_path / "b", seed=-1, progress=False)
    with pytest.raises(ValueError, match="image_size"):
        generate_toy_world(tmp_path / "c", image_size=8, progress=False)
    with pytest.raises(ValueError, match="gsv_images_per_place"):
        ToyWorldSize(**{**vars(TINY), "gsv_images_per_place": (5, 4)})
    with pytest.raises(ValueError, match="unknown GSV-Cities city Atlantis"):
        ToyWorldSize(**{**vars(TINY), "gsv_cities": ("London", "Atlantis")})
    assert not any(tmp_path.iterdir())  # nothing written


# ------------------------------------------------------------------------------ GSV-Cities


def test_gsv_cities_csv_columns_types_and_file_names(world: Path) -> None:
    base = world / "gsv-cities"
    assert sorted(p.name for p in (base / "Dataframes").iterdir()) == sorted(f"{c}.csv" for c in TINY.gsv_cities)
    for city in TINY.gsv_cities:
        frame = pd.read_csv(base / "Dataframes" / f"{city}.csv", dtype={"lat": str, "lon": str})
        assert list(frame.columns) == ["place_id", "year", "month", "northdeg", "city_id", "lat", "lon", "panoid"]
        for column in ("place_id", "year", "month", "northdeg"):
            assert pd.api.types.is_integer_dtype(frame[column])
        assert pd.read_csv(base / "Dataframes" / f"{city}.csv")[["lat", "lon"]].dtypes.tolist() == [np.float64] * 2
        assert (frame["city_id"] == city).all()
        counts = frame.groupby("place_id").size()
        assert counts.min() >= TINY.gsv_images_per_place[0] and counts.max() <= TINY.gsv_images_per_place[1]
        assert len(counts) == TINY.gsv_places_per_city
        assert frame["month"].between(1, 12).all() and frame["northdeg"].between(0, 359).all()

        files = sorted(p.name for p in (base / "Images" / city).iterdir())
        assert len(files) == len(frame)
        expected = sorted(
            f"{r.city_id}_{r.place_id:07d}_{r.year:04d}_{r.month:02d}_{r.northdeg:03d}_{r.lat}_{r.lon}_{r.panoid}.jpg"
            for r in frame.itertuples())
        assert files == expected
        for name in files:
            assert GSV_NAME.match(name), name


def test_gsv_regex_matches_the_published_example() -> None:
    assert GSV_NAME.match("London_0000130_2018_04_015_51.4861_-0.0895151_6jFjb3wGyCkcBfq4k559ag.jpg")


def test_training_regions_are_disjoint_from_evaluation_regions(world: Path) -> None:
    regions = json.loads((world / SUMMARY_FILE).read_text())["regions"]
    train = {name: box for name, box in regions.items() if name.startswith("gsv_")}
    evaluation = {name: box for name, box in regions.items() if not name.startswith("gsv_")}
    assert len(train) == len(TINY.gsv_cities) and evaluation
    for (x0, y0, x1, y1) in train.values():
        for (a0, b0, a1, b1) in evaluation.values():
            assert x1 <= a0 or a1 <= x0 or y1 <= b0 or b1 <= y0  # no overlap on the global plane


# ------------------------------------------------------------------------------ MSLS


def test_msls_raw_tree_has_the_published_csvs(world: Path) -> None:
    columns = {
        "seq_info.csv": ["key", "sequence_key", "frame_number"],
        "subtask_index.csv": ["key", "all", "s2w", "w2s", "o2n", "n2o", "d2n", "n2d"],
        "raw.csv": ["key", "lon", "lat", "ca", "captured_at", "pano"],
        "postprocessed.csv": ["key", "easting", "northing", "unique_cluster", "control_panel", "night",
                              "view_direction"],
    }
    for city in MSLS_VAL_CITIES:
        for side in ("database", "query"):
            folder = world / "mapillary" / "train_val" / city / side
            keys = None
            for name, expected in columns.items():
                header = (folder / name).read_text().splitlines()[0]
                assert header.startswith(",")  # leading unnamed index column
                frame = pd.read_csv(folder / name, index_col=0)
                assert list(frame.columns) == expected
                assert list(frame.index) == list(range(len(frame)))
                keys = frame["key"].tolist() if keys is None else keys
                assert frame["key"].tolist() == keys  # every CSV lists the same images in the same order
            assert all(re.fullmatch(MSLS_KEY, key) for key in keys)
            assert sorted(p.stem for p in (folder / "images").iterdir()) == sorted(keys)
    for city in MSLS_TEST_CITIES:
        for side in ("database", "query"):
            folder = world / "mapillary" / "test" / city / side
            assert sorted(p.name for p in folder.iterdir()) == ["images", "seq_info.csv", "subtask_index.csv"]


def msls_val_protocol(world: Path) -> tuple[list[str], list[str], list[int], list[np.ndarray]]:
    """The MSLS val index recomputed from the raw CSVs (docs/DATASETS.md protocol)."""
    db_images: list[str] = []
    q_images: list[str] = []
    q_idx: list[int] = []
    p_idx: list[np.ndarray] = []
    for city in ("cph", "sf"):
        kept = {}
        for side in ("database", "query"):
            folder = world / "mapillary" / "train_val" / city / side
            post = pd.read_csv(folder / "postprocessed.csv", index_col=0)
            raw = pd.read_csv(folder / "raw.csv", index_col=0)
            subtasks = pd.read_csv(folder / "subtask_index.csv", index_col=0)
            keep = subtasks["all"].to_numpy() & ~raw["pano"].to_numpy()
            kept[side] = (post["key"].to_numpy()[keep], post[["easting", "northing"]].to_numpy()[keep])
        db_offset = len(db_images)
        db_images += [f"train_val/{city}/database/images/{k}.jpg" for k in kept["database"][0]]
        distance = cdist(kept["query"][1], kept["database"][1])
        for j, key in enumerate(kept["query"][0]):
            positives = np.flatnonzero(distance[j] <= 25.0)
            if len(positives):
                q_idx.append(len(q_images))
                p_idx.append(positives + db_offset)
            q_images.append(f"train_val/{city}/query/images/{key}.jpg")
    return db_images, q_images, q_idx, p_idx


def test_msls_val_index_follows_the_protocol(world: Path) -> None:
    folder = world / "datasets" / "msls_val"
    db = np.load(folder / "msls_val_dbImages.npy")
    q = np.load(folder / "msls_val_qImages.npy")
    q_idx = np.load(folder / "msls_val_qIdx.npy")
    p_idx = np.load(folder / "msls_val_pIdx.npy", allow_pickle=True)
    for generated, name in ((q, "msls_val_qImages.npy"), (q_idx, "msls_val_qIdx.npy"), (p_idx, "msls_val_pIdx.npy")):
        assert_same_structure(generated, reference(name))
    assert db.dtype.kind == "U"

    expected_db, expected_q, expected_q_idx, expected_p_idx = msls_val_protocol(world)
    assert db.tolist() == expected_db
    assert q.tolist() == expected_q
    assert q_idx.tolist() == expected_q_idx
    assert len(p_idx) == len(q_idx)
    for got, expected in zip(p_idx, expected_p_idx):
        assert got.tolist() == expected.tolist()
    # queries without a positive are dropped: qIdx is a strict subset of the query list
    assert 0 < len(q_idx) < len(q)
    # both filters of the protocol leave rows out on every side of every city
    for city in MSLS_VAL_CITIES:
        for side in ("database", "query"):
            folder = world / "mapillary" / "train_val" / city / side
            raw = pd.read_csv(folder / "raw.csv", index_col=0)
            subtasks = pd.read_csv(folder / "subtask_index.csv", index_col=0)
            assert raw["pano"].any() and not subtasks["all"].all()
    for path in db.tolist() + q.tolist():
        assert (world / "mapillary" / path).is_file()


def test_msls_test_index_lists_cities_in_order_as_object_arrays(world: Path) -> None:
    folder = world / "datasets" / "msls_test"
    for name in ("msls_test_dbImages.npy", "msls_test_qImages.npy"):
        array = np.load(folder / name, allow_pickle=True)
        assert_same_structure(array, reference("msls_test_qImages.npy"))
        cities = [path.split("/")[1] for path in array]
        assert sorted(set(cities), key=cities.index) == list(MSLS_TEST_CITIES)
        assert cities == sorted(cities, key=MSLS_TEST_CITIES.index)
        side = "database" if "db" in name else "query"
        for path in array:
            assert re.fullmatch(rf"test/[a-z]+/{side}/images/{MSLS_KEY}\.jpg", path)
            assert (world / "mapillary" / path).is_file()


# ------------------------------------------------------------------------------ Pittsburgh


PITTS_FIELDS = ("whichSet", "dbImageFns", "utmDb", "qImageFns", "utmQ", "numImages", "numQueries",
                "posDistThr", "posDistSqThr", "nonTrivPosDistSqThr")


@pytest.mark.parametrize("set_name", ["pitts30k_val", "pitts30k_test", "pitts250k_test"])
def test_pittsburgh_mat_and_index_agree_with_coordinates(world: Path, set_name: str) -> None:
    db_struct = scipy.io.loadmat(world / "Pittsburgh" / "datasets" / f"{set_name}.mat")["dbStruct"]
    assert db_struct.dtype.names == PITTS_FIELDS
    fields = db_struct.item()
    assert fields[0].item() == ("val" if set_name.endswith("val") else "test")
    db_files = [cell[0].item() for cell in fields[1]]
    q_files = [cell[0].item() for cell in fields[3]]
    utm_db, utm_q = fields[2], fields[4]
    assert utm_db.shape == (2, len(db_files)) and utm_q.shape == (2, len(q_files))
    assert fields[5].item() == len(db_files) and fields[6].item() == len(q_files)
    assert (fields[7].item(), fields[8].item(), fields[9].item()) == (25, 625, 100)

    folder = world / "datasets" / "Pittsburgh"
    db = np.load(folder / f"{set_name}_dbImages.npy")
    q = np.load(folder / f"{set_name}_qImages.npy")
    gt = np.load(folder / f"{set_name}_gt.npy", allow_pickle=True)
    assert_same_structure(db, reference("pitts30k_val_dbImages.npy"))
    assert_same_structure(q, reference("pitts30k_val_qImages.npy"))
    assert_same_structure(gt, reference("msls_val_pIdx.npy"))  # object array of int64 arrays
    assert db.tolist() == db_files
    assert q.tolist() == [f"queries_real/{name}" for name in q_files]
    assert len(q) % 24 == 0 and len(db) % 24 == 0  # 2 pitches x 12 yaws per place
    for name in db:
        match = PITTS_DB_NAME.match(name)
        assert match and int(match["folder"]) == int(match["number"]) // 1000
        assert (world / "Pittsburgh" / name).is_file()
    for name in q:
        match = PITTS_Q_NAME.match(name)
        assert match and int(match["folder"]) == int(match["number"]) // 1000
        assert (world / "Pittsburgh" / name).is_file()
    distance = cdist(utm_q.T, utm_db.T)
    assert [g.tolist() for g in gt] == [np.flatnonzero(row <= 25.0).tolist() for row in distance]
    assert all(len(g) for g in gt)  # every query has a positive


def test_pittsburgh_name_patterns_match_the_published_lists() -> None:
    assert all(PITTS_DB_NAME.match(n) for n in reference("pitts30k_val_dbImages.npy"))
    assert all(PITTS_Q_NAME.match(n) for n in reference("pitts30k_val_qImages.npy"))


# ------------------------------------------------------------------------------ VPR-Bench sets


def test_nordland_follows_the_vpr_bench_protocol(world: Path) -> None:
    folder = world / "datasets" / "Nordland"
    db = np.load(folder / "Nordland_dbImages.npy")
    q = np.load(folder / "Nordland_qImages.npy")
    gt = np.load(folder / "Nordland_gt.npy", allow_pickle=True)
    assert_same_structure(q, reference("Nordland_qImages.npy"))
    assert_same_structure(gt, reference("Nordland_gt.npy"))
    n_q = TINY.nordland_queries
    assert len(q) == n_q and len(db) == 10 * (n_q - 1) + 2
    assert db.tolist() == [f"ref/{i:07d}.jpg" for i in range(len(db))]
    assert q.tolist() == [f"query/{i:07d}.jpg" for i in range(n_q)]
    expected = [[r for r in (10 * i - 1, 10 * i, 10 * i + 1) if 0 <= r < len(db)] for i in range(n_q)]
    assert [g.tolist() for g in gt] == expected
    raw = np.load(world / "Nordland" / "ground_truth_new.npy", allow_pickle=True)
    assert_same_structure(raw, reference("Nordland_ground_truth_new.npy"))
    assert raw[:, 0].tolist() == list(range(n_q))
    assert [list(row) for row in raw[:, 1]] == expected  # the published gt is column 1
    assert sorted(p.name for p in (world / "Nordland" / "ref").iterdir()) == [n.split("/")[1] for n in db]


def test_sped_follows_the_vpr_bench_protocol(world: Path) -> None:
    folder = world / "datasets" / "SPED"
    db = np.load(folder / "SPED_dbImages.npy")
    q = np.load(folder / "SPED_qImages.npy")
    gt = np.load(folder / "SPED_gt.npy")
    assert_same_structure(db, reference("SPED_dbImages.npy"))
    assert_same_structure(gt, reference("SPED_gt.npy"))
    n = TINY.sped_pairs
    assert gt.dtype == np.int64 and gt.shape == (n, 1) and gt[:, 0].tolist() == list(range(n))
    assert all(VPRBENCH_NAME.match(name) for name in db.tolist() + q.tolist())
    raw = np.load(world / "SPEDTEST" / "ground_truth_new.npy", allow_pickle=True)
    assert_same_structure(raw, reference("SPEDTEST_ground_truth_new.npy"))
    assert [list(row) for row in raw[:, 1]] == gt.tolist()
    for name in db.tolist() + q.tolist():
        assert (world / "SPEDTEST" / name).is_file()


def test_gmberton_names_carry_utm_coordinates(world: Path) -> None:
    base = world / "gmberton" / "toy_city" / "images" / "test"
    counts = {}
    for side in ("database", "queries"):
        names = [p.name for p in (base / side).iterdir()]
        counts[side] = len(names)
        for name in names:
            fields = name.split("@")
            assert len(fields) == 16 and fields[0] == "" and fields[-1] == ".jpg"
            east, north = float(fields[1]), float(fields[2])
            assert 100_000 < east < 900_000 and 0 < north < 10_000_000  # UTM metres
    assert counts == {"database": TINY.gmberton_db, "queries": TINY.gmberton_queries}


# ------------------------------------------------------------------------------ CLI


def test_cli_help_runs_as_a_script() -> None:
    result = subprocess.run([sys.executable, "tools/make_toy_world.py", "--help"], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    assert "--out" in result.stdout and "--size" in result.stdout and "--image-size" in result.stdout


def test_cli_refuses_a_non_empty_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "keep.txt").write_text("x")
    with pytest.raises(SystemExit) as raised:
        make_toy_world.main(["--out", str(tmp_path), "--size", "small"])
    assert raised.value.code == 2
    assert f"--out {tmp_path} exists and is not an empty folder" in capsys.readouterr().err


def test_cli_writes_a_world_and_reports_it(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(make_toy_world.TOY_WORLD_SIZES, "small", TINY)  # keep the test fast
    assert make_toy_world.main(["--out", str(tmp_path / "w"), "--size", "small", "--image-size", "32",
                                "--workers", "1", "--no-progress"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    images = len(list((tmp_path / "w").rglob("*.jpg")))
    assert f"{images} images" in line and "took" in line
    assert json.loads((tmp_path / "w" / SUMMARY_FILE).read_text())["image_size"] == 32


def test_cli_rejects_unknown_training_cities(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        make_toy_world.main(["--out", str(tmp_path / "w"), "--gsv-cities", "London", "Atlantis"])
    assert raised.value.code == 2
    assert "--gsv_cities: unknown city Atlantis" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


def test_cli_overrides_the_training_cities_and_places(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(make_toy_world.TOY_WORLD_SIZES, "small", TINY)
    assert make_toy_world.main(["--out", str(tmp_path / "w"), "--size", "small", "--image-size", "24",
                                "--gsv-cities", "Osaka", "--gsv-places-per-city", "2", "--workers", "1",
                                "--no-progress"]) == 0
    summary = json.loads((tmp_path / "w" / SUMMARY_FILE).read_text())
    assert summary["gsv_cities"] == ["Osaka"] and summary["size"] == "custom"
    assert summary["parameters"]["gsv_places_per_city"] == 2
    frame = pd.read_csv(tmp_path / "w" / "gsv-cities" / "Dataframes" / "Osaka.csv")
    assert frame["place_id"].nunique() == 2
