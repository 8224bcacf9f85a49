"""Checkpoints written by this project carry a digest of their tensors, checked on every load; a
full disk leaves the previous checkpoint whole and names the file."""

from __future__ import annotations

import collections
import errno
import struct
from pathlib import Path

import pytest
import torch

from models.pretrained import read_checkpoint
from utils.checkpoint_digest import CONTENT_KEY, DIGEST_KEY, tensors_digest
from utils.checkpoint_files import check_resume_checkpoint
from utils.errors import UserError
from utils.training.checkpoint_io import AtomicCheckpointIO

PATTERN = torch.arange(64, dtype=torch.int64) * 0x0101010101  # bytes found once in the file


def lightning_like() -> dict:
    state = collections.OrderedDict(weight=PATTERN.float().reshape(8, 8), marker=PATTERN.clone())
    return {"state_dict": state, "epoch": 0, "global_step": 3, "optimizer_states": [{"state": {0: {"exp_avg": torch.ones(3)}}}],
            "hyper_parameters": {"lr": 1e-3}}


def test_a_bit_flipped_checkpoint_is_refused_on_every_load_and_an_old_one_still_loads(tmp_path: Path):
    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint(lightning_like(), path)
    assert len(read_checkpoint(path)[DIGEST_KEY]) == 64
    check_resume_checkpoint(path)

    data = bytearray(path.read_bytes())
    offset = bytes(data).index(PATTERN.numpy().tobytes())
    data[offset + 9] ^= 0x04  # one bit of the marker tensor; the file still unpickles
    flipped = tmp_path / "flipped.ckpt"
    flipped.write_bytes(bytes(data))
    assert not torch.equal(torch.load(flipped, weights_only=True)["state_dict"]["marker"], PATTERN)
    for load in (read_checkpoint, check_resume_checkpoint):
        with pytest.raises(UserError, match=rf"^checkpoint {flipped} is corrupt: its tensors differ from the digest") as info:
            load(flipped)
        assert "\n" not in str(info.value)

    old = tmp_path / "old.ckpt"
    torch.save(lightning_like(), old)  # written before digests: loads as before
    assert DIGEST_KEY not in read_checkpoint(old)
    check_resume_checkpoint(old)


def test_a_full_disk_leaves_the_previous_checkpoint_whole_and_names_the_file(tmp_path: Path, monkeypatch):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint(lightning_like(), path)
    before = path.read_bytes()

    def full_disk(obj, stream, *args, **kwargs):
        stream.write(b"PK\x03\x04 half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match=rf"could not write {path}: No space left on device") as info:
        io.save_checkpoint({**lightning_like(), "global_step": 4}, path)
    assert info.value.errno == errno.ENOSPC
    assert path.read_bytes() == before and [file.name for file in tmp_path.iterdir()] == ["last.ckpt"]


def test_a_full_disk_reported_by_torch_as_a_runtime_error_names_the_file(tmp_path: Path, monkeypatch):
    path = tmp_path / "last.ckpt"

    def zip_writer_full(obj, stream, *args, **kwargs):  # what torch.save raises when the disk fills up
        try:
            raise OSError(errno.EFBIG, "File too large")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 4889792 vs 4889684")

    monkeypatch.setattr(torch, "save", zip_writer_full)
    with pytest.raises(OSError, match=rf"^could not write {path}: File too large$"):
        AtomicCheckpointIO().save_checkpoint(lightning_like(), path)
    assert list(tmp_path.iterdir()) == []


def test_a_bit_flipped_value_outside_the_tensors_is_refused(tmp_path: Path):
    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint(lightning_like(), path)
    data = bytearray(path.read_bytes())
    offset = bytes(data).index(struct.pack(">d", 1e-3))  # the pickled learning rate
    data[offset + 7] ^= 0x01
    flipped = tmp_path / "flipped.ckpt"
    flipped.write_bytes(bytes(data))
    assert torch.load(flipped, weights_only=True)["hyper_parameters"]["lr"] != 1e-3  # it still loads, changed
    for load in (read_checkpoint, check_resume_checkpoint):
        with pytest.raises(UserError, match=rf"^checkpoint {flipped} is corrupt: its values \(learning rate, settings, "
                                            r"counters\) differ from the digest"):
            load(flipped)

    older = tmp_path / "older.ckpt"  # written when only the tensors had a digest: checked as then
    payload = lightning_like()
    payload[DIGEST_KEY] = tensors_digest(payload)
    torch.save(payload, older)
    assert CONTENT_KEY not in read_checkpoint(older)
    check_resume_checkpoint(older)
