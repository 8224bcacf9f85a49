"""One way to get a network: :func:`load_network` (a file of this project, a released file in
its authors' layout, either given by its ``http(s)://`` or ``file://`` URL, or a release's name to
download) -> :class:`LoadedNetwork`.

eval.py, torch.hub, the ONNX export and the tests all load through it. The architecture comes,
in this order, from the checkpoint (a Lightning checkpoint of this project carries it in
``hyper_parameters``; given with a release, it must be the release's, or the caller's when the
caller gives one), from the caller, or from the release. Weights never come from a
backbone's own pretrained download here: the file (or, with ``random_weights``, a seed)
supplies every one. Files are read without running code: ``torch.load(weights_only=True)``, or
the ``safetensors`` library for ``.safetensors`` files.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any, Literal
from urllib.error import URLError

import torch

from models.architecture import ARCHITECTURE_FIELDS, Architecture, architecture_from_mapping
from models.pretrained import DownloadError, read_checkpoint, state_dict_of
from models.released import (
    IMAGENET_NORMALIZATION,
    RELEASE_ALIASES,
    RELEASED_MODELS,
    Normalization,
    ReleasedModel,
    canonical_release_name,
    check_released_file,
)
from models.vpr_net import VPRNet, build_network
from utils.checkpoint_files import reads_checkpoint, require_checkpoint_file, shown_checkpoint
from utils.errors import UserError

log = logging.getLogger(__name__)

HYPERPARAMETERS_KEY = "hyper_parameters"
SAFETENSORS_SUFFIX = ".safetensors"
#: The prefixes of a network's keys; a Lightning checkpoint keeps others beside them (the loss, ...).
NETWORK_PREFIXES = ("backbone.", "aggregator.")

Source = Literal["checkpoint", "caller", "release"]



class ArchitectureMismatchError(UserError):
    """A state dict whose keys or shapes do not fit the architecture it is loaded into."""


@dataclass(frozen=True)
class LoadedNetwork:
    """A network ready for inference, how to feed it, and where its parts came from.

    Attributes:
        network: the network in eval mode, float32, on the CPU.
        architecture: the architecture built, every argument resolved.
        image_size: ``(height, width)`` its authors evaluate at (a release's); ``None``: each
            image at its own resolution.
        normalization: the images' mean and std.
        release: the release's name, if one was named.
        architecture_source: ``"checkpoint"`` (its ``hyper_parameters``), ``"caller"`` or ``"release"``.
        weights: ``"checkpoint"``, ``"random (seed N)"`` or ``"untrained"``.
        path: the file the weights were read from (a release's download: its copy in torch.hub's
            cache; a URL's: its temporary copy, removed when the process ends).
    """

    network: VPRNet
    architecture: Architecture
    image_size: tuple[int, int] | None = None
    normalization: Normalization = IMAGENET_NORMALIZATION
    release: str | None = None
    architecture_source: Source = "caller"
    weights: str = "checkpoint"
    path: Path | None = None


def is_release_name(source: str | PathLike[str] | None) -> bool:
    """Whether ``source`` names a release (and no file of that name exists)."""
    return isinstance(source, str) and source in {*RELEASED_MODELS, *RELEASE_ALIASES} and not Path(source).exists()


def read_weights_file(path: str | PathLike[str]) -> dict[str, Any]:
    """The payload of a weights file: a ``.safetensors`` file's tensors, or what
    ``models.pretrained.read_checkpoint`` reads (a state dict, or a Lightning checkpoint).

    Raises:
        UserFileError: no such file, or a folder.
        ValueError: a file that is not what its name says (one line naming it).
    """
    path = Path(path)
    require_checkpoint_file(path)
    if path.suffix != SAFETENSORS_SUFFIX:
        return read_checkpoint(path)
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(path)
    except (SafetensorError, OSError) as error:
        raise UserError(f"checkpoint {path} is not a readable safetensors file ({error}); download it again") from None


def architecture_from_payload(payload: Mapping[str, Any], source: str | PathLike[str]) -> Architecture | None:
    """The architecture a loaded checkpoint carries in ``hyper_parameters``, or ``None``.

    Raises:
        ValueError: ``hyper_parameters`` names some architecture fields but not all, or holds
            them with the wrong types.
    """
    hyperparameters = payload.get(HYPERPARAMETERS_KEY)
    if not isinstance(hyperparameters, Mapping):
        return None
    return architecture_from_mapping(hyperparameters, source)


def download_release(name: str, verify: bool = True) -> Path:
    """Release ``name``'s file in torch.hub's cache (``<hub dir>/checkpoints``), downloaded there
    first when missing and checked against its SHA-256 where one is recorded; a file that fails
    the check is deleted, so the next call downloads it again.

    Raises:
        UserError: the authors publish the file only for download by hand.
        DownloadError: the download failed (says which file to fetch and where to pass it).
        ValueError: the digest differs.
    """
    release = RELEASED_MODELS[canonical_release_name(name)]
    if release.url is None:
        where = f" from {release.page}" if release.page else ""
        raise UserError(
            f"{name}: the authors publish {release.file_name} only for download by hand{where}; pass its path as "
            f"ckpt_path=..., or pretrained=False for an untrained model"
        )
    cached = Path(torch.hub.get_dir()) / "checkpoints" / release.file_name
    if not cached.is_file():
        cached.parent.mkdir(parents=True, exist_ok=True)
        log.info("downloading %s from %s into %s", release.file_name, release.url, cached.parent)
        try:
            torch.hub.download_url_to_file(release.url, str(cached), progress=True)  # to a temporary file, then moved
        except (URLError, OSError) as error:
            raise DownloadError(name, release.page or release.url, release.file_name, str(error), "ckpt_path") from error
    if verify:
        try:
            check_released_file(name, cached)
        except UserError:
            cached.unlink(missing_ok=True)
            raise
    return cached


def read_download(name: str, path: Path) -> dict[str, Any]:
    """The payload of release ``name``'s downloaded file; a file that cannot be read (a web page
    served instead of the file) is deleted from the cache and refused with where to fetch it."""
    try:
        return read_weights_file(path)
    except UserError as error:
        path.unlink(missing_ok=True)
        release = RELEASED_MODELS[name]
        raise UserError(
            f"the download of {release.file_name} from {release.url} is not a weights file ({error}); fetch it by hand "
            f"from {release.page or release.url} and pass its path as ckpt_path=..."
        ) from None


@reads_checkpoint
def load_network(
    source: str | PathLike[str] | None = None,
    *,
    release: str | None = None,
    architecture: Architecture | None = None,
    pretrained: bool = True,
    verify: bool = True,
    random_weights: bool = False,
    seed: int = 1,
    mismatch_hint: str = "",
) -> LoadedNetwork:
    """The network of a checkpoint file, of a released file, or of a release downloaded.

    Args:
        source: a weights file (``.ckpt``/``.pth``/``.torch``: this project's Lightning
            checkpoint, or a bare state dict; ``.safetensors``), its ``http(s)://`` or ``file://``
            URL (read as a local copy, :func:`utils.checkpoint_files.reads_checkpoint`: errors name
            the URL), or a release's name (then as ``release=source``); ``None`` with ``release``
            downloads the released file.
        release: a name of ``models.released.RELEASED_MODELS`` (or an alias): its architecture
            for a bare state dict, its key layout (the authors' files load as published), its
            evaluation size and normalisation.
        architecture: the architecture of a bare state dict (over the release's); a checkpoint
            that carries its own is built as it says.
        pretrained: with a release and no ``source``: download its weights (``False``: the
            architecture with untrained weights).
        verify: check a released file's SHA-256 (a download, or a ``source`` carrying the
            release's file name; ``False`` for one's own fine-tune saved under that name).
        random_weights: ``pytorch_lightning.seed_everything(seed)``, then build without loading
            weights (a ``source`` then only supplies the architecture).
        seed: the seed of ``random_weights``.
        mismatch_hint: appended when a bare state dict does not fit the architecture (how to
            describe another).

    Raises:
        UserFileError: ``source`` does not exist, or is a folder.
        ArchitectureMismatchError: a state dict that does not fit the architecture; with ``release``,
            a checkpoint recording another architecture than the release's (or the caller's).
        ValueError: no architecture known, weights holding NaN or infinite values, a digest that
            differs, a URL scheme other than http, https and file.
        DownloadError: a download that failed.
    """
    if is_release_name(source) and release is None:
        release, source = str(source), None
    entry: ReleasedModel | None = None
    if release is not None:
        release = canonical_release_name(release)
        entry = RELEASED_MODELS[release]

    def loaded(network: VPRNet, architecture_source: Source, weights: str, path: Path | None) -> LoadedNetwork:
        return LoadedNetwork(
            network, network.architecture, entry.image_size if entry else None,
            entry.normalization if entry else IMAGENET_NORMALIZATION, release, architecture_source, weights, path,
        )

    def architecture_or_release() -> Architecture:
        if architecture is not None:
            return architecture
        if entry is not None:
            return entry.architecture
        if source is None:
            raise UserError("no checkpoint, release or architecture: give a file, a release name, or an architecture with random weights")
        raise UserError(
            f"checkpoint {source} does not record its architecture (a bare state dict, no hyper_parameters with "
            f"{', '.join(ARCHITECTURE_FIELDS)}): give architecture=... or release=..."
        )

    given_source: Source = "caller" if architecture is not None else "release"
    if source is None:
        if random_weights or (entry is not None and not pretrained):
            network = seeded_network(architecture_or_release(), seed) if random_weights else untrained(architecture_or_release())
            return loaded(network, given_source, f"random (seed {seed})" if random_weights else "untrained", None)
        if entry is None:
            architecture_or_release()  # raises: nothing to load
        source = download_release(release, verify)  # type: ignore[arg-type]
        verify = False  # checked as downloaded
        payload = read_download(release, Path(source))  # type: ignore[arg-type]
    else:
        payload = read_weights_file(source)
    path = Path(source)
    stored = architecture_from_payload(payload, path)
    # What the architecture given is called in messages: a release's (with the caller's changes).
    target = None
    if entry is not None:
        target = f"release {release}" + ("" if architecture in (None, entry.architecture) else " with the arguments given")

    def recorded(network: VPRNet) -> VPRNet:
        """``network`` (built as the checkpoint records), refused when not the release's."""
        if target is not None:
            check_recorded_architecture(network, architecture_or_release(), target, path)
        return network

    if random_weights:
        return loaded(recorded(seeded_network(stored, seed)) if stored else seeded_network(architecture_or_release(), seed),
                      "checkpoint" if stored else given_source, f"random (seed {seed})", None)
    if entry is not None and verify:
        check_released_file(release, path)  # type: ignore[arg-type]
    state_dict = state_dict_of(payload, path)
    if stored is not None:
        return loaded(recorded(network_with_weights(stored, state_dict, path)), "checkpoint", "checkpoint", path)
    if entry is not None:
        state_dict = entry.network_state(state_dict, path)
    try:
        network = network_with_weights(architecture_or_release(), state_dict, path, target)
    except ArchitectureMismatchError as error:
        if not mismatch_hint:
            raise
        raise ArchitectureMismatchError(f"{error}; {mismatch_hint}") from None
    log.info("loaded the weights of %s", shown_checkpoint(path))
    return loaded(network, given_source, "checkpoint", path)


def untrained(architecture: Architecture) -> VPRNet:
    """``architecture`` with its builders' initial weights, in eval mode."""
    return build_network(architecture, pretrained_backbone=False).eval()


def seeded_network(architecture: Architecture, seed: int) -> VPRNet:
    """``architecture`` with the initial weights of ``seed`` (``pytorch_lightning.seed_everything``)."""
    from pytorch_lightning import seed_everything  # heavy import, only needed here

    seed_everything(seed)
    return untrained(architecture)


def network_with_weights(
    architecture: Architecture, state_dict: Mapping[str, torch.Tensor], source: str | PathLike[str], target: str | None = None
) -> VPRNet:
    """The network ``architecture`` describes, holding the weights of ``state_dict`` (loaded
    strictly: :func:`load_state_strictly`; ``target`` names the architecture in its refusal, e.g.
    ``"release megaloc"``), in eval mode, float32, every weight finite (:func:`check_finite`).

    The network is built on the meta device and takes the checkpoint's tensors as its own, so
    nothing is initialised only to be overwritten (a ViT-g/14 loads in seconds instead of a
    minute). A network that keeps a tensor outside its state dict (a buffer computed at build
    time) is built on the CPU instead, and the weights copied in.
    """
    with torch.device("meta"):
        network = build_network(architecture, pretrained_backbone=False)
    load_state_strictly(network, state_dict, source, assign=True, target=target)
    if any(tensor.is_meta for tensor in (*network.parameters(), *network.buffers())):
        network = build_network(architecture, pretrained_backbone=False)
        load_state_strictly(network, state_dict, source, target=target)
    check_finite(network, source)
    return network.float().eval()


def described(network: VPRNet) -> str:
    """``network``'s architecture in a few words: ``"resnet50 + CosPlace, 2048-d descriptors"``."""
    return f"{network.architecture.backbone_arch} + {network.architecture.agg_arch}, {network.descriptor_dim}-d descriptors"


def weight_shapes(network: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    """The name and shape of every tensor of ``network``'s state dict."""
    return {key: tuple(tensor.shape) for key, tensor in network.state_dict().items()}


def check_recorded_architecture(network: VPRNet, expected: Architecture, target: str, source: str | PathLike[str]) -> None:
    """Refuse ``network``, built as checkpoint ``source`` records, when its architecture is not
    ``expected`` (``target``'s, e.g. ``"release megaloc"``): other backbone or aggregator names, or
    weights of other names or shapes. A fine-tune of ``expected`` passes, whatever it trained (the
    number of trained blocks, the dropout) and however its record spells the arguments.

    Raises:
        ArchitectureMismatchError: one line naming ``source``, ``target`` and both architectures.
    """
    with torch.device("meta"):  # shapes only: nothing allocated
        reference = build_network(expected, pretrained_backbone=False)
    same_names = (network.architecture.backbone_arch, network.architecture.agg_arch) == (expected.backbone_arch, expected.agg_arch)
    ours, theirs = weight_shapes(network), weight_shapes(reference)
    if same_names and ours == theirs:
        return
    difference = ""
    if described(network) == described(reference):
        key = next(key for key in sorted({*ours, *theirs}) if ours.get(key) != theirs.get(key))
        shown = [list(shapes[key]) if key in shapes else "absent" for shapes in (ours, theirs)]
        difference = f"; first difference: {key} {shown[0]} vs {shown[1]}"
    raise ArchitectureMismatchError(
        f"checkpoint {source} records {described(network)}, not the architecture of {target} ({described(reference)})"
        f"{difference}: give a file of that architecture (the release's, or a fine-tune of it), or load this one "
        "without naming a release (it builds the architecture it records)"
    )


def check_finite(network: torch.nn.Module, source: str | PathLike[str]) -> None:
    """Refuse weights holding NaN or infinite values (a training that diverged), in one pass over
    ``network``'s parameters and floating-point buffers.

    Raises:
        UserError: one line naming ``source``, how many tensors hold them and the first.
    """
    tensors = [(name, tensor) for name, tensor in (*network.named_parameters(), *network.named_buffers())
               if tensor.is_floating_point()]
    bad = [name for name, tensor in tensors if not bool(torch.isfinite(tensor).all())]
    if bad:
        raise UserError(
            f"checkpoint {source} holds NaN or infinite weights ({len(bad)} of {len(tensors)} tensors, "
            f"first: {bad[0]}): it was saved after its training diverged; use an earlier checkpoint"
        )


def load_state_strictly(
    network: VPRNet, state_dict: Mapping[str, torch.Tensor], source: str | PathLike[str], assign: bool = False,
    target: str | None = None,
) -> None:
    """Load the network part of ``state_dict`` (its :data:`NETWORK_PREFIXES` keys) strictly into
    ``network``; a missing, unexpected or misshapen key is one line naming ``source`` (and
    ``target``, the architecture's name, with ``network``'s backbone, aggregator and size).
    ``assign``: ``network``'s tensors become those of ``state_dict`` (a network on the meta device)."""
    state_dict = {k: v for k, v in state_dict.items() if k.startswith(NETWORK_PREFIXES)}
    fitted = "this architecture" if target is None else f"the architecture of {target} ({described(network)})"
    try:
        result = network.load_state_dict(state_dict, strict=False, assign=assign)
    except RuntimeError as error:  # size mismatches
        mismatch = next((line.strip() for line in str(error).splitlines() if "size mismatch" in line), str(error))
        raise ArchitectureMismatchError(f"checkpoint {source} does not fit {fitted}: {mismatch}") from None
    problems = []
    if result.missing_keys:
        problems.append(f"missing {len(result.missing_keys)} keys (first: {result.missing_keys[0]})")
    if result.unexpected_keys:
        problems.append(f"unexpected {len(result.unexpected_keys)} keys (first: {result.unexpected_keys[0]})")
    if problems:
        raise ArchitectureMismatchError(f"checkpoint {source} does not fit {fitted}: {'; '.join(problems)}")
