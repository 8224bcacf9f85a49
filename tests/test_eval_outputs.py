"""What an evaluation computes and leaves behind: exact preprocessing by default, descriptor files,
run folders of unlabelled runs, recall beyond the database, the library without argparse, and
errors that name the image or the flag."""

from __future__ import annotations

import errno
import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms as T
from PIL import Image

from dataloaders.eval_sets import DataRoots, load_eval_set
from dataloaders.image_io import load_image
from dataloaders.transforms import IMAGENET_MEAN, IMAGENET_STD, EvalPreprocessing
from models import Architecture, build_network
from models.loading import load_network
import eval as eval_cli
from tests.test_eval_cli import (  # noqa: F401 (fixtures)
    QUERY_COPIES,
    SPED_DB,
    checkpoints,
    common_flags,
    copy_image,
    read_csv_rows,
    read_results,
    run_eval,
    run_eval_error,
    sped_dir,
    write_image,
)
from utils.evaluation.outputs import OutputWriter, ResultsJson
from utils.evaluation.pipeline import DescribedModel, EvalOptions, Evaluator, evaluate_sets
from utils.evaluation.inference import compute_descriptors


def photo(path: Path, size: tuple[int, int], seed: int = 0) -> Path:
    """A smooth photo-like JPEG of ``size`` (width, height)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(12, 12, 3), dtype=np.uint8)
    Image.fromarray(coarse).resize(size, Image.Resampling.BICUBIC).save(path, format="JPEG", quality=92)
    return path


def published_pixels(path: Path, size: tuple[int, int]) -> torch.Tensor:
    """The published evaluation transform, written out: full decode, torchvision bilinear resize."""
    transform = T.Compose([T.Resize(size, interpolation=T.InterpolationMode.BILINEAR), T.ToTensor(),
                           T.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD)])
    with Image.open(path) as image:
        return transform(image.convert("RGB"))


def test_evaluation_decodes_large_photos_exactly_unless_draft_decoding_is_asked(tmp_path: Path) -> None:
    path = photo(tmp_path / "large.jpg", (1331, 1331))
    size = (322, 322)
    exact = EvalPreprocessing(size)
    pixels = exact.transform()(load_image(path, min_size=exact.decode_size))
    assert torch.equal(pixels, published_pixels(path, size))
    draft = EvalPreprocessing(size, draft_decode=True)
    drafted = draft.transform()(load_image(path, min_size=draft.decode_size))
    assert drafted.shape == pixels.shape and not torch.equal(drafted, pixels)  # decoded at 1/4 scale first


def test_native_resolution_caps_the_longer_side_and_names_the_images_it_scales(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from dataloaders.size_buckets import resized_sizes

    paths = [photo(tmp_path / "big.jpg", (1500, 1000)), photo(tmp_path / "small.jpg", (640, 480))]
    with caplog.at_level(logging.INFO):
        sizes = resized_sizes(paths, EvalPreprocessing(None, patch_size=14, max_side=700))
    assert sizes == [(700, 462), (644, 476)]  # 1500 x 1000 -> 700 x 467 -> multiples of 14
    assert "1 images are larger than max_side=700" in caplog.text and "big.jpg (1500x1000)" in caplog.text
    assert "small.jpg" not in caplog.text


def test_an_image_too_small_for_the_model_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    database, queries = tmp_path / "db", tmp_path / "q"
    for i in range(3):
        write_image(database / f"{i}.jpg", seed=i, size=(56, 56))
    write_image(queries / "thumbnail.jpg", seed=9, size=(10, 10))
    model = build_network(Architecture("dinov2_vits14", {"num_trainable_blocks": 1}, "SALAD",
                                       {"num_clusters": 4, "cluster_dim": 4, "token_dim": 4}))
    checkpoint = tmp_path / "salad.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": model.architecture.as_dict()}, checkpoint)
    line = run_eval_error([
        "--ckpt_path", str(checkpoint), "--database_folder", str(database), "--queries_folder", str(queries),
        "--no_labels", "--num_workers", "0", "--device", "cpu", "--log_dir", str(tmp_path / "logs"),
    ], capsys)
    assert "thumbnail.jpg (14x14 as the model sees it)" in line and "more features than clusters" in line


def test_descriptors_are_written_as_a_result_with_paths_positions_and_metadata(
    tmp_path: Path, checkpoints: dict[str, Path]
) -> None:
    db_folder, query_folder = tmp_path / "db", tmp_path / "queries"
    db_images = [write_image(db_folder / f"@{100 * i}.00@4000000.00@.jpg", seed=300 + i) for i in range(3)]
    copy_image(db_images[1], query_folder / "@105.00@4000000.00@.jpg")
    run_dir = run_eval([
        "--ckpt_path", str(checkpoints["lightning"]), "--database_folder", str(db_folder),
        "--queries_folder", str(query_folder), "--save_descriptors", *common_flags(tmp_path),
    ])
    with np.load(run_dir / "descriptors_folders.npz", allow_pickle=False) as saved:  # plain arrays only
        arrays = dict(saved)
    assert arrays["database"].shape == (3, 40) and arrays["queries"].shape == (1, 40)
    assert [Path(p).name for p in arrays["database_paths"]] == [path.name for path in db_images]
    np.testing.assert_array_equal(arrays["database_positions"], [[0, 4e6], [100, 4e6], [200, 4e6]])
    np.testing.assert_array_equal(arrays["query_positions"], [[105, 4e6]])
    metadata = json.loads(str(arrays["metadata"]))
    assert metadata["architecture"]["agg_arch"] == "SALAD" and metadata["image_size"] == [56, 56]
    assert metadata["precision"] == "fp32" and metadata["descriptor_dim"] == 40
    # they are the model's descriptors of those images
    model = load_network(checkpoints["lightning"]).network
    expected = compute_descriptors(
        model, _ImagesOf([*db_images, query_folder / "@105.00@4000000.00@.jpg"], (56, 56)), 4, 0, torch.device("cpu")
    )
    np.testing.assert_allclose(np.concatenate([arrays["database"], arrays["queries"]]), expected, atol=1e-6)


class _ImagesOf(torch.utils.data.Dataset):
    def __init__(self, paths: list[Path], size: tuple[int, int]) -> None:
        self.paths, self.transform = paths, EvalPreprocessing(size).transform()

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(load_image(self.paths[index])), index


def test_an_unlabelled_run_leaves_its_predictions_and_what_ran_in_its_folder(
    tmp_path: Path, checkpoints: dict[str, Path]
) -> None:
    db_folder, query_folder = tmp_path / "db", tmp_path / "queries"
    db_images = [write_image(db_folder / f"place_{i}.jpg", seed=300 + i) for i in range(3)]
    copy_image(db_images[2], query_folder / "a.jpg")
    run_dir = run_eval([
        "--ckpt_path", str(checkpoints["lightning"]), "--database_folder", str(db_folder),
        "--queries_folder", str(query_folder), "--no_labels", *common_flags(tmp_path),
    ])
    rows = read_csv_rows(run_dir / "predictions_folders.csv")
    assert Path(rows[1][0]).name == "a.jpg" and Path(rows[1][1]).name == "place_2.jpg"
    run = json.loads((run_dir / "run.json").read_text())
    assert run["sets"] == ["folders"] and run["checkpoint"] == str(checkpoints["lightning"])
    assert run["architecture"]["backbone_arch"] == "dinov2_vits14" and run["image_size"] == [56, 56]


def test_recall_values_are_the_ones_asked_for(sped_dir: Path, checkpoints: dict[str, Path], tmp_path: Path) -> None:
    run_dir = run_eval([
        "--ckpt_path", str(checkpoints["lightning"]), "--data_dir", str(sped_dir), "--val_datasets", "sped",
        "--recall_values", "3", "1", "100", *common_flags(tmp_path),
    ])
    recalls = read_results(run_dir)["sped"]["recall@k"]
    assert list(recalls) == ["1", "3", "100"] and recalls["100"] == 100.0  # 100 > the 6 database images


def test_a_folder_as_checkpoint_and_an_unwritable_predictions_path_are_named_before_any_work(
    sped_dir: Path, checkpoints: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["--data_dir", str(sped_dir), "--val_datasets", "sped", *common_flags(tmp_path)]
    line = run_eval_error(["--ckpt_path", str(tmp_path), *common], capsys)
    assert line == f"eval.py: error: --ckpt_path {tmp_path} is a folder; give the checkpoint file in it (e.g. last.ckpt)"
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    line = run_eval_error(
        ["--ckpt_path", str(checkpoints["lightning"]), "--save_predictions", str(blocker / "p.csv"), *common], capsys
    )
    assert f"--save_predictions {blocker / 'p.csv'}: cannot write" in line and "a_file is not a writable folder" in line
    assert not (tmp_path / "logs").exists()  # refused before the model, the run folder and any descriptor


def test_results_are_on_disk_before_an_optional_output_fails(sped_dir: Path, checkpoints: dict[str, Path], tmp_path: Path) -> None:
    class Failing(OutputWriter):
        def write(self, evaluation, evaluator) -> None:
            raise OSError("disk full")

    loaded = load_network(checkpoints["lightning"])
    evaluator = Evaluator(DescribedModel(loaded.network, loaded.architecture.as_dict()),
                          EvalOptions(image_size=(56, 56), num_workers=0, device="cpu"))
    eval_set = load_eval_set("sped", DataRoots(data_dir=str(sped_dir)))
    with pytest.raises(OSError, match="disk full"):
        evaluate_sets(evaluator, [eval_set], [ResultsJson(tmp_path), Failing()])
    assert json.loads((tmp_path / "results.json").read_text())["sped"]["recall@k"]["1"] == 100.0


def test_python_users_evaluate_without_argparse(sped_dir: Path, checkpoints: dict[str, Path]) -> None:
    """The module docstring's recipe: a network, options, a set."""
    architecture = Architecture("dinov2_vits14", {"num_trainable_blocks": 1}, "SALAD", {"num_clusters": 4, "cluster_dim": 8, "token_dim": 8})
    network = load_network(checkpoints["bare"], architecture=architecture).network
    evaluator = Evaluator(DescribedModel.of(network), EvalOptions(image_size=(56, 56), num_workers=0, device="cpu"))
    result = evaluator.evaluate(load_eval_set("sped", DataRoots(data_dir=str(sped_dir))))
    assert result.retrieval.recalls[1] == 100.0
    assert result.descriptors.shape == (SPED_DB + len(QUERY_COPIES), 40)
    assert result.retrieval.indices[:, 0].tolist() == QUERY_COPIES


def test_a_full_disk_leaves_no_torn_descriptors_file_and_names_it(
    tmp_path: Path, checkpoints: dict[str, Path], monkeypatch, capsys
) -> None:
    db_folder, query_folder = tmp_path / "db", tmp_path / "queries"
    db_images = [write_image(db_folder / f"@{100 * i}.00@4000000.00@.jpg", seed=300 + i) for i in range(2)]
    copy_image(db_images[1], query_folder / "@105.00@4000000.00@.jpg")

    def full_disk(stream, **arrays):
        stream.write(b"PK\x03\x04 half an archive")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", full_disk)
    with pytest.raises(SystemExit):
        eval_cli.main(["--ckpt_path", str(checkpoints["lightning"]), "--database_folder", str(db_folder),
                       "--queries_folder", str(query_folder), "--save_descriptors", *common_flags(tmp_path)])
    assert re.search(r"could not write \S*/descriptors_folders\.npz: No space left on device$", capsys.readouterr().err.strip())
    assert not [path.name for path in (tmp_path / "logs").rglob("*.npz*")]
