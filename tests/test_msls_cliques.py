"""MSLS clique batches (CliqueMining) on the toy world: batch properties, bad data, training with
configs/cliquemining.yaml on both training sets, and a bit-exact resume."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import eval as eval_cli
import main as train_cli
from dataloaders.msls_cliques import (
    MissingImageError, MSLSCliquesDataset, draw_similar_clusters, read_msls_city,
)
from dataloaders.place_sampling import PlaceSampler
from dataloaders.transforms import eval_transform
from dataloaders.training_sets import TRAINING_SETS
from utils.errors import UserError, UserFileError
from tests.toy_training import same_threads_env

REPO = Path(__file__).resolve().parents[1]
CITIES = ["trondheim", "london"]  # the small toy world's MSLS training cities
THRESHOLD_M = 25.0


def make_dataset(msls_root: Path, batch_size: int = 4, cities: list[str] = CITIES,
                 similar_places: int = 15) -> MSLSCliquesDataset:
    dataset = MSLSCliquesDataset(msls_root, cities, num_batches=6, batch_size=batch_size, img_per_place=4,
                                 similar_places=similar_places, threshold_m=THRESHOLD_M,
                                 transform=eval_transform((28, 28)), decode_size=None)
    rng = np.random.default_rng(5)
    dataset.set_descriptors([rng.normal(size=(city.num_clusters, 16)) for city in dataset.cities])
    return dataset


@pytest.fixture(scope="module")
def cliques(small_toy_world: Path) -> MSLSCliquesDataset:
    return make_dataset(small_toy_world / "mapillary")


def test_the_toy_world_has_msls_training_cities_in_the_raw_layout(small_toy_world: Path) -> None:
    for name in CITIES:
        side = small_toy_world / "mapillary" / "train_val" / name / "database"
        post, raw = pd.read_csv(side / "postprocessed.csv"), pd.read_csv(side / "raw.csv")
        assert {"key", "easting", "northing", "unique_cluster"} <= set(post.columns) and "pano" in raw.columns
        assert raw["pano"].any()  # a panorama, which training drops
        city = read_msls_city(small_toy_world / "mapillary", name)
        assert len(city) == len(post) + len(pd.read_csv(side.parent / "query" / "postprocessed.csv")) - (
            raw["pano"].sum() + pd.read_csv(side.parent / "query" / "raw.csv")["pano"].sum())
        sizes = np.bincount(city.cluster)
        assert sizes.min() >= 2  # several images per cluster
        centres = np.stack([city.xy[city.cluster == c].mean(axis=0) for c in range(city.num_clusters)])
        nearest = np.sort(np.linalg.norm(centres[:, None] - centres[None], axis=2), axis=1)[:, 1]
        assert np.median(nearest) < 12.0  # clusters a few metres apart along the streets


def test_every_batch_is_cliques_within_the_threshold_apart_from_each_other(cliques: MSLSCliquesDataset) -> None:
    for index in range(6):
        for seed in range(5):
            places = cliques.draw(index, seed)
            assert len(places) == 4
            assert len({place.city for place in places}) <= len(CITIES)
            for place in places:
                xy = cliques.cities[place.city].xy[place.rows]
                assert len(set(place.rows.tolist())) == 4
                assert all(np.linalg.norm(a - b) < THRESHOLD_M for a, b in combinations(xy, 2))
            for first, second in combinations(places, 2):
                if first.city == second.city:
                    xy = cliques.cities[first.city].xy
                    gaps = np.linalg.norm(xy[first.rows][:, None] - xy[second.rows][None], axis=2)
                    assert gaps.min() >= THRESHOLD_M


def test_batches_reproduce_from_the_seed_and_labels_are_unique_per_step(cliques: MSLSCliquesDataset) -> None:
    def rows(index: int, seed: int) -> list[tuple[int, list[int]]]:
        return [(place.city, place.rows.tolist()) for place in cliques.draw(index, seed)]

    assert rows(0, 11) == rows(0, 11)
    assert rows(0, 11) != rows(0, 12) or rows(1, 11) != rows(1, 12)
    assert len({str(rows(0, seed)) for seed in range(8)}) > 1
    images, labels = cliques[(2, 11)]
    assert images.shape == (4, 4, 3, 28, 28) and labels.tolist() == [[8 + p] * 4 for p in range(4)]


def test_similar_clusters_are_nearest_in_descriptor_space_more_often_than_chance() -> None:
    rng = np.random.default_rng(0)
    descriptors = rng.normal(size=(12, 8))
    ranks = []
    for draw in range(300):
        seed_cluster = draw % 12
        order = np.argsort(np.linalg.norm(descriptors - descriptors[seed_cluster], axis=1))[1:]  # nearest first
        chosen = draw_similar_clusters(rng, descriptors, seed_cluster, 3)
        assert chosen[0] == seed_cluster and len(set(chosen.tolist())) == 4
        ranks += [int(np.flatnonzero(order == c)[0]) for c in chosen[1:]]
    assert np.mean(ranks) < 0.8 * np.mean(range(11))  # chance: the mean rank of 11 others is 5


def test_each_rank_samples_its_own_share_of_the_order(cliques: MSLSCliquesDataset) -> None:
    single = list(PlaceSampler(len(cliques), shuffle=True, seed=3))
    shards = [list(PlaceSampler(len(cliques), shuffle=True, seed=3, num_replicas=4, rank=rank)) for rank in range(4)]
    assert [len(shard) for shard in shards] == [2, 2, 2, 2]  # 6 batches padded to 8
    assert [item for step in zip(*shards) for item in step] == single + single[:2]
    labels = [set(cliques[shard[0]][1].flatten().tolist()) for shard in shards[:2]]
    assert labels[0].isdisjoint(labels[1])


def copy_city(small_toy_world: Path, tmp_path: Path, city: str = "london") -> Path:
    root = tmp_path / "mapillary"
    shutil.copytree(small_toy_world / "mapillary" / "train_val" / city, root / "train_val" / city)
    return root


def test_a_city_without_unique_cluster_is_one_line_naming_the_file(small_toy_world: Path, tmp_path: Path) -> None:
    root = copy_city(small_toy_world, tmp_path)
    path = root / "train_val" / "london" / "query" / "postprocessed.csv"
    pd.read_csv(path, index_col=0).drop(columns="unique_cluster").to_csv(path)
    with pytest.raises(UserError, match=rf"^{path} has no column unique_cluster \(its columns: key, easting, [^\n]*$"):
        make_dataset(root, cities=["london"])


def test_a_city_with_no_clique_of_k_is_one_line_naming_it(small_toy_world: Path, tmp_path: Path) -> None:
    root = copy_city(small_toy_world, tmp_path)
    for side in ("database", "query"):
        path = root / "train_val" / "london" / side / "postprocessed.csv"
        frame = pd.read_csv(path, index_col=0)
        frame["easting"] = np.arange(len(frame)) * 100.0 + (0 if side == "database" else 50_000.0)
        frame.to_csv(path)
    with pytest.raises(UserError, match=r"^MSLS: city london \(.*london\) has no 4 images within 25 m of each other"):
        make_dataset(root, cities=["london"])


def test_a_missing_image_is_one_line_naming_it_also_from_a_worker(small_toy_world: Path, tmp_path: Path) -> None:
    root = copy_city(small_toy_world, tmp_path)
    dataset = make_dataset(root, batch_size=2, cities=["london"])
    missing = dataset.image_path(dataset.cities[0], int(dataset.draw(0, 1)[0].rows[0]))
    missing.unlink()
    with pytest.raises(UserFileError, match=rf"^MSLS: cannot read {missing} \(FileNotFoundError\); restore it"):
        dataset[(0, 1)]
    loader = torch.utils.data.DataLoader(dataset, sampler=[(0, 1)], batch_size=None, num_workers=1)
    with pytest.raises(MissingImageError) as error:
        next(iter(loader))
    assert "\n" not in str(error.value) and str(missing) in str(error.value)


def test_training_sets_are_registered_and_listed_in_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert TRAINING_SETS.names() == ["gsv_cities", "msls_cliques"]
    with pytest.raises(UserError, match=r"^train_sets=\{'msls_cliques': ...\} has no option 'treshold_m'; its "
                                        r"options: cities, batch_size, similar_places, threshold_m, "):
        TRAINING_SETS.build("msls_cliques", None, treshold_m=20)
    with pytest.raises(UserError, match=r"^unknown training set 'msls' in train_sets=; registered: gsv_cities, msls"):
        TRAINING_SETS.build("msls", None)
    with pytest.raises(SystemExit):
        train_cli.main(["--help"])
    assert "Registered: gsv_cities, msls_cliques" in " ".join(capsys.readouterr().out.split())


def clique_run_args(world: Path, out: Path) -> list[str]:
    """configs/cliquemining.yaml at toy size: ResNet-18, 56 px, 6 GSV places and 4 cliques per step."""
    train_sets = {"gsv_cities": {}, "msls_cliques": {
        "cities": CITIES, "batch_size": 4, "descriptors": "training", "descriptor_image_size": [56, 56],
        "cache_dir": str(out / "cache")}}
    return [
        "--config", str(REPO / "configs" / "cliquemining.yaml"),
        "--model.backbone_arch", "resnet18",
        "--model.backbone_config", '{"layers_to_crop": [3, 4], "layers_to_freeze": -1, "pretrained": false}',
        "--model.agg_config", '{"num_clusters": 4, "cluster_dim": 8, "token_dim": 8, "dropout": 0.3}',
        "--model.lr", "0.001",
        "--data.data_root", str(world / "gsv-cities"), "--data.cities", '["Bangkok", "Boston", "PRS"]',
        "--data.msls_root", str(world / "mapillary"), "--data.data_dir", str(world),
        "--data.batch_size", "6", "--data.image_size", "[56, 56]", "--data.num_workers", "0",
        "--data.persistent_workers", "false", "--data.val_set_names", '["sped"]',
        "--data.train_sets", json.dumps(train_sets),
        "--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.precision", "32-true",
        "--trainer.max_epochs", "1", "--trainer.default_root_dir", str(out),
        "--trainer.enable_progress_bar", "false", "--resume_checkpoint.every_n_train_steps", "1",
    ]


def test_cliquemining_trains_on_both_sets_resumes_bit_exact_and_its_checkpoint_evaluates(
        small_toy_world: Path, tmp_path: Path) -> None:
    args = clique_run_args(small_toy_world, tmp_path / "full")
    full = train_cli.main(args).trainer
    assert full.global_step == 4  # 24 GSV-Cities places / 6 per step
    assert {"loss/gsv_cities", "loss/msls_cliques"} <= set(full.callback_metrics)
    assert len(list((tmp_path / "full" / "cache").glob("msls_cliques_*.npy"))) == 1

    killed_args = clique_run_args(small_toy_world, tmp_path / "killed")
    killed = subprocess.run([sys.executable, "-m", "tests.scripts.train_killed_at_step", "2", *killed_args],
                            cwd=REPO, env=same_threads_env(), capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    resume_from = next((tmp_path / "killed").rglob("resume-latest.ckpt"))
    resumed = train_cli.main([*killed_args, "--ckpt_path", str(resume_from)]).trainer
    assert resumed.global_step == 4
    expected, weights = full.lightning_module.state_dict(), resumed.lightning_module.state_dict()
    assert [name for name in expected if not torch.equal(weights[name], expected[name])] == []

    checkpoint = next((tmp_path / "full").rglob("last.ckpt"))
    eval_cli.main(["--ckpt_path", str(checkpoint), "--data_dir", str(small_toy_world), "--val_datasets", "sped",
                   "--image_size", "56", "--device", "cpu", "--num_workers", "0", "--batch_size", "4",
                   "--log_dir", str(tmp_path / "eval")])
    assert "sped" in json.loads(next((tmp_path / "eval").rglob("results.json")).read_text())

    # the trained checkpoint describes the clusters of another run (descriptors=<checkpoint file>)
    from dataloaders.cluster_descriptors import cluster_descriptors

    dataset = make_dataset(small_toy_world / "mapillary")
    described, key = cluster_descriptors(dataset, str(checkpoint), None, (56, 56), tmp_path / "cache", seed=0)
    assert [d.shape[0] for d in described] == [city.num_clusters for city in dataset.cities]
    assert key.fields["checkpoint_sha256"] and key.fields["weights"] == "checkpoint"


class CountingNetwork(torch.nn.Module):
    """A tiny describer ``[B, 3, H, W] -> [B, 4]`` that counts the images it describes."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = torch.nn.Conv2d(3, 4, 1)
        self.described = 0

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.described += len(images)
        return self.conv(images).mean(dim=(2, 3))


def test_cluster_descriptors_are_cached_under_a_key_naming_weights_and_data(cliques: MSLSCliquesDataset,
                                                                           tmp_path: Path) -> None:
    from dataloaders.cluster_descriptors import cluster_descriptors

    network = CountingNetwork(0)
    first, key = cluster_descriptors(cliques, "training", network, (28, 28), tmp_path, seed=0)
    clusters = [city.num_clusters for city in cliques.cities]
    assert [d.shape for d in first] == [(c, 4) for c in clusters] and network.described == sum(clusters)
    assert key.fields["cities"] == CITIES and key.fields["weights"].startswith("training network sha256 ")
    again, same_key = cluster_descriptors(cliques, "training", network, (28, 28), tmp_path, seed=0)
    assert network.described == sum(clusters) and same_key == key  # read from the cache
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    cluster_descriptors(cliques, "training", network, (28, 28), tmp_path, seed=0, recompute=True)
    assert network.described == 2 * sum(clusters)
    _, other_key = cluster_descriptors(cliques, "training", CountingNetwork(1), (28, 28), tmp_path, seed=0)
    assert other_key != key
    # a resumed run reads its first start's entry, never one described by the trained network
    with pytest.raises(UserError, match=r"cluster descriptors of the run being resumed .* are not in cache_dir="):
        cluster_descriptors(cliques, "training", network, (28, 28), tmp_path / "elsewhere", seed=0, key=key)


def test_two_gloo_ranks_draw_disjoint_batches_of_both_sets(small_toy_world: Path, tmp_path: Path) -> None:
    args = clique_run_args(small_toy_world, tmp_path / "run")
    args[args.index("--data.val_set_names") + 1] = "[]"
    command = [sys.executable, "main.py", *args, "--trainer.devices", "2", "--trainer.strategy", "ddp",
               "--trainer.limit_val_batches", "0",
               "--trust_config", "--trainer.callbacks+=tests.scripts.record_batches.RecordBatches",
               f"--trainer.callbacks.out={tmp_path / 'batches'}"]
    completed = subprocess.run(command, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"},
                               capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    ranks = [json.loads((tmp_path / "batches" / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert [len(rank["msls_cliques"]) for rank in ranks] == [len(rank["gsv_cities"]) for rank in ranks] == [2, 2]
    for name in ("gsv_cities", "msls_cliques"):
        labels = [{label for step in rank[name] for label in step} for rank in ranks]
        assert labels[0].isdisjoint(labels[1]), name
    # the clique labels name the batch: the two ranks drew the epoch's 4 batches between them
    batches = sorted({label // 4 for rank in ranks for step in rank["msls_cliques"] for label in step})
    assert batches == [0, 1, 2, 3]
