"""Files given as checkpoints: not-a-checkpoint, torn and code-running files are told apart in one
line before anything is unpickled; real checkpoints (zip and legacy format) pass. A checkpoint given
by URL is checked as its downloaded copy, named by its URL, and its copy does not outlive the process."""

from __future__ import annotations

import collections
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from models.pretrained import read_checkpoint
from tests.planted_pickles import RunsShell
from utils.checkpoint_files import RefusedCheckpointError, check_resume_checkpoint, checkpoint_file_problem

REPO = Path(__file__).resolve().parents[1]


def lightning_like(path: Path, **extra: object) -> Path:
    """A checkpoint shaped like a Lightning one (state dict, loops, hyperparameters)."""
    state = collections.OrderedDict(weight=torch.arange(6.0).reshape(2, 3), bias=torch.zeros(2))
    payload = {"state_dict": state, "epoch": 0, "global_step": 3, "hyper_parameters": {"lr": 1e-3, "agg_config": {"k": [1, 2]}}}
    torch.save({**payload, **extra}, path)
    return path


@pytest.mark.parametrize(
    ("content", "expected"),
    [(b"", r"is empty \(0 bytes\), not a checkpoint"), (b"epoch,step\n0,3\n", r"is not a torch checkpoint.*b'epoch,st'\)")],
    ids=["empty", "text"],
)
def test_empty_and_text_files_are_said_not_to_be_checkpoints(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "model.ckpt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=rf"checkpoint {path} {expected}: pass a \.ckpt/\.pth file") as info:
        read_checkpoint(path)
    assert "weights_only" not in str(info.value) and "\n" not in str(info.value)


def test_zip_and_legacy_checkpoints_pass_the_format_check(tmp_path: Path) -> None:
    zipped = lightning_like(tmp_path / "zip.ckpt")
    legacy = tmp_path / "legacy.pth"
    torch.save({"w": torch.ones(2)}, legacy, _use_new_zipfile_serialization=False)
    assert checkpoint_file_problem(zipped) is None and checkpoint_file_problem(legacy) is None
    torch.testing.assert_close(read_checkpoint(legacy)["w"], torch.ones(2))
    check_resume_checkpoint(zipped)


def test_a_torn_checkpoint_names_the_file_and_the_ones_to_resume_from(tmp_path: Path) -> None:
    whole = lightning_like(tmp_path / "last.ckpt")
    torn = tmp_path / "resume-latest.ckpt"
    torn.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(ValueError) as info:
        check_resume_checkpoint(torn)
    message = str(info.value)
    assert message.startswith(f"checkpoint {torn} is torn") and "resume from one of last.ckpt" in message
    assert "\n" not in message
    with pytest.raises(ValueError, match=rf"checkpoint {torn} is torn"):
        read_checkpoint(torn)


def test_a_checkpoint_that_runs_code_is_refused_for_resume(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    planted = lightning_like(tmp_path / "planted.ckpt", callbacks={"evil": RunsShell(f"touch {marker}")})
    with pytest.raises(RefusedCheckpointError) as info:
        check_resume_checkpoint(planted)
    message = str(info.value)
    assert message.startswith(f"checkpoint {planted} holds a pickled ") and ".system," in message
    assert message.endswith("refused, not executed") and "\n" not in message
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["torn", "digest"])
def test_a_damaged_checkpoint_at_a_url_is_named_by_its_url_and_its_copy_removed(
    served: tuple[str, Path], download_folder: Path, damage: str
) -> None:
    base, folder = served
    whole = lightning_like(folder / "whole.ckpt", tensors_sha256="0" * 64)
    if damage == "torn":
        (folder / "whole.ckpt").write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    expected = "is torn" if damage == "torn" else "is corrupt: its tensors differ from the digest"
    with pytest.raises(ValueError, match=rf"^checkpoint {base}/whole.ckpt {expected}") as info:
        read_checkpoint(f"{base}/whole.ckpt")
    assert str(download_folder) not in str(info.value) and "\n" not in str(info.value)
    assert list(download_folder.iterdir()) == []


def test_a_checkpoint_read_from_a_url_is_removed_when_the_process_ends(served: tuple[str, Path], tmp_path: Path) -> None:
    base, folder = served
    lightning_like(folder / "last.ckpt")
    code = ("import glob, sys, tempfile; from models.pretrained import read_checkpoint; "
            "print(sorted(read_checkpoint(sys.argv[1])['state_dict'])); print(glob.glob(tempfile.gettempdir() + '/ckpt-*/*'))")
    temporary = tmp_path / "process_tmp"
    temporary.mkdir()
    out = subprocess.run([sys.executable, "-c", code, f"{base}/last.ckpt"], cwd=REPO, env={**os.environ, "TMPDIR": str(temporary)},
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0] == "['bias', 'weight']"
    assert out[1].startswith(f"['{temporary}/ckpt-") and out[1].endswith("/last.ckpt']")  # there while it ran
    assert list(temporary.iterdir()) == []  # gone when it ended
