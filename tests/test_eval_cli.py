"""eval.py end to end on tiny sets built here, with a tiny DINOv2-S/14 + SALAD model.

Expected values come from the way the data is built: a query that is a byte-for-byte copy of
a database image has that image as its nearest neighbour (distance 0), so where the ground
truth names the copied image Recall@1 is 100, and where it names another image the query is
a miss at rank 1.
"""

from __future__ import annotations

import csv
import json
import logging
import shutil
import subprocess
import sys
import traceback
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import eval as eval_cli
from models import build_vpr_net
from models.aggregators.salad import SALAD
from models.architecture import Architecture
from models.compared import checkpoint_row
from models.loading import architecture_from_payload, load_network
from models.vpr_net import build_network
from tests.planted_pickles import planted_checkpoint
from utils.errors import UserError
from utils.evaluation.metrics import recall_at_k

REPO_ROOT = Path(__file__).resolve().parents[1]
IMAGE_SIDE = 56  # 4 x 4 patches of 14 px: more patches than clusters
TINY_BACKBONE = "dinov2_vits14"
TINY_BACKBONE_CONFIG = {"num_trainable_blocks": 1}
TINY_SALAD = {"num_clusters": 4, "cluster_dim": 8, "token_dim": 8}
TINY_FLAGS = [
    "--backbone", TINY_BACKBONE, "--backbone_config", json.dumps(TINY_BACKBONE_CONFIG),
    "--num_clusters", "4", "--cluster_dim", "8", "--token_dim", "8",
]
EMBED_DIM_VITS14 = 384


@pytest.fixture(scope="module", autouse=True)
def few_threads() -> None:
    torch.set_num_threads(2)


def tiny_architecture() -> Architecture:
    agg_config = {"in_channels": EMBED_DIM_VITS14, **TINY_SALAD}
    return Architecture(TINY_BACKBONE, dict(TINY_BACKBONE_CONFIG), "SALAD", agg_config)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same tiny model saved as a bare state dict and as a Lightning-style checkpoint."""
    folder = tmp_path_factory.mktemp("checkpoints")
    architecture = tiny_architecture()
    torch.manual_seed(0)
    model = build_vpr_net(**{
        "backbone_arch": architecture.backbone_arch, "backbone_config": architecture.backbone_config,
        "agg_arch": architecture.agg_arch, "agg_config": architecture.agg_config,
    })
    state_dict = model.state_dict()
    torch.save(state_dict, folder / "bare.ckpt")
    torch.save({"state_dict": state_dict, "hyper_parameters": architecture.as_dict()}, folder / "lightning.ckpt")
    return {"bare": folder / "bare.ckpt", "lightning": folder / "lightning.ckpt"}


def write_image(path: Path, seed: int, size: tuple[int, int] = (IMAGE_SIDE, IMAGE_SIDE)) -> Path:
    """A distinct blocky random picture (``size`` = width, height), saved as JPEG."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(blocks).resize(size, Image.Resampling.NEAREST).save(path, format="JPEG", quality=95)
    return path


def copy_image(source: Path, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target


# SPED in the published layout: 6 database images; query j copies database image QUERY_COPIES[j].
SPED_DB = 6
QUERY_COPIES = [1, 3, 5]


def make_sped(data_dir: Path, ground_truth: list[int]) -> Path:
    """``<data_dir>/SPEDTEST/{ref,query}`` + ``<data_dir>/datasets/SPED/SPED_*.npy``."""
    db_paths = [f"ref/{i:07d}.jpg" for i in range(SPED_DB)]
    query_paths = [f"query/{j:07d}.jpg" for j in range(len(QUERY_COPIES))]
    for i, path in enumerate(db_paths):
        write_image(data_dir / "SPEDTEST" / path, seed=100 + i)
    for path, copied in zip(query_paths, QUERY_COPIES):
        copy_image(data_dir / "SPEDTEST" / db_paths[copied], data_dir / "SPEDTEST" / path)
    index = data_dir / "datasets" / "SPED"
    index.mkdir(parents=True)
    np.save(index / "SPED_dbImages.npy", np.array(db_paths))
    np.save(index / "SPED_qImages.npy", np.array(query_paths))
    np.save(index / "SPED_gt.npy", np.array(ground_truth, dtype=np.int64).reshape(-1, 1))
    return data_dir


@pytest.fixture
def sped_dir(tmp_path: Path) -> Path:
    """Every query's positive is its own copy: Recall@1 must be 100."""
    return make_sped(tmp_path / "data", QUERY_COPIES)


@pytest.fixture
def sped_one_wrong_dir(tmp_path: Path) -> Path:
    """Query 1 (a copy of database image 3) has database image 0 as positive: a miss at rank 1."""
    return make_sped(tmp_path / "data", [1, 0, 5])


def common_flags(tmp_path: Path) -> list[str]:
    return [
        "--image_size", str(IMAGE_SIDE), str(IMAGE_SIDE), "--batch_size", "16", "--num_workers", "0",
        "--device", "cpu", "--log_dir", str(tmp_path / "logs"),
    ]


def run_eval(argv: list[str]) -> Path:
    """Run ``eval.main`` and return the run folder it created (the only new one in --log_dir)."""
    log_dir = Path(argv[argv.index("--log_dir") + 1])
    before = set(log_dir.iterdir()) if log_dir.is_dir() else set()
    eval_cli.main(argv)
    created = set(log_dir.iterdir()) - before
    assert len(created) == 1, f"expected one new run folder, got {created}"
    return created.pop()


def error_line(stderr: str) -> str:
    """The one ``eval.py: error: ...`` line of ``stderr``, checking there is no traceback.

    Progress bars (tqdm, ``\\r``-separated) may precede it on stderr; the error is the last line.
    """
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("eval.py: error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], stderr
    return errors[0]


def run_eval_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``eval.main`` expecting a user error (exit status 2); return its one stderr line."""
    with pytest.raises(SystemExit) as exit_info:
        eval_cli.main(argv)
    assert exit_info.value.code == 2
    return error_line(capsys.readouterr().err)


def read_results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


def read_csv_rows(path: Path) -> list[list[str]]:
    with path.open(newline="") as stream:
        return list(csv.reader(stream))


# ------------------------------------------------------------------------------ published sets
def test_published_set_name_in_any_case_and_perfect_recall(
    sped_dir: Path, checkpoints: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the published name is "SPED", this project's "sped"; both and any other case name one set
    run_dir = run_eval([
        "--ckpt_path", str(checkpoints["lightning"]), "--data_dir", str(sped_dir),
        "--val_datasets", "sPeD", "SPED", "sped", *common_flags(tmp_path),
    ])
    results = read_results(run_dir)
    assert list(results) == ["sped"]
    entry = results["sped"]
    assert entry["recall@k"]["1"] == 100.0
    assert entry["num_queries"] == len(QUERY_COPIES) and entry["num_db"] == SPED_DB
    assert entry["image_size"] == [IMAGE_SIDE, IMAGE_SIDE]
    assert entry["checkpoint"] == str(checkpoints["lightning"])
    assert entry["recall_curve"] == [100.0] * SPED_DB  # k = database size
    assert (run_dir / "recall_sped.png").stat().st_size > 0
    stdout = capsys.readouterr().out
    assert "R@1" in stdout and "100.00" in stdout and str(run_dir) in stdout


def test_recalls_match_the_predictions_and_both_checkpoint_kinds_agree(
    sped_one_wrong_dir: Path, checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    """The bare state dict (with flags) and the Lightning checkpoint (no flags) rank alike;
    results.json's recalls are those of the ranked predictions in the CSV; prediction images
    are saved for every query, or only for the wrong ones."""
    csv_rows, recalls, image_names = {}, {}, {}
    for kind, flags in (("bare", TINY_FLAGS), ("lightning", ["--save_only_wrong_preds"])):
        csv_path = tmp_path / f"{kind}.csv"
        run_dir = run_eval([
            "--ckpt_path", str(checkpoints[kind]), *flags, "--data_dir", str(sped_one_wrong_dir),
            "--val_datasets", "SPED", "--save_predictions", str(csv_path), "--num_preds_to_save", "2",
            *common_flags(tmp_path),
        ])
        csv_rows[kind] = np.array(read_csv_rows(csv_path)[1:])
        recalls[kind] = {int(k): v for k, v in read_results(run_dir)["sped"]["recall@k"].items()}
        image_names[kind] = sorted(path.name for path in (run_dir / "predictions" / "sped").iterdir())
        if kind == "bare":
            with Image.open(run_dir / "predictions" / "sped" / "00000_0000000.png") as image:
                assert image.width > 2 * image.height  # the query and two predictions side by side

    assert image_names["bare"] == ["00000_0000000.png", "00001_0000001.png", "00002_0000002.png"]
    assert image_names["lightning"] == ["00001_0000001.png"]  # only query 1 misses at rank 1

    bare, lightning = csv_rows["bare"], csv_rows["lightning"]  # query, then (pred, sq_l2_dist, correct) per rank
    np.testing.assert_array_equal(bare[:, 1::3], lightning[:, 1::3])  # same ranking
    np.testing.assert_allclose(bare[:, 2::3].astype(float), lightning[:, 2::3].astype(float), atol=1e-5)
    assert recalls["bare"] == recalls["lightning"]

    assert recalls["bare"][1] == pytest.approx(200 / 3)  # queries 0 and 2 hit, query 1 misses at rank 1
    db_index = {f"ref/{i:07d}.jpg": i for i in range(SPED_DB)}  # paths relative to the set's root
    predictions = np.array([[db_index[path] for path in row[1::3]] for row in bare])
    assert bare[:, 3].tolist() == ["1", "0", "1"]  # correct_1
    assert predictions[:, 0].tolist() == QUERY_COPIES  # each copy is found first
    assert list(recalls["bare"]) == [1, 5, 10, 15, 20, 25]  # K beyond the 6 database images: recall@6
    expected = recall_at_k(predictions, [np.array([1]), np.array([0]), np.array([5])], [1, 5, 6])
    assert recalls["bare"] == pytest.approx({1: expected[1], 5: expected[5], **{k: expected[6] for k in (10, 15, 20, 25)}})


def test_descriptor_cache_is_reused_and_every_run_gets_a_new_folder(
    sped_dir: Path, checkpoints: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    argv = [
        "--ckpt_path", str(checkpoints["lightning"]), "--data_dir", str(sped_dir), "--val_datasets", "sped",
        "--cache_descriptors", "--cache_dir", str(tmp_path / "cache"), *common_flags(tmp_path),
    ]
    first_run = run_eval(argv)
    assert len(list((tmp_path / "cache").glob("sped_*.npy"))) == 1

    def must_not_run(*args: object, **kwargs: object) -> None:
        raise AssertionError("descriptors were computed again instead of read from the cache")

    import utils.evaluation.pipeline

    monkeypatch.setattr(utils.evaluation.pipeline, "compute_descriptors", must_not_run)
    with caplog.at_level(logging.INFO):
        second_run = run_eval(argv)
    assert "reusing cached descriptors" in caplog.text
    assert read_results(second_run) == read_results(first_run)
    assert first_run != second_run and first_run.parent == second_run.parent == tmp_path / "logs"
    assert first_run.name.startswith("lightning_") and second_run.name.startswith("lightning_")


@pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning")
def test_decoding_on_the_device_gives_the_same_recall_and_its_own_cache_entry(
    sped_dir: Path, checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    argv = [
        "--ckpt_path", str(checkpoints["lightning"]), "--data_dir", str(sped_dir), "--val_datasets", "sped",
        "--cache_descriptors", "--cache_dir", str(tmp_path / "cache"), *common_flags(tmp_path),
    ]
    with_pil = read_results(run_eval(argv))["sped"]
    on_device = read_results(run_eval([*argv, "--decode_on_device"]))["sped"]
    assert on_device["recall@k"] == with_pil["recall@k"] and with_pil["recall@k"]["1"] == 100.0
    cached = sorted((tmp_path / "cache").glob("sped_*.npy"))
    assert len(cached) == 2  # torchvision's pixels are not PIL's: never served from the other's entry
    first, second = (np.load(path) for path in cached)
    cosines = (first * second).sum(axis=1) / np.linalg.norm(first, axis=1) / np.linalg.norm(second, axis=1)
    assert cosines.min() > 0.999


def test_native_resolution_batches_images_by_size(
    tmp_path: Path, checkpoints: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    data_dir = make_sped(tmp_path / "data", QUERY_COPIES)
    write_image(data_dir / "SPEDTEST" / "ref" / f"{0:07d}.jpg", seed=7, size=(70, 42))  # another size
    flags = common_flags(tmp_path)
    del flags[0:3]  # no --image_size
    with caplog.at_level(logging.INFO):
        run_dir = run_eval([
            "--ckpt_path", str(checkpoints["lightning"]), "--data_dir", str(data_dir), "--val_datasets", "sped",
            *flags,
        ])
    assert "sped at native resolution: image sizes 2, batches 3" in caplog.text  # database and queries apart
    entry = read_results(run_dir)["sped"]
    assert entry["image_size"] == "native" and entry["recall@k"]["1"] == 100.0


def test_one_image_size_is_a_square_and_a_size_off_the_patch_grid_names_the_flag(
    sped_dir: Path, checkpoints: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flags = ["--batch_size", "16", "--num_workers", "0", "--device", "cpu", "--log_dir", str(tmp_path / "logs")]
    common = ["--ckpt_path", str(checkpoints["lightning"]), "--data_dir", str(sped_dir), "--val_datasets", "sped", *flags]
    run_dir = run_eval([*common, "--image_size", str(IMAGE_SIDE)])
    assert read_results(run_dir)["sped"]["image_size"] == [IMAGE_SIDE, IMAGE_SIDE]
    line = run_eval_error([*common, "--image_size", "60", "56"], capsys)
    assert line == (
        "eval.py: error: --image_size [60, 56]: image size 60x56 is not a multiple of the patch size 14 of DINOv2 "
        "(e.g. use 56x56)"
    )
    line = run_eval_error([*common, "--image_size", "56", "56", "56"], capsys)
    assert "--image_size takes one or two positive integers" in line


def test_released_name_describes_a_bare_state_dict_and_sets_the_image_size(
    sped_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "dino_salad_512_32.ckpt"
    torch.save(load_network(release="dinov2_salad_512_32", pretrained=False).network.state_dict(), path)
    with caplog.at_level(logging.INFO):
        run_dir = run_eval([
            "--released", "dinov2_salad_512_32", "--ckpt_path", str(path), "--data_dir", str(sped_dir),
            "--val_datasets", "sped", "--num_workers", "0", "--device", "cpu", "--log_dir", str(tmp_path / "logs"),
        ])
    entry = read_results(run_dir)["sped"]
    assert entry["image_size"] == [322, 322]  # the release's evaluation size
    assert entry["architecture"]["agg_config"]["num_clusters"] == 16
    assert "architecture from the command-line flags" in caplog.text


def test_no_architecture_flag_says_the_defaults_are_used(
    sped_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import eval as module

    monkeypatch.setattr(module, "DEFAULT_RELEASE", "dinov2_salad_512_32")  # a smaller paper model, same code path
    with caplog.at_level(logging.INFO):
        run_eval([  # 5 x 5 patches: more than the 16 clusters
            "--random_weights", "--data_dir", str(sped_dir), "--val_datasets", "sped", "--image_size", "70",
            "--num_workers", "0", "--device", "cpu", "--log_dir", str(tmp_path / "logs"),
        ])
    assert "architecture from the defaults: dinov2_salad_512_32's" in caplog.text


# ------------------------------------------------------------------------------ folder sets
def test_folders_with_utm_labels(tmp_path: Path, checkpoints: dict[str, Path]) -> None:
    db_folder, query_folder = tmp_path / "db", tmp_path / "queries"
    db_images = [write_image(db_folder / f"@{100.0 * i:.2f}@4000000.00@.jpg", seed=200 + i) for i in range(4)]
    # query 0 is 5 m from database image 2 (its copy), query 1 is 3 m from database image 0
    copy_image(db_images[2], query_folder / "@205.00@4000000.00@.jpg")
    copy_image(db_images[0], query_folder / "@3.00@4000000.00@.jpg")
    run_dir = run_eval([
        "--ckpt_path", str(checkpoints["lightning"]), "--database_folder", str(db_folder),
        "--queries_folder", str(query_folder), *common_flags(tmp_path),
    ])
    results = read_results(run_dir)
    assert list(results) == ["folders"]  # replaces the default published sets
    assert results["folders"]["recall@k"]["1"] == 100.0
    assert results["folders"]["num_db"] == 4 and results["folders"]["num_queries"] == 2


def test_unlabelled_folders_write_the_predictions_csv(tmp_path: Path, checkpoints: dict[str, Path]) -> None:
    db_folder, query_folder = tmp_path / "db", tmp_path / "queries"
    db_images = [write_image(db_folder / f"place_{i}.jpg", seed=300 + i) for i in range(4)]
    copy_image(db_images[3], query_folder / "a.jpg")
    copy_image(db_images[1], query_folder / "b.jpg")
    csv_path = tmp_path / "out" / "predictions.csv"
    run_dir = run_eval([
        "--ckpt_path", str(checkpoints["lightning"]), "--database_folder", str(db_folder),
        "--queries_folder", str(query_folder), "--no_labels", "--save_predictions", str(csv_path),
        "--top_k", "50", *common_flags(tmp_path),
    ])
    rows = read_csv_rows(csv_path)
    assert rows[0] == ["query"] + [f"{kind}_{rank}" for rank in range(1, 5) for kind in ("pred", "sq_l2_dist")]
    assert [row[0] for row in rows[1:]] == ["queries/a.jpg", "queries/b.jpg"]  # relative to the folders' parent
    for row, copied in zip(rows[1:], (3, 1)):
        assert tmp_path / row[1] == db_images[copied]
        assert float(row[2]) == pytest.approx(0.0, abs=1e-5)
        assert sorted(Path(path).name for path in row[1::2]) == [f"place_{i}.jpg" for i in range(4)]
        distances = [float(d) for d in row[2::2]]
        assert distances == sorted(distances)
    assert not (run_dir / "results.json").exists()  # nothing to score without labels


def test_existing_predictions_csv_is_never_overwritten(
    sped_dir: Path, checkpoints: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv_path = tmp_path / "mine.csv"
    csv_path.write_text("user data\n")
    line = run_eval_error([
        "--ckpt_path", str(checkpoints["lightning"]), "--data_dir", str(sped_dir), "--val_datasets", "sped",
        "--save_predictions", str(csv_path), *common_flags(tmp_path),
    ], capsys)
    assert str(csv_path) in line and "already exists" in line
    assert csv_path.read_text() == "user data\n"


# ------------------------------------------------------------------------------ MSLS challenge
MSLS_CITIES = ("miami", "athens")


def msls_key(city: str, role: str, index: int) -> str:
    return f"{city}{role}{index}".ljust(22, "x")


def make_msls_test(data_dir: Path) -> dict[str, list[str]]:
    """Two cities of 3 database images; miami query 0 copies an *athens* database image.

    Returns the keys: ``{"<city>_db": [...], "<city>_q": [...]}``.
    """
    keys: dict[str, list[str]] = {}
    db_paths, query_paths, files = [], [], {}
    for c, city in enumerate(MSLS_CITIES):
        keys[f"{city}_db"] = [msls_key(city, "Db", i) for i in range(3)]
        for i, key in enumerate(keys[f"{city}_db"]):
            path = f"test/{city}/database/images/{key}.jpg"
            files[(city, i)] = write_image(data_dir / "mapillary" / path, seed=400 + 10 * c + i)
            db_paths.append(path)
    copies = {"miami": [("athens", 0), ("miami", 1)], "athens": [("athens", 2), ("miami", 2)]}
    for city in MSLS_CITIES:
        keys[f"{city}_q"] = [msls_key(city, "Q", j) for j in range(2)]
        for key, source in zip(keys[f"{city}_q"], copies[city]):
            path = f"test/{city}/query/images/{key}.jpg"
            copy_image(files[source], data_dir / "mapillary" / path)
            query_paths.append(path)
    index = data_dir / "datasets" / "msls_test"
    index.mkdir(parents=True)
    np.save(index / "msls_test_dbImages.npy", np.array(db_paths, dtype=object), allow_pickle=True)
    np.save(index / "msls_test_qImages.npy", np.array(query_paths, dtype=object), allow_pickle=True)
    return keys


def read_challenge_file(run_dir: Path) -> dict[str, list[str]]:
    lines = (run_dir / "msls_challenge_predictions.txt").read_text().splitlines()
    return {line.split(" ")[0]: line.split(" ")[1:] for line in lines}


@pytest.mark.parametrize("per_city", [False, True])
def test_msls_challenge_file(
    per_city: bool, tmp_path: Path, checkpoints: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    keys = make_msls_test(tmp_path / "data")
    run_dir = run_eval([
        "--ckpt_path", str(checkpoints["lightning"]), "--data_dir", str(tmp_path / "data"),
        "--val_datasets", "MSLS_Test", *(["--per_city"] if per_city else []), *common_flags(tmp_path),
    ])
    assert str(run_dir / "msls_challenge_predictions.txt") in capsys.readouterr().out
    predictions = read_challenge_file(run_dir)
    all_queries = keys["miami_q"] + keys["athens_q"]
    assert list(predictions) == all_queries
    for query, ranked in predictions.items():
        assert len(ranked) == (3 if per_city else 6)  # every database image, or every one of the city
        assert len(set(ranked)) == len(ranked)
    miami_query_0 = predictions[keys["miami_q"][0]]
    if per_city:
        for city in MSLS_CITIES:
            for query in keys[f"{city}_q"]:
                assert set(predictions[query]) == set(keys[f"{city}_db"])
        assert predictions[keys["miami_q"][1]][0] == keys["miami_db"][1]
    else:
        assert miami_query_0[0] == keys["athens_db"][0]  # its copy, in the other city
        assert predictions[keys["athens_q"][1]][0] == keys["miami_db"][2]
    assert not (run_dir / "results.json").exists()  # the challenge set has no labels


# ------------------------------------------------------------------------------ architecture
def test_random_weights_are_seed_then_build(tmp_path: Path) -> None:
    from pytorch_lightning import seed_everything

    seed_everything(3)
    expected = build_vpr_net(TINY_BACKBONE, TINY_BACKBONE_CONFIG, "SALAD", tiny_architecture().agg_config)
    architecture = Architecture(TINY_BACKBONE, dict(TINY_BACKBONE_CONFIG), "SALAD", dict(TINY_SALAD))
    loaded = load_network(architecture=architecture, random_weights=True, seed=3)
    assert loaded.architecture.agg_config["in_channels"] == EMBED_DIM_VITS14  # filled from the backbone
    assert loaded.weights == "random (seed 3)"
    actual = loaded.network.state_dict()
    assert actual.keys() == expected.state_dict().keys()
    for name, tensor in expected.state_dict().items():
        torch.testing.assert_close(actual[name], tensor, rtol=0, atol=0, msg=name)
    other = load_network(architecture=architecture, random_weights=True, seed=4).network.state_dict()
    weight = "aggregator.cluster_features.0.weight"
    assert not torch.equal(other[weight], actual[weight])


def test_random_weights_without_checkpoint_from_the_command_line(
    sped_dir: Path, tmp_path: Path
) -> None:
    run_dir = run_eval([
        "--random_weights", "--seed", "2", *TINY_FLAGS, "--data_dir", str(sped_dir), "--val_datasets", "sped",
        *common_flags(tmp_path),
    ])
    entry = read_results(run_dir)["sped"]
    assert run_dir.name.startswith("random_weights_")
    assert entry["weights"] == "random (seed 2)" and entry["checkpoint"] is None
    assert entry["recall@k"]["1"] == 100.0  # copies are found whatever the weights


def test_stored_architecture_never_downloads_pretrained_weights(tmp_path: Path) -> None:
    stored = tiny_architecture().as_dict()
    stored["backbone_config"] |= {"pretrained": True, "pretrained_path": str(tmp_path / "absent.pth")}
    architecture = architecture_from_payload({"hyper_parameters": stored}, "test.ckpt")
    model = build_network(architecture, pretrained_backbone=False)
    resolved = model.architecture
    assert "pretrained" not in resolved.backbone_config and "pretrained_path" not in resolved.backbone_config
    assert model.backbone.out_channels == EMBED_DIM_VITS14


def test_partial_hyperparameters_are_an_error() -> None:
    with pytest.raises(ValueError, match="lacks agg_arch, agg_config"):
        architecture_from_payload({"hyper_parameters": {"backbone_arch": "x", "backbone_config": {}}}, "a.ckpt")
    assert architecture_from_payload({"state_dict": {}}, "a.ckpt") is None


# ------------------------------------------------------------------------------ checkpoint URLs
def test_a_checkpoint_url_evaluates_like_its_file_and_is_recorded_as_typed(
    served: tuple[str, Path], download_folder: Path, sped_dir: Path, checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    base, folder = served
    shutil.copy(checkpoints["lightning"], folder / "lightning.ckpt")
    for url, recorded in ((f"{base}/lightning.ckpt", f"{base}/lightning.ckpt"),
                          (checkpoints["lightning"].as_uri(), str(checkpoints["lightning"]))):
        run_dir = run_eval(["--ckpt_path", url, "--data_dir", str(sped_dir), "--val_datasets", "sped", *common_flags(tmp_path)])
        entry = read_results(run_dir)["sped"]
        assert entry["recall@k"]["1"] == 100.0 and entry["checkpoint"] == recorded and "lightning" in run_dir.name
    row = checkpoint_row(f"{base}/lightning.ckpt")  # a comparison's row of one's own checkpoint
    assert row.name == "lightning" and row.load().checkpoint.read_bytes() == checkpoints["lightning"].read_bytes()


def test_a_planted_checkpoint_url_is_refused_by_its_url_and_other_schemes_before_any_work(
    served: tuple[str, Path], download_folder: Path, sped_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base, folder = served
    marker = tmp_path / "marker"
    planted_checkpoint(folder / "evil.ckpt", marker)
    flags = ["--data_dir", str(sped_dir), "--val_datasets", "sped", *common_flags(tmp_path)]
    line = run_eval_error(["--ckpt_path", f"{base}/evil.ckpt", *flags], capsys)
    assert line.startswith(f"eval.py: error: checkpoint {base}/evil.ckpt is not a plain tensor file loadable with "
                           "weights_only=True (refused, not executed)")
    assert not marker.exists() and list(download_folder.iterdir()) == []  # the refused copy removed at once
    line = run_eval_error(["--ckpt_path", "s3://bucket/last.ckpt", *flags], capsys)
    assert line == ("eval.py: error: checkpoint s3://bucket/last.ckpt: s3:// paths are not read; copy the file here "
                    "and pass its local path")
    assert not (tmp_path / "logs").exists()


# ------------------------------------------------------------------------------ user errors
def test_missing_checkpoint(sped_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nothing.ckpt"
    line = run_eval_error([
        "--ckpt_path", str(missing), "--data_dir", str(sped_dir), "--val_datasets", "sped", *common_flags(tmp_path),
    ], capsys)
    assert line == f"eval.py: error: --ckpt_path {missing} does not exist"


def test_checkpoint_that_does_not_fit_the_flags(
    sped_dir: Path, checkpoints: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong_sizes = [flag if flag != "8" else "16" for flag in TINY_FLAGS]  # cluster_dim/token_dim 16
    line = run_eval_error([
        "--ckpt_path", str(checkpoints["bare"]), *wrong_sizes, "--data_dir", str(sped_dir),
        "--val_datasets", "sped", *common_flags(tmp_path),
    ], capsys)
    assert "does not fit this architecture" in line and "--num_clusters" in line


def test_a_checkpoint_of_another_architecture_given_as_a_release_is_refused(
    sped_dir: Path, checkpoints: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--released cosplace=FILE`` with FILE recording a ViT-S SALAD: no row named cosplace holds it."""
    flags = ["--data_dir", str(sped_dir), "--val_datasets", "sped", *common_flags(tmp_path)]
    for release, architecture in [("cosplace_resnet50_2048", "resnet50 + CosPlace, 2048-d"),
                                  ("megaloc", "dinov2_vitb14 + ProjectedSALAD, 8448-d")]:
        line = run_eval_error(["--released", f"{release}={checkpoints['lightning']}", "dinov2_boq", *flags], capsys)
        assert line.startswith(
            f"eval.py: error: checkpoint {checkpoints['lightning']} records dinov2_vits14 + SALAD, 40-d descriptors, "
            f"not the architecture of release {release} ({architecture} descriptors): "
        ) and line.endswith("or load this one without naming a release (it builds the architecture it records)")
    line = run_eval_error(["--released", "megaloc", "--ckpt_path", str(checkpoints["lightning"]), *flags], capsys)
    assert "records dinov2_vits14 + SALAD, 40-d descriptors, not the architecture of release megaloc" in line


def test_a_checkpoint_holding_nan_is_refused_naming_it(
    sped_dir: Path, checkpoints: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    payload = torch.load(checkpoints["lightning"], weights_only=True)
    payload["state_dict"]["aggregator.dust_bin"] = torch.tensor(float("nan"))  # a diverged training's last save
    torch.save(payload, tmp_path / "diverged.ckpt")
    line = run_eval_error([
        "--ckpt_path", str(tmp_path / "diverged.ckpt"), "--data_dir", str(sped_dir), "--val_datasets", "sped",
        *common_flags(tmp_path),
    ], capsys)
    assert line.startswith(f"eval.py: error: checkpoint {tmp_path / 'diverged.ckpt'} holds NaN or infinite weights (1 of ")
    assert line.endswith("tensors, first: aggregator.dust_bin): it was saved after its training diverged; use an earlier checkpoint")
    assert not (tmp_path / "logs").exists()  # refused before any run folder


def test_no_checkpoint_and_no_random_weights(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = run_eval_error(["--val_datasets", "sped", *common_flags(tmp_path)], capsys)
    assert "--ckpt_path is required" in line


def test_unknown_set_name(sped_dir: Path, checkpoints: dict[str, Path], tmp_path: Path, capsys) -> None:
    line = run_eval_error([
        "--ckpt_path", str(checkpoints["lightning"]), "--data_dir", str(sped_dir), "--val_datasets", "tokyo",
        *common_flags(tmp_path),
    ], capsys)
    assert "unknown evaluation set 'tokyo'" in line


def test_missing_data_root(sped_dir: Path, checkpoints: dict[str, Path], tmp_path: Path, capsys) -> None:
    line = run_eval_error([
        "--ckpt_path", str(checkpoints["lightning"]), "--val_datasets", "sped", *common_flags(tmp_path),
    ], capsys)
    assert "no index folder given" in line and "--data_dir" in line
    shutil.rmtree(sped_dir / "SPEDTEST")
    line = run_eval_error([
        "--ckpt_path", str(checkpoints["lightning"]), "--data_dir", str(sped_dir), "--val_datasets", "sped",
        *common_flags(tmp_path),
    ], capsys)
    assert line.endswith(f"image folder {sped_dir / 'SPEDTEST'} does not exist (set by --data_dir {sped_dir})")


def test_missing_index_file(sped_dir: Path, checkpoints: dict[str, Path], tmp_path: Path, capsys) -> None:
    (sped_dir / "datasets" / "SPED" / "SPED_gt.npy").unlink()
    line = run_eval_error([
        "--ckpt_path", str(checkpoints["lightning"]), "--data_dir", str(sped_dir), "--val_datasets", "sped",
        *common_flags(tmp_path),
    ], capsys)
    assert "SPED_gt.npy not found" in line


def test_missing_images_are_reported_before_the_model_is_built(
    sped_dir: Path, checkpoints: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (sped_dir / "SPEDTEST" / "query" / "0000002.jpg").unlink()
    monkeypatch.setattr(eval_cli, "load_network", lambda *args, **kwargs: pytest.fail("model built before the check"))
    line = run_eval_error([
        "--ckpt_path", str(checkpoints["lightning"]), "--data_dir", str(sped_dir), "--val_datasets", "sped",
        *common_flags(tmp_path),
    ], capsys)
    assert "1 of 9 images are missing" in line and "0000002.jpg" in line
    assert not (tmp_path / "logs").exists()  # no run folder for a run that never started


def test_error_from_the_command_line_is_one_line_without_traceback(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "eval.py", "--random_weights",
         "--val_datasets", "sped", "--data_dir", str(tmp_path / "no_data"), "--log_dir", str(tmp_path / "logs")],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert completed.returncode == 2
    assert completed.stderr.strip().splitlines() == [error_line(completed.stderr)]
    assert "SPED_dbImages.npy not found" in completed.stderr


def test_a_bug_in_an_aggregator_keeps_its_traceback(
    sped_dir: Path, checkpoints: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only a UserError is one line: a ValueError raised by a bug inside a model's forward reaches
    the console as an exception with the frames that raised it, not as ``eval.py: error: ...``."""
    def broken_forward(self, *args, **kwargs):
        raise ValueError("a bug inside the aggregator")

    monkeypatch.setattr(SALAD, "forward", broken_forward)
    with pytest.raises(ValueError, match="a bug inside the aggregator") as info:
        eval_cli.main([
            "--ckpt_path", str(checkpoints["lightning"]), "--data_dir", str(sped_dir), "--val_datasets", "sped",
            *common_flags(tmp_path),
        ])
    assert not isinstance(info.value, UserError)
    assert traceback.extract_tb(info.value.__traceback__)[-1].name == "broken_forward"
