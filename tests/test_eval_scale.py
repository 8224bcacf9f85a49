"""Evaluation beyond one process and beyond memory: descriptors streamed to disk in chunks, a killed
run resumed, two ranks equal to one, a memory-mapped database searched block by block.

The model is a ResNet-18 + GeM with weights from a seed, at 32 px, on the toy world's SPED
(6 database images, 6 queries); chunks of 2 images make 3 chunks per side.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

import eval as eval_cli
from dataloaders.eval_sets import folders
from dataloaders.eval_sets.file_lists import FILE_LISTS_FOLDER, remembered_file_lists
from dataloaders.eval_sets.gmberton import read_gmberton
from models.architecture import Architecture
from models.loading import load_network
from tests.test_eval_cli import error_line
from utils.errors import UserError
from utils.evaluation import streaming
from utils.evaluation.distributed import DistributedContext, context_from_environment
from utils.evaluation.search import search
from utils.evaluation.streaming import DescriptorStore, store_identity
from utils.file_hash import file_sha256

REPO = Path(__file__).resolve().parents[1]
TIMEOUT_S = 300
FLAGS = [
    "--random_weights", "--backbone", "resnet18", "--backbone_config", '{"layers_to_crop": [4]}', "--agg_arch", "GeM",
    "--image_size", "32", "--device", "cpu", "--num_workers", "0", "--batch_size", "2", "--chunk_size", "2",
    "--val_datasets", "sped", "--keep_descriptors",
]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_within_time(command: list[str]) -> subprocess.CompletedProcess[str]:
    """Run ``command`` in its own process group; past ``TIMEOUT_S`` the whole group (torchrun and
    its ranks) is killed and the test fails, never hangs."""
    process = subprocess.Popen(command, cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"{command[:4]} did not finish within {TIMEOUT_S} s: {stderr[-2000:]}")
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def flags(world: Path, log_dir: Path) -> list[str]:
    return [*FLAGS, "--data_dir", str(world), "--log_dir", str(log_dir)]


def only_run(log_dir: Path) -> Path:
    (run_dir,) = log_dir.iterdir()
    return run_dir


def set_folder(run_dir: Path) -> Path:
    return run_dir / "descriptors" / "sped"


def records(run_dir: Path) -> dict[str, tuple[int, int]]:
    """Each chunk record's inode and modification time: a record written again is a new file
    (atomic rename; its inode number may be one freed before, its time is later)."""
    return {path.stem: (path.stat().st_ino, path.stat().st_mtime_ns)
            for path in sorted((set_folder(run_dir) / "chunks").glob("*.json"))}


@pytest.fixture(scope="module")
def reference(small_toy_world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted run in one process."""
    log_dir = tmp_path_factory.mktemp("reference")
    eval_cli.main(flags(small_toy_world, log_dir))
    return only_run(log_dir)


def folder_state(run_dir: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``run_dir`` with its size and modification time: what a refused resume must leave as it was."""
    return {str(path.relative_to(run_dir)): (path.stat().st_size, path.stat().st_mtime_ns)
            for path in sorted(run_dir.rglob("*")) if path.is_file()}


def assert_same_run(run_dir: Path, reference: Path) -> None:
    for side in ("database", "queries"):  # bit for bit
        assert (set_folder(run_dir) / f"{side}.npy").read_bytes() == (set_folder(reference) / f"{side}.npy").read_bytes()
    assert json.loads((run_dir / "results.json").read_text()) == json.loads((reference / "results.json").read_text())


def test_two_ranks_describe_what_one_process_does(small_toy_world: Path, reference: Path, tmp_path: Path) -> None:
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
               "eval.py", *flags(small_toy_world, tmp_path)]
    done = run_within_time(command)
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = only_run(tmp_path)
    assert_same_run(run_dir, reference)
    assert json.loads((run_dir / "run.json").read_text())["processes"] == 2
    assert done.stderr.count("sped: 6 database images and 6 queries described in") == 1  # rank 0 alone searches


def test_killed_run_resumes_with_the_chunks_on_disk(
    small_toy_world: Path, reference: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys
) -> None:
    command = [sys.executable, "-m", "tests.scripts.eval_killed_at_chunk", "2", *flags(small_toy_world, tmp_path)]
    killed = run_within_time(command)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    run_dir = only_run(tmp_path)
    assert not (run_dir / "results.json").exists()
    before = records(run_dir)
    assert list(before) == ["database_00000", "database_00001"]  # killed while writing the third of 3

    # A recorded chunk whose bytes changed on disk is computed again, with a line naming it.
    header = 128  # .npy header of a [6, 256] float32 array
    with open(set_folder(run_dir) / "database.npy", "r+b") as stream:
        stream.seek(header + 3 * 256 * 4)  # row 3: chunk 1 of the database
        stream.write(b"\x00\x01\x02\x03")
    eval_cli.main([*flags(small_toy_world, tmp_path), "--resume", str(run_dir)])
    assert "database chunk 1 of sped (rows 2-3): its bytes changed since they were written; computing it again" in caplog.text
    after = records(run_dir)
    assert len(after) == 6
    assert [name for name in before if after[name] == before[name]] == ["database_00000"]  # reused, not rewritten
    assert only_run(tmp_path) == run_dir  # no new folder
    assert_same_run(run_dir, reference)

    # Resumed again: the run finished, so nothing is computed and nothing in its folder changes.
    before_refusal = folder_state(run_dir)
    with pytest.raises(SystemExit):
        eval_cli.main([*flags(small_toy_world, tmp_path), "--resume", str(run_dir)])
    assert f"--resume {run_dir} finished at " in capsys.readouterr().err
    assert folder_state(run_dir) == before_refusal
    assert (run_dir / "interrupted_1" / "eval.log").is_file()  # what the killed attempt wrote
    assert_same_run(run_dir, reference)


def test_resume_refuses_other_settings_and_folders_that_are_no_run(small_toy_world: Path, reference: Path, tmp_path: Path, capsys) -> None:
    other = [*flags(small_toy_world, tmp_path), "--image_size", "40", "--resume", str(reference)]
    with pytest.raises(SystemExit):
        eval_cli.main(other)
    assert f"--resume {reference} finished at " in capsys.readouterr().err  # a finished run is not run again
    with pytest.raises(SystemExit):
        eval_cli.main([*flags(small_toy_world, tmp_path), "--resume", str(tmp_path)])
    assert f"--resume {tmp_path} is not a run folder (it holds no run.json)" in capsys.readouterr().err


def test_store_writes_rows_in_place_and_maps_them(tmp_path: Path) -> None:
    store = DescriptorStore(tmp_path, {"model": "m"}, {"database": 5, "queries": 2}, chunk_size=2)
    rows = np.arange(7 * 3, dtype=np.float32).reshape(7, 3)
    for chunk in store.chunks:
        offset = 0 if chunk.side == "database" else 5
        store.write(chunk, rows[offset + chunk.start : offset + chunk.stop])
    arrays = store.arrays()
    assert isinstance(arrays.database, np.memmap)
    np.testing.assert_array_equal(np.asarray(arrays), rows)
    np.testing.assert_array_equal(np.load(tmp_path / "queries.npy"), rows[5:])  # plain .npy files
    assert store.missing(store.chunks) == []


def test_a_chunk_whose_images_were_replaced_at_the_same_paths_is_computed_again(tmp_path: Path, caplog) -> None:
    from dataloaders.eval_sets import EvalSet
    from utils.evaluation.pipeline import images_fingerprint

    for name in ("a.jpg", "b.jpg", "q.jpg"):
        (tmp_path / name).write_bytes(b"an image")
    eval_set = EvalSet("folders", tmp_path, ["a.jpg", "b.jpg"], ["q.jpg"])
    store = DescriptorStore(tmp_path / "store", {"model": "m"}, {"database": 2, "queries": 1}, chunk_size=1,
                            fingerprint=images_fingerprint(eval_set))
    for chunk in store.chunks:
        store.write(chunk, np.ones((1, 3), dtype=np.float32))
    assert store.missing(store.chunks) == []
    (tmp_path / "b.jpg").write_bytes(b"another image, same path")  # replaced between a run and its resume
    with caplog.at_level(logging.WARNING):
        assert [chunk.name for chunk in store.missing(store.chunks)] == ["database_00001"]
    assert "database chunk 1 of store (rows 1-1): its images changed since it was computed" in caplog.text


def test_memory_mapped_database_is_searched_in_blocks_with_the_in_memory_rankings(tmp_path: Path, monkeypatch) -> None:
    faiss = pytest.importorskip("faiss")
    rng = np.random.default_rng(0)
    database = rng.standard_normal((20_000, 64)).astype(np.float32)
    database /= np.linalg.norm(database, axis=1, keepdims=True)
    queries = database[rng.choice(20_000, 50)] + 0.05 * rng.standard_normal((50, 64)).astype(np.float32)
    np.save(tmp_path / "database.npy", database)
    mapped = np.load(tmp_path / "database.npy", mmap_mode="r")
    for storage in ("fp32", "fp16"):
        expected = search(database, queries, 10, storage=storage, db_chunk=1024)
        with monkeypatch.context() as patch:  # no faiss index (a copy of the whole database) is built
            for index in ("IndexFlat", "IndexFlatL2", "IndexFlatIP", "IndexScalarQuantizer"):
                patch.setattr(faiss, index, None)
            tracemalloc.start()
            actual = search(np.asarray(mapped), queries, 10, storage=storage, db_chunk=1024)  # as the pipeline passes it
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        np.testing.assert_array_equal(actual[1], expected[1])
        np.testing.assert_array_equal(actual[0], expected[0])
        assert peak < database.nbytes / 4  # a few blocks of 1024 rows, never the 5 MB database


def test_sf_xl_layout_is_listed_once_per_run_and_its_lists_kept(small_toy_world: Path, tmp_path: Path, monkeypatch) -> None:
    toy = small_toy_world / "gmberton" / "toy_city" / "images" / "test"
    root = tmp_path / "sf_xl" / "test"  # SF-XL's test split: one database, two query folders
    shutil.copytree(toy / "database", root / "database")
    for queries in ("queries_v1", "queries_night"):
        shutil.copytree(toy / "queries", root / queries)
    walked: list[Path] = []
    walk = folders._walk
    monkeypatch.setattr(folders, "_walk", lambda folder, flag: walked.append(folder) or walk(folder, flag))

    with remembered_file_lists() as lists:
        night = read_gmberton(root, "sf_xl_night", queries="queries_night")
        v1 = read_gmberton(root, "sf_xl_v1", queries="queries_v1")
    assert walked == [root / "database", root / "queries_night", root / "queries_v1"]  # the database once
    assert v1.db_paths == night.db_paths and v1.num_queries == len(list((toy / "queries").iterdir()))
    lists.save(tmp_path / "run" / FILE_LISTS_FOLDER)

    walked.clear()  # a resumed run reads the lists kept with the run
    with remembered_file_lists(tmp_path / "run" / FILE_LISTS_FOLDER):
        again = read_gmberton(root, "sf_xl_v1", queries="queries_v1")
    assert (again.db_paths, again.query_paths) == (v1.db_paths, v1.query_paths)
    assert walked == []
    read_gmberton(root, "sf_xl_v1", queries="queries_v1")  # outside a run: listed afresh
    assert walked == [root / "database", root / "queries_v1"]
    with pytest.raises(FileNotFoundError, match="it has queries_night, queries_v1: name one as queries"):
        read_gmberton(root, "sf_xl")


def test_rank_and_world_come_from_torchrun_or_slurm() -> None:
    assert context_from_environment({}) == DistributedContext()
    assert context_from_environment({"SLURM_PROCID": "0", "SLURM_NTASKS": "1", "SLURM_LOCALID": "0"}) == DistributedContext()
    slurm = {"SLURM_PROCID": "3", "SLURM_NTASKS": "4", "SLURM_LOCALID": "1"}
    with pytest.raises(UserError, match="4 processes but no MASTER_ADDR or MASTER_PORT in the environment"):
        context_from_environment(slurm)
    # torchrun's variables win over the SLURM allocation it may run inside
    assert context_from_environment({**slurm, "RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"}) == DistributedContext()


# ------------------------------------------------------------------------------ interrupted, resumed, refused
ARCHITECTURE = Architecture("resnet18", {"layers_to_crop": [4]}, "GeM", {})
CHECKPOINT_FLAGS = [flag for flag in FLAGS if flag != "--random_weights"]  # the architecture of FLAGS, weights from a file


def save_weights(path: Path, seed: int) -> Path:
    """A bare state dict of ``ARCHITECTURE`` with the weights of ``seed``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(load_network(None, architecture=ARCHITECTURE, random_weights=True, seed=seed).network.state_dict(), path)
    return path


def interrupted_run(argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys, chunks: int = 2) -> tuple[Path, str, str]:
    """``eval.main(argv)`` stopped by Ctrl-C once ``chunks`` chunk records are written (exit status
    130): ``(run folder, stdout, stderr)``."""
    write, recorded = streaming.write_atomically, []

    def write_or_stop(path: Path, data: object) -> Path:
        if path.parent.name == "chunks":
            if len(recorded) == chunks:
                raise KeyboardInterrupt
            recorded.append(path)
        return write(path, data)

    log_dir = Path(argv[argv.index("--log_dir") + 1])
    with monkeypatch.context() as patch:
        patch.setattr(streaming, "write_atomically", write_or_stop)
        with pytest.raises(SystemExit) as stopped:
            eval_cli.main(argv)
    assert stopped.value.code == 130
    captured = capsys.readouterr()
    return only_run(log_dir), captured.out, captured.err


def refused(argv: list[str], run_dir: Path, capsys) -> str:
    """The one error line of a resume of ``run_dir`` refused by ``eval.main(argv)``, which changed nothing there."""
    before = folder_state(run_dir)
    with pytest.raises(SystemExit) as stopped:
        eval_cli.main(argv)
    assert stopped.value.code == 2
    assert folder_state(run_dir) == before  # no interrupted_<n>/, no eval.log, no chunk touched
    return error_line(capsys.readouterr().err)


def test_ctrl_c_prints_the_command_that_resumes_the_run(
    small_toy_world: Path, reference: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    argv = flags(small_toy_world, tmp_path)
    run_dir, stdout, stderr = interrupted_run(argv, monkeypatch, capsys)
    assert f"run folder: {run_dir}" in stdout  # said when the folder was created, before the interruption
    assert "Traceback" not in stderr
    resume = f"eval.py: interrupted: resume with {shlex.join(['eval.py', *argv, '--resume', str(run_dir)])}"
    assert stderr.strip().splitlines()[-1] == resume
    eval_cli.main(shlex.split(resume.split("resume with ", 1)[1])[1:])  # the command it printed
    assert_same_run(run_dir, reference)
    capsys.readouterr()

    monkeypatch.setattr(eval_cli, "load_network", lambda *args, **kwargs: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(SystemExit) as stopped:  # before any run folder: nothing to resume
        eval_cli.main(flags(small_toy_world, tmp_path / "early"))
    assert stopped.value.code == 130
    assert capsys.readouterr().err.strip() == "eval.py: interrupted (nothing on disk to resume from)"


def test_resume_compares_the_checkpoint_content_not_its_path(
    small_toy_world: Path, tmp_path: Path, monkeypatch, capsys, caplog: pytest.LogCaptureFixture
) -> None:
    first, second = save_weights(tmp_path / "first.ckpt", 1), save_weights(tmp_path / "second.ckpt", 2)
    model = tmp_path / "training" / "last.ckpt"  # a checkpoint rewritten in place, as a training run does
    model.parent.mkdir()
    shutil.copyfile(first, model)

    def argv(checkpoint: Path, log_dir: Path) -> list[str]:
        return [*CHECKPOINT_FLAGS, "--ckpt_path", str(checkpoint), "--data_dir", str(small_toy_world), "--log_dir", str(log_dir)]

    run_dir, _, _ = interrupted_run(argv(model, tmp_path / "logs"), monkeypatch, capsys)
    shutil.copyfile(second, model)  # other weights under the same path
    line = refused([*argv(model, tmp_path / "logs"), "--resume", str(run_dir)], run_dir, capsys)
    assert f'checkpoint_sha256 "{file_sha256(first)}" then, "{file_sha256(second)}" now' in line

    shutil.copyfile(first, model)  # the same weights, spelled another way: resumed with the chunks on disk
    caplog.set_level(logging.INFO)
    eval_cli.main([*argv(tmp_path / "training" / ".." / "training" / "last.ckpt", tmp_path / "logs"), "--resume", str(run_dir)])
    assert "sped: 2 of 6 chunks verified on disk, computing 4" in caplog.text
    eval_cli.main(argv(first, tmp_path / "whole"))
    whole = only_run(tmp_path / "whole")  # uninterrupted, the first weights: the same descriptors, bit for bit
    for side in ("database", "queries"):
        assert (set_folder(run_dir) / f"{side}.npy").read_bytes() == (set_folder(whole) / f"{side}.npy").read_bytes()


def test_resume_refuses_descriptors_without_identity_or_with_a_broken_one(
    small_toy_world: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    argv = flags(small_toy_world, tmp_path)
    run_dir, _, _ = interrupted_run(argv, monkeypatch, capsys)
    identity = set_folder(run_dir) / "identity.json"
    identity.unlink()
    line = refused([*argv, "--image_size", "40", "--chunk_size", "3", "--resume", str(run_dir)], run_dir, capsys)
    assert "was run with other settings (chunk_size 2 then, 3 now; image_size [32, 32] then, [40, 40] now)" in line
    line = refused([*argv, "--resume", str(run_dir)], run_dir, capsys)
    assert line == (f"eval.py: error: {set_folder(run_dir)} holds descriptors but no identity.json saying what they were "
                    f"computed with, so they cannot be reused: delete {set_folder(run_dir)} to compute its descriptors again")
    identity.write_text('{"image_size": [32, 3')
    line = refused([*argv, "--resume", str(run_dir)], run_dir, capsys)
    assert line.startswith(f"eval.py: error: {identity} is unreadable (")
    assert line.endswith(f"): delete {set_folder(run_dir)} to compute its descriptors again")


def test_resume_of_a_run_stopped_before_its_descriptors_compares_its_settings(
    small_toy_world: Path, reference: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    argv = flags(small_toy_world, tmp_path)
    with monkeypatch.context() as patch:
        patch.setattr(eval_cli, "evaluate_sets", lambda *args, **kwargs: (_ for _ in ()).throw(KeyboardInterrupt))
        with pytest.raises(SystemExit):
            eval_cli.main(argv)
    run_dir = only_run(tmp_path)
    assert not (run_dir / "descriptors").exists()
    line = refused([*argv, "--image_size", "40", "--resume", str(run_dir)], run_dir, capsys)
    assert line == (f"eval.py: error: --resume {run_dir} was run with other settings (image_size [32, 32] then, [40, 40] "
                    "now): resume with the settings of the interrupted run, or start a new run")
    line = refused([*argv, "--val_datasets", "sped", "nordland", "--resume", str(run_dir)], run_dir, capsys)
    assert "was run with other settings (sets {" in line
    eval_cli.main([*argv, "--resume", str(run_dir)])
    assert_same_run(run_dir, reference)


def test_chunk_records_of_another_identity_are_not_reused(tmp_path: Path) -> None:
    sides = {"database": 2, "queries": 2}
    store = DescriptorStore(tmp_path, {"model": "m"}, sides, chunk_size=2)
    for chunk in store.chunks:
        store.write(chunk, np.ones((2, 3), np.float32))
    with pytest.raises(UserError, match=r'other settings \(model "m" then, "n" now\)'):
        DescriptorStore(tmp_path, {"model": "n"}, sides, chunk_size=2)
    (tmp_path / "identity.json").write_text(json.dumps(store_identity({"model": "n"}, sides, 2)))  # replaced by hand
    other = DescriptorStore(tmp_path, {"model": "n"}, sides, chunk_size=2)
    assert other.missing(other.chunks) == other.chunks


def test_a_side_file_cut_short_is_refused_before_any_chunk_is_computed(tmp_path: Path) -> None:
    store = DescriptorStore(tmp_path, {"model": "m"}, {"database": 4, "queries": 1}, chunk_size=2)
    store.write(store.chunks[0], np.ones((2, 3), dtype=np.float32))
    database = tmp_path / "database.npy"
    size = database.stat().st_size
    os.truncate(database, size - 10)  # a copy or a disk that cut it
    with pytest.raises(UserError, match=rf"^{database} is {size - 10} bytes, not the {size} of \[4, 3\] float32 "
                                        r"descriptors: delete it to compute them again$"):
        store.missing(store.chunks)
