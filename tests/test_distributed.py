"""DDP: validation over the whole set in dataset order, and mining over the global batch.

Both run 2 CPU processes with the gloo backend.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from utils.training.metric_learning import MetricLearningObjective

REPO = Path(__file__).resolve().parents[1]
RANKS_TIMEOUT_S = 180


def _validate_with(devices: int, out: Path) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    subprocess.run(
        [sys.executable, "-m", "tests.scripts.ddp_validate", str(devices), str(out)],
        cwd=REPO, env=env, check=True, capture_output=True, timeout=300,
    )
    return json.loads(out.read_text())


def test_validation_recall_is_identical_with_one_and_two_processes(tmp_path: Path):
    single = _validate_with(1, tmp_path / "one.json")
    double = _validate_with(2, tmp_path / "two.json")
    assert "synthetic/R1" in single
    # 31 images over 2 ranks: the sampler pads a duplicate, which must not count twice.
    assert single == double


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _descriptors_and_labels() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(8).repeat_interleave(4)  # 8 places x 4 images
    centres = torch.nn.functional.normalize(torch.randn(8, 16, generator=generator), dim=1)
    noisy = centres[labels] + 0.6 * torch.randn(32, 16, generator=generator)
    return torch.nn.functional.normalize(noisy, dim=1), labels


def _rank_objective(rank: int, port: int, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        descriptors, labels = _descriptors_and_labels()
        share = slice(16 * rank, 16 * (rank + 1))  # whole places on each rank, as the sampler gives
        mine = descriptors[share].clone().requires_grad_(True)
        output = MetricLearningObjective()(mine, labels[share])
        output.loss.backward()
        torch.save({"loss": output.loss.detach(), "grad": mine.grad, "mined": output.mined_fraction}, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_mining_and_loss_see_the_global_batch(tmp_path: Path):
    descriptors, labels = _descriptors_and_labels()
    full = descriptors.clone().requires_grad_(True)
    reference = MetricLearningObjective()(full, labels)
    reference.loss.backward()

    ranks_running = mp.spawn(_rank_objective, args=(_free_port(), str(tmp_path)), nprocs=2, join=False)
    deadline = time.monotonic() + RANKS_TIMEOUT_S
    while not ranks_running.join(timeout=max(0.0, deadline - time.monotonic())):  # raises if a rank failed
        if time.monotonic() >= deadline:  # a rank stuck in a collective or in teardown: fail, do not hang
            for process in ranks_running.processes:
                process.kill()
            pytest.fail(f"the two ranks did not finish within {RANKS_TIMEOUT_S} s")
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    for rank, result in enumerate(ranks):
        # pytorch-metric-learning scales the global loss by the world size; DDP averages it back.
        torch.testing.assert_close(result["loss"] / 2, reference.loss.detach())
        torch.testing.assert_close(result["grad"] / 2, full.grad[16 * rank : 16 * (rank + 1)])
        assert result["mined"] == reference.mined_fraction
    # Mining one rank's share alone would give another loss: the check above is not vacuous.
    alone = MetricLearningObjective()(descriptors[:16], labels[:16]).loss
    assert not torch.isclose(alone, reference.loss)


def test_training_with_two_processes_splits_the_places_between_ranks_and_resumes_after_ctrl_c(
        small_toy_world: Path, tmp_path: Path):
    """Ctrl-C reaches both ranks (a terminal sends it to the process group) at step 1: they agree to
    save interrupted.ckpt at the end of the step under way; resumed with two processes, the run ends
    as an uninterrupted one would (3 steps, the checkpoint ranked by the gathered recall)."""
    world = small_toy_world
    out = tmp_path / "run"
    command = [
        sys.executable, "main.py", "--config", "configs/toy.yaml",
        "--data.data_root", str(world / "gsv-cities"), "--data.data_dir", str(world),
        "--data.cities", "[Bangkok, Boston, PRS]", "--data.image_size", "[56, 56]", "--data.batch_size", "4",
        "--data.num_workers", "0", "--data.persistent_workers", "false",
        "--model.agg_config", '{"num_clusters": 4, "cluster_dim": 8, "token_dim": 8}',
        "--trainer.max_epochs", "1", "--trainer.check_val_every_n_epoch", "1",
        "--trainer.devices", "2", "--trainer.strategy", "ddp",
        "--trainer.default_root_dir", str(out), "--trainer.enable_progress_bar", "false",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    interrupted = subprocess.run([*command, "--trust_config", "--trainer.callbacks+=tests.scripts.ctrl_c_at_step.CtrlCAtStep",
                                  "--trainer.callbacks.step=1"], cwd=REPO, env=env, capture_output=True, text=True,
                                 timeout=300, start_new_session=True)
    assert interrupted.returncode != 0
    saved = out / "lightning_logs" / "version_0" / "checkpoints" / "interrupted.ckpt"
    assert saved.is_file(), interrupted.stderr[-3000:]
    assert torch.load(saved, map_location="cpu", weights_only=True)["global_step"] == 2  # the step under way finished
    assert interrupted.stderr.count(f"resume with --ckpt_path {saved}") == 1, interrupted.stderr[-3000:]

    resumed = subprocess.run([*command, "--ckpt_path", str(saved)], cwd=REPO, env=env, capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    checkpoint = torch.load(next(out.rglob("last.ckpt")), map_location="cpu", weights_only=True)
    # 24 places, 4 per rank and step, 2 ranks: a global batch of 8 places, 3 optimizer steps.
    assert checkpoint["global_step"] == 3
    ranked = [path.name for path in out.rglob("epoch*.ckpt")]
    # the top-k checkpoint, ranked by the gathered validation recall, which its name carries
    assert len(ranked) == 1 and re.fullmatch(r"epoch00-step3-R1=\d+\.\d\d\.ckpt", ranked[0]), ranked
