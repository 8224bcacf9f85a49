"""dataloaders.device_decode: JPEGs decoded by torchvision on the evaluation device (here the CPU),
against the PIL path of evaluation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dataloaders.device_decode import DeviceDecoder, EncodedImages, collate_encoded, needs_pil
from dataloaders.eval_sets.base import EvalImages
from dataloaders.image_io import ImageDecodeError, load_image
from dataloaders.transforms import EvalPreprocessing, eval_transform

EXIF_ORIENTATION = 0x0112
CPU = torch.device("cpu")

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning")  # torchvision 0.29's notice


def smooth_picture(width: int, height: int, seed: int) -> Image.Image:
    """Low-frequency colours (JPEG keeps them well, so both decoders agree closely)."""
    coarse = np.random.default_rng(seed).integers(0, 256, size=(4, 5, 3), dtype=np.uint8)
    return Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC)


def save(image: Image.Image, path: Path, orientation: int | None = None, **options) -> Path:
    exif = Image.Exif()
    if orientation is not None:
        exif[EXIF_ORIENTATION] = orientation
    image.save(path, exif=exif.tobytes(), **options)
    return path


@pytest.fixture
def mixed_files(tmp_path: Path) -> dict[str, Path]:
    """One file of each kind the decoder meets, all 200 x 150 once upright."""
    return {
        "jpeg": save(smooth_picture(200, 150, 0), tmp_path / "plain.jpg", quality=95),
        "grey": save(smooth_picture(200, 150, 1).convert("L"), tmp_path / "grey.jpg", quality=95),
        "rotated": save(smooth_picture(150, 200, 2), tmp_path / "rotated.jpg", orientation=6, quality=95),
        "cmyk": save(smooth_picture(200, 150, 3).convert("CMYK"), tmp_path / "cmyk.jpg", quality=95),
        "png": save(smooth_picture(200, 150, 4), tmp_path / "picture.png"),
    }


def test_only_upright_rgb_or_grey_jpegs_go_to_the_device(mixed_files: dict[str, Path]) -> None:
    kinds = {kind: needs_pil(path.read_bytes(), exif_transpose=True) for kind, path in mixed_files.items()}
    assert kinds == {"jpeg": False, "grey": False, "rotated": True, "cmyk": True, "png": True}
    assert not needs_pil(mixed_files["rotated"].read_bytes())  # the EXIF tag ignored, as published
    assert needs_pil(b"not an image")


def test_workers_send_bytes_or_upright_pixels(mixed_files: dict[str, Path]) -> None:
    dataset = EncodedImages([mixed_files["jpeg"], mixed_files["rotated"]], exif_transpose=True)
    (plain, first), (rotated, second) = dataset[0], dataset[1]
    assert (first, second) == (0, 1)
    assert plain.encoded and plain.data.dtype == torch.uint8 and plain.data.dim() == 1
    assert bytes(plain.data.numpy()) == mixed_files["jpeg"].read_bytes()
    assert not rotated.encoded
    upright = np.asarray(load_image(mixed_files["rotated"], exif_transpose=True))  # [150, 200, 3]: stored 150 wide
    assert upright.shape == (150, 200, 3)
    assert torch.equal(rotated.data, torch.from_numpy(upright.copy()).permute(2, 0, 1))


@pytest.mark.parametrize("image_size", [(84, 112), None])
def test_device_batches_match_the_pil_evaluation_transform(mixed_files: dict[str, Path], image_size) -> None:
    paths = list(mixed_files.values())
    encoded = EncodedImages(paths, exif_transpose=True)
    batch, indices = collate_encoded([encoded[i] for i in range(len(paths))])
    images = DeviceDecoder(paths, EvalPreprocessing(image_size, patch_size=14, exif_transpose=True), CPU)(batch, indices)
    expected = torch.stack([item for item, _ in EvalImages(paths, eval_transform(image_size, patch_size=14), exif_transpose=True)])
    assert images.shape == expected.shape == (len(paths), 3, *(image_size or (154, 196)))  # 150x200 -> 154x196
    differences = (images - expected).abs().mean(dim=(1, 2, 3))
    assert differences.max().item() < 0.02  # measured 0.005: another IDCT and a float resize, not another image
    assert (images[0] - expected[1]).abs().mean().item() > 0.2  # while different pictures are far apart (1.1)


def test_a_file_the_device_cannot_decode_is_named(tmp_path: Path, mixed_files: dict[str, Path]) -> None:
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(mixed_files["jpeg"].read_bytes()[:700])  # the header parses, the data is cut short
    paths = [mixed_files["jpeg"], truncated]
    encoded = EncodedImages(paths)
    assert encoded[1][0].encoded  # its header looked fine to the worker
    batch, indices = collate_encoded([encoded[0], encoded[1]])
    with pytest.raises(ImageDecodeError, match="truncated.jpg"):
        DeviceDecoder(paths, EvalPreprocessing((56, 56)), CPU)(batch, indices)


def test_a_jpeg_the_device_rejects_is_decoded_by_pil_with_a_warning(
    mixed_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import torchvision.io

    paths = [mixed_files["jpeg"], mixed_files["grey"]]
    rejected = mixed_files["grey"].read_bytes()
    real_decode = torchvision.io.decode_jpeg

    def decode_all_but_one(data, *args, **kwargs):  # as nvJPEG with a JPEG variant it lacks
        files = data if isinstance(data, list) else [data]
        if any(bytes(item.numpy()) == rejected for item in files):
            raise RuntimeError("unsupported JPEG")
        return real_decode(data, *args, **kwargs)

    monkeypatch.setattr(torchvision.io, "decode_jpeg", decode_all_but_one)
    encoded = EncodedImages(paths)
    batch, indices = collate_encoded([encoded[0], encoded[1]])
    images = DeviceDecoder(paths, EvalPreprocessing((84, 112)), CPU)(batch, indices)
    expected = torch.stack([item for item, _ in EvalImages(paths, eval_transform((84, 112)))])
    assert (images - expected).abs().mean(dim=(1, 2, 3)).max().item() < 0.02
    assert "grey.jpg: not decodable on cpu (unsupported JPEG); decoding it with PIL" in caplog.text


def test_a_file_pil_cannot_read_is_named_by_the_worker(tmp_path: Path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(ImageDecodeError, match="broken.jpg"):
        EncodedImages([broken])[0]


def test_descriptors_through_device_decoding_match_pil_ones(mixed_files: dict[str, Path]) -> None:
    from models import build_vpr_net
    from utils.evaluation.inference import compute_descriptors

    paths = list(mixed_files.values())
    torch.manual_seed(0)
    model = build_vpr_net("resnet18", {"layers_to_crop": [3, 4], "layers_to_freeze": -1}, "GeM", {})
    pil = compute_descriptors(model, EvalImages(paths, eval_transform((84, 112))), 2, 0, CPU)
    device = compute_descriptors(
        model, EncodedImages(paths), 2, 0, CPU,
        collate_fn=collate_encoded, prepare_batch=DeviceDecoder(paths, EvalPreprocessing((84, 112)), CPU),
    )
    cosines = (pil * device).sum(axis=1) / np.linalg.norm(pil, axis=1) / np.linalg.norm(device, axis=1)
    assert cosines.min() > 0.999
