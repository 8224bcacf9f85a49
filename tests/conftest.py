"""Fixtures shared by several test modules."""

from __future__ import annotations

import functools
import http.server
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from toy_world import generate_toy_world
from utils.checkpoint_files import remove_downloads


#: Under pytest-xdist (``make test`` runs two workers), each worker's torch uses one thread: two
#: workers on two cores, rather than four threads fighting over them.
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER")


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread_per_worker() -> None:
    """One intra-op thread per xdist worker (after collection, where some modules ask for two), and
    in the processes its tests start (``OMP_NUM_THREADS``), so that two workers do not start four."""
    if XDIST_WORKER:
        torch.set_num_threads(1)
        os.environ["OMP_NUM_THREADS"] = "1"


@pytest.fixture(autouse=True)
def user_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test's own user cache folder (``utils.user_cache``): tests never touch the user's."""
    folder = tmp_path_factory.mktemp("user_cache")
    monkeypatch.setenv("XDG_CACHE_HOME", str(folder))
    return folder


@pytest.fixture
def download_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The temporary folder (``tempfile``'s) during the test, where checkpoints given by URL are
    downloaded; the test's downloads are removed after it, as at the end of a process."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    yield folder
    remove_downloads()


@pytest.fixture
def served(tmp_path: Path, download_folder: Path) -> Iterator[tuple[str, Path]]:
    """An HTTP server on 127.0.0.1 serving ``tmp_path / "served"``: ``(base URL, folder)``."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", folder
    server.shutdown()
    server.server_close()


@pytest.fixture
def compile_calls(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """What ``torch.compile`` is called on during the test (the real ``torch.compile`` still runs)."""
    calls: list[Any] = []
    real_compile = torch.compile

    def recording_compile(model: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(model)
        return real_compile(model, *args, **kwargs)

    monkeypatch.setattr(torch, "compile", recording_compile)
    return calls


@pytest.fixture(scope="session")
def small_toy_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small toy world (seed 0, 56 px images), generated once per test session. Read it only:
    a test that changes files makes its own world."""
    root = tmp_path_factory.mktemp("small_toy_world") / "world"
    generate_toy_world(root, seed=0, size="small", image_size=56, progress=False)
    return root


@pytest.fixture(scope="session")
def short_run(small_toy_world: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    """One epoch of the tiny training run (``tests.toy_training.train_args``) on the small toy world,
    trained once per test session: ``(trainer, last.ckpt)``. Read the checkpoint only."""
    import main as train_cli
    from tests.toy_training import train_args

    out = tmp_path_factory.mktemp("short") / "run"
    trainer = train_cli.main(train_args(small_toy_world, out, "--trainer.max_epochs", "1")).trainer
    return trainer, out / "checkpoints" / "last.ckpt"
