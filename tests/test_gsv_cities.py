"""GSV-Cities training data and the image transforms.

The fixture is a hand-written GSV-Cities layout whose images are solid colours: image number
``g`` has red value ``10 * g``, so tests read back which images a batch holds.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import torch
import torchvision.transforms as T
from PIL import Image

from dataloaders.gsv_cities import (
    GSV_CITIES,
    CorruptImageWarning,
    GSVCitiesDataModule,
    GSVCitiesDataset,
    UnreadablePlaceError,
)
from dataloaders.place_sampling import PlaceSampler
from toy_world import GSV_CITY_CENTRES
from dataloaders.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ResizeToPatchMultiple,
    decode_size,
    eval_transform,
    train_transform,
)
from utils.errors import UserError

# (city csv, city_id, place_id, year, month, lat, lon); lat/lon texts keep trailing zeros
IMAGES = [
    ("Boston", "Boston", 0, 2010, 5, "42.3600", "-71.05890"),   # g = 0
    ("Boston", "Boston", 0, 2019, 3, "42.3601", "-71.0589"),    # g = 1
    ("Boston", "Boston", 0, 2015, 12, "42.3602", "-71.0589"),   # g = 2
    ("Boston", "Boston", 0, 2019, 7, "42.3603", "-71.0589"),    # g = 3  (newest of place 0)
    ("Boston", "Boston", 0, 2008, 1, "42.3604", "-71.0589"),    # g = 4
    ("Boston", "Boston", 1, 2012, 1, "42.3700", "-71.0500"),    # g = 5
    ("Boston", "Boston", 1, 2013, 1, "42.3701", "-71.0500"),    # g = 6
    ("Boston", "Boston", 1, 2014, 1, "42.3702", "-71.0500"),    # g = 7
    ("Boston", "Boston", 1, 2016, 1, "42.3703", "-71.0500"),    # g = 8
    ("Boston", "Boston", 2, 2016, 1, "42.3800", "-71.0400"),    # g = 9   place 2 has 3 images
    ("Boston", "Boston", 2, 2017, 1, "42.3801", "-71.0400"),    # g = 10
    ("Boston", "Boston", 2, 2018, 1, "42.3802", "-71.0400"),    # g = 11
    ("PRS", "PRS", 0, 2011, 2, "48.8566", "2.3522"),            # g = 12  same place_id as Boston 0
    ("PRS", "PRS", 0, 2012, 2, "48.8567", "2.3522"),            # g = 13
    ("PRS", "PRS", 0, 2013, 2, "48.8568", "2.3522"),            # g = 14
    ("PRS", "PRS", 0, 2014, 2, "48.8569", "2.3522"),            # g = 15
    ("PRS", "PRS", 7, 2020, 6, "48.8600", "2.3500"),            # g = 16
    ("PRS", "PRS", 7, 2020, 8, "48.8601", "2.3500"),            # g = 17
    ("PRS", "PRS", 7, 2021, 1, "48.8602", "2.3500"),            # g = 18
    ("PRS", "PRS", 7, 2019, 9, "48.8603", "2.3500"),            # g = 19
]
CITIES = ["Boston", "PRS"]
PLAIN = T.Compose([T.Resize((8, 8)), T.ToTensor()])


def file_name(city_id: str, place: int, year: int, month: int, lat: str, lon: str, g: int) -> str:
    return f"{city_id}_{place:07d}_{year:04d}_{month:02d}_{(g * 37) % 360:03d}_{lat}_{lon}_pano{g:018d}.jpg"


def solid_jpeg(path: Path, g: int, size: tuple[int, int] = (40, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (10 * g, 200 - 5 * g, 90)).save(path, quality=95)


@pytest.fixture()
def gsv_root(tmp_path: Path) -> Path:
    root = tmp_path / "gsv-cities"
    rows: dict[str, list[dict[str, object]]] = {}
    for g, (city, city_id, place, year, month, lat, lon) in enumerate(IMAGES):
        rows.setdefault(city, []).append({
            "place_id": place, "year": year, "month": month, "northdeg": (g * 37) % 360, "city_id": city_id,
            "lat": lat, "lon": lon, "panoid": f"pano{g:018d}"})
        solid_jpeg(root / "Images" / city_id / file_name(city_id, place, year, month, lat, lon, g), g)
    (root / "Dataframes").mkdir(parents=True)
    for city, city_rows in rows.items():
        pd.DataFrame(city_rows).to_csv(root / "Dataframes" / f"{city}.csv", index=False)
    return root


def image_numbers(images: torch.Tensor) -> list[int]:
    """Which fixture images ``[K, 3, H, W]`` (un-normalised) holds, from their red value."""
    return [int(round(float(red) * 255 / 10)) for red in images[:, 0].mean(dim=(1, 2))]


def path_of(root: Path, g: int) -> Path:
    city, city_id, place, year, month, lat, lon = IMAGES[g]
    return root / "Images" / city_id / file_name(city_id, place, year, month, lat, lon, g)


@pytest.fixture(autouse=True)
def few_threads() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# ------------------------------------------------------------------------------ dataset


def test_place_ids_are_unique_across_cities(gsv_root: Path) -> None:
    dataset = GSVCitiesDataset(gsv_root, cities=CITIES, img_per_place=2, min_img_per_place=4, transform=PLAIN)
    # Boston is city 0, PRS city 1: id = city_index * 10**5 + place_id; Boston's place 2 has 3 images
    assert sorted(dataset.places.place_ids.tolist()) == [0, 1, 100_000, 100_007]
    assert dataset.num_places == 4 and dataset.num_images == 17
    for index in range(len(dataset)):
        images, ids = dataset[index]
        assert ids.dtype == torch.int64 and ids.shape == (2,)
        assert len(set(ids.tolist())) == 1
        expected_place = (ids[0].item() // 100_000, ids[0].item() % 100_000)
        for g in image_numbers(images):
            assert (CITIES.index(IMAGES[g][0]), IMAGES[g][2]) == expected_place


def test_lat_lon_are_read_as_text_to_rebuild_file_names(gsv_root: Path) -> None:
    dataset = GSVCitiesDataset(gsv_root, cities=["Boston"], img_per_place=2, min_img_per_place=4, transform=PLAIN)
    paths = [p for index in range(len(dataset)) for p in dataset.image_paths(index)]
    assert path_of(gsv_root, 0) in paths  # "42.3600" and "-71.05890" as written, not as floats
    assert all(path.is_file() for path in paths)


def test_random_sampling_draws_distinct_images_of_the_place(gsv_root: Path) -> None:
    dataset = GSVCitiesDataset(gsv_root, cities=["Boston"], img_per_place=3, min_img_per_place=4, transform=PLAIN)
    index = dataset.places.place_ids.tolist().index(0)
    draws = []
    for draw_seed in range(8):
        images, _ = dataset[(index, draw_seed)]
        numbers = image_numbers(images)
        assert len(set(numbers)) == 3 and set(numbers) <= {0, 1, 2, 3, 4}
        draws.append(tuple(sorted(numbers)))
        again, _ = dataset[(index, draw_seed)]
        assert torch.equal(images, again)  # a draw seed always gives the same images
    assert len(set(draws)) > 1


def test_recent_sampling_takes_the_newest_images(gsv_root: Path) -> None:
    dataset = GSVCitiesDataset(gsv_root, cities=CITIES, img_per_place=3, min_img_per_place=4, sample="recent",
                               transform=PLAIN)
    ids = dataset.places.place_ids.tolist()
    # Boston place 0 newest first: 2019-07 (g3), 2019-03 (g1), 2015-12 (g2); PRS place 7: 2021-01, 2020-08, 2020-06
    assert image_numbers(dataset[ids.index(0)][0]) == [3, 1, 2]
    assert image_numbers(dataset[(ids.index(100_007), 5)][0]) == [18, 17, 16]


def test_min_img_per_place_drops_small_places(gsv_root: Path) -> None:
    kept = GSVCitiesDataset(gsv_root, cities=["Boston"], img_per_place=3, min_img_per_place=3, transform=PLAIN)
    assert sorted(kept.places.place_ids.tolist()) == [0, 1, 2]
    dropped = GSVCitiesDataset(gsv_root, cities=["Boston"], img_per_place=3, min_img_per_place=5, transform=PLAIN)
    assert dropped.places.place_ids.tolist() == [0]
    with pytest.raises(ValueError, match="no place of Boston has at least min_img_per_place=6 images"):
        GSVCitiesDataset(gsv_root, cities=["Boston"], img_per_place=3, min_img_per_place=6, transform=PLAIN)


def test_img_per_place_above_min_is_rejected(gsv_root: Path) -> None:
    with pytest.raises(ValueError, match=r"img_per_place=5 must not exceed min_img_per_place=4"):
        GSVCitiesDataset(gsv_root, cities=CITIES, img_per_place=5, min_img_per_place=4)


def test_corrupt_image_is_replaced_by_another_of_its_place(gsv_root: Path) -> None:
    newest = path_of(gsv_root, 3)
    newest.write_bytes(newest.read_bytes()[:150])  # truncated JPEG
    dataset = GSVCitiesDataset(gsv_root, cities=["Boston"], img_per_place=3, min_img_per_place=4, sample="recent",
                               transform=PLAIN)
    index = dataset.places.place_ids.tolist().index(0)
    with pytest.warns(CorruptImageWarning, match=newest.name):
        images, ids = dataset[index]
    assert image_numbers(images) == [1, 2, 0]  # the next newest instead, never a blank image
    assert ids.tolist() == [0, 0, 0]


def test_missing_files_are_replaced_and_repeated_when_too_few_remain(gsv_root: Path) -> None:
    for g in (5, 6, 7):  # place 1 keeps only g = 8
        path_of(gsv_root, g).unlink()
    dataset = GSVCitiesDataset(gsv_root, cities=["Boston"], img_per_place=2, min_img_per_place=4, transform=PLAIN)
    index = dataset.places.place_ids.tolist().index(1)
    with pytest.warns(CorruptImageWarning):
        images, _ = dataset[index]
    assert image_numbers(images) == [8, 8]


@pytest.mark.parametrize("num_workers", [0, 1])
def test_a_place_without_any_readable_image_is_one_line_naming_it_and_its_files(
    gsv_root: Path, num_workers: int
) -> None:
    for g in (5, 6, 7, 8):
        path_of(gsv_root, g).write_bytes(b"not a jpeg")
    module = make_module(gsv_root, cities=["Boston"], batch_size=3, img_per_place=2, num_workers=num_workers,
                         persistent_workers=False, train_transform=PLAIN)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CorruptImageWarning)
        with pytest.raises(UnreadablePlaceError) as info:  # a ValueError: main.py prints it as one line
            list(module.train_dataloader())
    message = str(info.value)
    assert "\n" not in message and isinstance(info.value, ValueError)
    assert message.startswith("GSV-Cities: none of the 4 images of place 1 of Boston can be read (")
    assert path_of(gsv_root, 5).name in message and str(path_of(gsv_root, 5).parent) in message
    assert message.endswith(f"restore those files, or delete the place's rows from {gsv_root / 'Dataframes' / 'Boston.csv'}")


# ------------------------------------------------------------------------------ bad input


def test_missing_dataframes_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'Dataframes'} is not a folder"):
        GSVCitiesDataset(tmp_path, cities=CITIES)


def test_absent_city_csv_is_named(gsv_root: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no CSV for city 'Rome': .*Dataframes/Rome\.csv does not exist"):
        GSVCitiesDataset(gsv_root, cities=["Boston", "Rome"])
    with pytest.raises(FileNotFoundError, match="Bangkok"):  # default: the 23 paper cities, Bangkok first
        GSVCitiesDataset(gsv_root)


def test_csv_without_expected_columns(gsv_root: Path) -> None:
    csv = gsv_root / "Dataframes" / "Boston.csv"
    pd.read_csv(csv).drop(columns=["panoid"]).to_csv(csv, index=False)
    with pytest.raises(ValueError, match=rf"{csv} lacks column\(s\) panoid; expected columns place_id, year"):
        GSVCitiesDataset(gsv_root, cities=["Boston"])


def test_empty_city_csv_is_named(gsv_root: Path) -> None:
    csv = gsv_root / "Dataframes" / "PRS.csv"
    csv.write_bytes(b"")  # e.g. a download that stopped before the first byte
    with pytest.raises(ValueError, match=rf"GSV-Cities CSV {csv} is empty \(no header, no rows\): re-download it, or "
                                         r"leave PRS out of cities=$"):
        GSVCitiesDataset(gsv_root, cities=["Boston", "PRS"])


def test_csv_with_non_integer_column(gsv_root: Path) -> None:
    csv = gsv_root / "Dataframes" / "PRS.csv"
    frame = pd.read_csv(csv, dtype={"lat": str, "lon": str})
    frame["month"] = frame["month"].astype(str) + "m"
    frame.to_csv(csv, index=False)
    with pytest.raises(ValueError, match=rf"{csv}: column 'month' must hold integers"):
        GSVCitiesDataset(gsv_root, cities=["PRS"])


def test_default_cities_are_the_23_paper_cities() -> None:
    assert len(GSV_CITIES) == 23 and len(set(GSV_CITIES)) == 23
    assert GSV_CITIES[:3] == ("Bangkok", "BuenosAires", "LosAngeles") and GSV_CITIES[-1] == "PRS"
    assert tuple(GSV_CITY_CENTRES) == GSV_CITIES  # the toy world names its cities from the same list


# ------------------------------------------------------------------------------ sampler and data module


def test_place_sampler_order_and_draw_seeds() -> None:
    in_order = PlaceSampler(20, shuffle=False, seed=3)
    first = list(in_order)
    assert [index for index, _ in first] == list(range(20))
    second = list(in_order)  # next epoch: same order, new draws
    assert [index for index, _ in second] == list(range(20))
    assert [seed for _, seed in first] != [seed for _, seed in second]

    shuffled = PlaceSampler(20, shuffle=True, seed=3)
    epoch_0 = [index for index, _ in shuffled]
    epoch_1 = [index for index, _ in shuffled]
    assert sorted(epoch_0) == list(range(20)) and epoch_0 != epoch_1
    shuffled.set_epoch(0)
    assert [index for index, _ in shuffled] == epoch_0


def make_module(root: Path, **overrides: object) -> GSVCitiesDataModule:
    arguments: dict[str, object] = dict(data_root=str(root), cities=CITIES, batch_size=3, img_per_place=2,
                                        min_img_per_place=4, image_size=(28, 28), num_workers=0, seed=5)
    arguments.update(overrides)
    module = GSVCitiesDataModule(**arguments)  # type: ignore[arg-type]
    module.setup("fit")
    return module


def test_batches_are_places_by_images(gsv_root: Path) -> None:
    module = make_module(gsv_root)
    batches = list(module.train_dataloader())
    assert module.iterations_per_epoch == 2 == len(batches)  # 4 places, 3 per batch
    images, ids = batches[0]
    assert images.shape == (3, 2, 3, 28, 28) and images.dtype == torch.float32
    assert ids.shape == (3, 2)
    assert batches[1][0].shape == (1, 2, 3, 28, 28)  # the last, partial batch is kept
    assert (ids == ids[:, :1]).all()  # one place per row
    all_ids = torch.cat([b[1][:, 0] for b in batches]).tolist()
    assert sorted(all_ids) == [0, 1, 100_000, 100_007]
    assert all_ids[:2] in ([0, 1], [1, 0])  # places not shuffled across cities: Boston's come first
    assert module.val_set_names == []


def test_batches_do_not_depend_on_workers_and_change_with_epochs(gsv_root: Path) -> None:
    def epochs(num_workers: int) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
        # the published training transform: RandAugment must draw the same operations too
        module = make_module(gsv_root, num_workers=num_workers, shuffle_all=True, persistent_workers=False)
        loader = module.train_dataloader()
        return [list(loader), list(loader)]

    inline, workers = epochs(0), epochs(1)
    for epoch_inline, epoch_workers in zip(inline, workers):
        for (images_a, ids_a), (images_b, ids_b) in zip(epoch_inline, epoch_workers):
            assert torch.equal(ids_a, ids_b) and torch.equal(images_a, images_b)
    ids = [torch.cat([b[1][:, 0] for b in epoch]).tolist() for epoch in inline]
    images = [torch.cat([b[0].flatten(0, 1) for b in epoch]) for epoch in inline]
    assert ids[0] != ids[1] or not torch.equal(images[0], images[1])


def test_the_loader_resumes_an_epoch_after_the_batches_trained_on(gsv_root: Path) -> None:
    def batches(loader: object, count: int | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        iterator = iter(loader)  # type: ignore[call-overload]
        return [next(iterator) for _ in range(count)] if count is not None else list(iterator)

    def module() -> GSVCitiesDataModule:
        return make_module(gsv_root, batch_size=1, shuffle_all=True, train_transform=PLAIN)

    uninterrupted = module().train_dataloader()
    epochs = [batches(uninterrupted) for _ in range(3)]  # 4 places, 1 per batch: 4 batches per epoch
    interrupted = module().train_dataloader()
    batches(interrupted)
    assert len(batches(interrupted, 2)) == 2  # epoch 1: killed after 2 batches
    state = interrupted.state_dict()
    assert state == {"epoch": 1, "batches_done": 2, "places_per_batch": 1, "num_places": 4}

    resumed = module().train_dataloader()
    resumed.load_state_dict(state)
    rest = batches(resumed)
    assert len(rest) == 2 and len(resumed) == 4  # Lightning counts the resumed epoch from its start
    for (images, ids), (expected_images, expected_ids) in zip(rest, epochs[1][2:]):
        assert torch.equal(ids, expected_ids) and torch.equal(images, expected_images)
    assert resumed.state_dict()["batches_done"] == 4

    finished = module().train_dataloader()
    finished.load_state_dict({**state, "batches_done": 4})  # saved at the end of epoch 1: go on with epoch 2
    assert [ids.tolist() for _, ids in batches(finished)] == [ids.tolist() for _, ids in epochs[2]]

    moved_on = module().train_dataloader()
    moved_on.load_state_dict(state)
    moved_on.batch_sampler.sampler.set_epoch(2)  # Lightning ended epoch 1 early (limit_train_batches): no skip in 2
    assert [ids.tolist() for _, ids in batches(moved_on)] == [ids.tolist() for _, ids in epochs[2]]


def test_iterating_the_loader_draws_nothing_from_the_global_generator(gsv_root: Path) -> None:
    loader = make_module(gsv_root, train_transform=PLAIN).train_dataloader()
    before = torch.get_rng_state()
    list(loader)
    assert torch.equal(torch.get_rng_state(), before)


def test_a_data_order_for_other_places_is_a_one_line_error(gsv_root: Path) -> None:
    loader = make_module(gsv_root).train_dataloader()
    with pytest.raises(ValueError, match=r"over 5 GSV-Cities places but the data now has 4: resume with the run's cities= and min_img_per_place=$"):
        loader.load_state_dict({"epoch": 0, "batches_done": 1, "places_per_batch": 3, "num_places": 5})


def test_a_corrupt_image_is_replaced_in_a_worker_process_too(gsv_root: Path) -> None:
    newest = path_of(gsv_root, 18)  # the newest image of PRS place 7
    newest.write_bytes(b"garbage")
    module = make_module(gsv_root, num_workers=1, random_sample_from_each_place=False, persistent_workers=False,
                         train_transform=PLAIN)
    batches = list(module.train_dataloader())
    row = torch.cat([b[1][:, 0] for b in batches]).tolist().index(100_007)
    all_images = torch.cat([b[0] for b in batches])
    assert image_numbers(all_images[row]) == [17, 16]


def test_setup_logs_a_summary_table(gsv_root: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="dataloaders.gsv_cities"):
        make_module(gsv_root, batch_size=2)
    text = caplog.text
    for line in ("| places               | 4 ", "| images               | 17 ", "| iterations per epoch | 2 ",
                 "| batch size           | 2 places x 2 images"):
        assert line in text


# ------------------------------------------------------------------------------ transforms and decoding


def test_published_training_recipe() -> None:
    steps = train_transform((224, 224)).transforms
    assert [type(step) for step in steps] == [T.Resize, T.RandAugment, T.ToTensor, T.Normalize]
    assert steps[0].size == (224, 224) and steps[0].interpolation == T.InterpolationMode.BILINEAR
    assert steps[1].num_ops == 3 and steps[1].interpolation == T.InterpolationMode.BILINEAR
    assert IMAGENET_MEAN == (0.485, 0.456, 0.406) and IMAGENET_STD == (0.229, 0.224, 0.225)
    assert tuple(steps[3].mean) == IMAGENET_MEAN and tuple(steps[3].std) == IMAGENET_STD
    out = train_transform((28, 42))(Image.new("RGB", (100, 60), (120, 80, 40)))
    assert out.shape == (3, 28, 42)


def test_eval_transform_normalises_and_resizes() -> None:
    mean_colour = tuple(round(255 * m) for m in IMAGENET_MEAN)
    out = eval_transform((28, 56))(Image.new("RGB", (90, 40), mean_colour))
    assert out.shape == (3, 28, 56)
    assert out.abs().max() < 0.02  # the ImageNet mean colour normalises to zero


@pytest.mark.parametrize(("width", "height", "expected"), [
    (100, 50, (98, 56)),  # 7.14 -> 7 patches, 3.57 -> 4 patches
    (640, 480, (644, 476)),  # 45.7 -> 46, 34.3 -> 34
    (5, 30, (14, 28)),  # never below one patch
    (322, 322, (322, 322)),
])
def test_eval_transform_without_size_keeps_aspect_in_multiples_of_14(width: int, height: int,
                                                                    expected: tuple[int, int]) -> None:
    assert ResizeToPatchMultiple(14).target_size(width, height) == expected
    out = eval_transform(None, 14)(Image.new("RGB", (width, height)))
    assert out.shape == (3, expected[1], expected[0])


def test_bad_image_size_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"image_size=\[224, 0\]: expected \[height, width\]"):
        train_transform((224, 0))
    assert decode_size(None) is None and decode_size((224, 224)) == (224, 224)


def test_dataset_decodes_large_jpegs_in_draft_mode(tmp_path: Path) -> None:
    root = tmp_path / "gsv"
    rows = []
    for g in range(4):
        name = file_name("Rome", 3, 2015, 1, "41.9", "12.5", g)
        solid_jpeg(root / "Images" / "Rome" / name, g, size=(640, 480))
        rows.append({"place_id": 3, "year": 2015, "month": 1, "northdeg": (g * 37) % 360, "city_id": "Rome",
                     "lat": "41.9", "lon": "12.5", "panoid": f"pano{g:018d}"})
    (root / "Dataframes").mkdir()
    pd.DataFrame(rows).to_csv(root / "Dataframes" / "Rome.csv", index=False)
    seen: list[tuple[int, int]] = []

    def record(image: Image.Image) -> torch.Tensor:
        seen.append(image.size)
        return torch.zeros(3, 4, 4)

    GSVCitiesDataset(root, cities=["Rome"], img_per_place=2, transform=record, decode_size=(112, 112))[0]
    # libjpeg scales by 1/2, 1/4, 1/8: 1/4 (160 x 120) is the smallest with both sides >= 112
    assert seen == [(160, 120), (160, 120)]
    seen.clear()
    GSVCitiesDataset(root, cities=["Rome"], img_per_place=2, transform=record, decode_size=None)[0]
    assert seen == [(640, 480), (640, 480)]


def test_a_header_only_csv_is_named(gsv_root: Path) -> None:
    csv = gsv_root / "Dataframes" / "PRS.csv"
    csv.write_text(csv.read_text().splitlines()[0] + "\n")  # a download cut after its first line
    with pytest.raises(UserError, match=rf"^GSV-Cities CSV {csv} has a header but no rows: re-download it, or leave PRS out"):
        GSVCitiesDataset(gsv_root, cities=["Boston", "PRS"])


def test_a_city_whose_places_are_all_too_small_is_reported(gsv_root: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):  # Boston's place 0 has 5 images, PRS's places 4 each
        dataset = GSVCitiesDataset(gsv_root, cities=CITIES, img_per_place=1, min_img_per_place=5, transform=PLAIN)
    assert dataset.places.place_ids.tolist() == [0]
    assert [record.getMessage() for record in caplog.records if "left out" in record.getMessage()] == [
        "GSV-Cities: PRS left out: no place has at least min_img_per_place=5 images"]
