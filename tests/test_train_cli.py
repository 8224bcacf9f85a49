"""main.py on a small toy world: a short run whose checkpoint eval.py loads, resume, NaN stop, errors."""

from __future__ import annotations

import csv
import json
import shutil
import signal
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

import eval as eval_cli
import main as train_cli
from models.vpr_model import NonFiniteError
from utils.errors import UserError
from tests.planted_pickles import RunsShell
from tests.toy_training import same_threads_env, train_args  # short_run: the session fixture of conftest.py
from tests.test_train_watch import main_error_line

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def toy_world(small_toy_world: Path) -> Path:
    return small_toy_world


def run_training(args: list[str]) -> pl.Trainer:
    return train_cli.main(args).trainer


def test_short_run_saves_a_checkpoint_that_eval_loads(toy_world: Path, short_run, tmp_path: Path):
    trainer, checkpoint = short_run
    assert trainer.global_step == 24 // 4  # 24 places, 4 per batch
    assert "pitts30k_val/R1" in trainer.callback_metrics
    assert checkpoint.is_file()
    assert list(checkpoint.parents[1].rglob("config.yaml"))  # the resolved configuration is saved

    eval_cli.main([
        "--ckpt_path", str(checkpoint), "--data_dir", str(toy_world), "--val_datasets", "pitts30k_val",
        "--image_size", "56", "56", "--device", "cpu", "--num_workers", "0", "--log_dir", str(tmp_path / "eval"),
    ])
    results = json.loads(next((tmp_path / "eval").rglob("results.json")).read_text())
    # The same descriptors and search as validation: eval.py reproduces the logged recall.
    assert results["pitts30k_val"]["recall@k"]["1"] == pytest.approx(float(trainer.callback_metrics["pitts30k_val/R1"]), abs=1e-3)


def test_eval_reads_every_format_of_the_toy_world(toy_world: Path, short_run, tmp_path: Path, capsys):
    _, checkpoint = short_run
    common = ["--ckpt_path", str(checkpoint), "--image_size", "56", "56", "--device", "cpu", "--num_workers", "0"]
    labelled = ["msls_val", "pitts30k_test", "pitts250k_test", "nordland", "sped"]
    eval_cli.main([*common, "--data_dir", str(toy_world), "--val_datasets", *labelled, "MSLS_Test",
                   "--log_dir", str(tmp_path / "published")])
    results = json.loads(next((tmp_path / "published").rglob("results.json")).read_text())
    assert sorted(results) == sorted(labelled)
    challenge = next((tmp_path / "published").rglob("msls_challenge_predictions.txt"))
    assert len(challenge.read_text().splitlines()) == 12  # every toy MSLS test query once

    gmberton = toy_world / "gmberton" / "toy_city" / "images" / "test"
    eval_cli.main([*common, "--database_folder", str(gmberton / "database"), "--queries_folder", str(gmberton / "queries"),
                   "--log_dir", str(tmp_path / "gmberton")])
    folder_results = json.loads(next((tmp_path / "gmberton").rglob("results.json")).read_text())
    assert folder_results["folders"]["num_queries"] == 4


@pytest.mark.parametrize("damage", ["planted", "torn"])
def test_a_bad_resume_checkpoint_is_one_line_before_lightning_opens_it(
    toy_world: Path, short_run, tmp_path: Path, damage: str, capsys: pytest.CaptureFixture[str]
):
    _, checkpoint = short_run
    folder, marker = tmp_path / "checkpoints", tmp_path / "marker"
    folder.mkdir()
    shutil.copy(checkpoint, folder / "last.ckpt")
    bad = folder / "resume-latest.ckpt"
    if damage == "planted":
        payload = torch.load(checkpoint, map_location="cpu", weights_only=True)
        payload["hyper_parameters"]["note"] = RunsShell(f"touch {marker}")
        torch.save(payload, bad)
        expected = (f"main.py: error: checkpoint {bad} holds a pickled ", "refused, not executed")
    else:
        bad.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 3])  # a write killed one third in
        expected = (f"main.py: error: checkpoint {bad} is torn", f"resume from one of last.ckpt in {folder} instead")
    capsys.readouterr()
    last_line = main_error_line(
        [*train_args(toy_world, tmp_path / "run", "--trainer.max_epochs", "2"), "--ckpt_path", str(bad)], capsys
    )
    assert last_line.startswith(expected[0]) and last_line.endswith(expected[1])
    assert not marker.exists() and not (tmp_path / "run").exists()  # refused before anything ran


def resumable_run_args(world: Path, out: Path) -> list[str]:
    """A run of 2 epochs x 4 steps (16 places, 4 per batch, shuffled) with dropout, validated on SPED
    each epoch and a resume checkpoint every step, its checkpoints in Lightning's default folder
    ``<out>/lightning_logs/version_N/checkpoints``."""
    args = train_args(
        world, out, "--trainer.max_epochs", "2", "--data.cities", '["Bangkok", "Boston"]', "--data.shuffle_all", "true",
        "--data.val_set_names", '["sped"]', "--resume_checkpoint.every_n_train_steps", "1",
        "--model.agg_config", '{"num_channels": 128, "num_clusters": 4, "cluster_dim": 8, "token_dim": 8, "dropout": 0.3}',
    )
    for flag in ("--checkpoint.dirpath", "--resume_checkpoint.dirpath"):
        del args[args.index(flag):args.index(flag) + 2]
    return args


def test_a_run_killed_mid_epoch_resumes_bit_exact_in_its_own_folder(toy_world: Path, tmp_path: Path):
    full = run_training(resumable_run_args(toy_world, tmp_path / "full"))

    args = resumable_run_args(toy_world, tmp_path / "killed")
    killed = subprocess.run([sys.executable, "-m", "tests.scripts.train_killed_at_step", "5", *args],
                            cwd=REPO, env=same_threads_env(), capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    folder = tmp_path / "killed" / "lightning_logs" / "version_0"
    resume_from = folder / "checkpoints" / "resume-latest.ckpt"
    assert torch.load(resume_from, map_location="cpu", weights_only=True)["global_step"] == 5  # epoch 1, batch 2 of 4
    config = (folder / "config.yaml").read_bytes()
    resumed = run_training([*args, "--ckpt_path", str(resume_from)])

    assert resumed.global_step == full.global_step == 8 and resumed.current_epoch == full.current_epoch
    expected, weights = full.lightning_module.state_dict(), resumed.lightning_module.state_dict()
    assert weights.keys() == expected.keys()
    assert [name for name in expected if not torch.equal(weights[name], expected[name])] == []
    # the same run folder: no new version, the best checkpoints of both epochs ranked together
    assert [path.name for path in folder.parent.iterdir()] == ["version_0"]
    assert Path(resumed.logger.log_dir) == folder
    ranking = next(callback for callback in resumed.checkpoint_callbacks if callback.monitor)
    # nothing written before is lost: the first configuration, the first epoch's metrics
    assert (folder / "config.yaml").read_bytes() == config and (folder / "config_resumed1.yaml").is_file()
    with (folder / "metrics.csv").open() as stream:
        recall_at_1 = {row["epoch"]: float(row["sped/R1"]) for row in csv.DictReader(stream) if row.get("sped/R1")}
    assert list(recall_at_1) == ["0", "1"]
    # the checkpoint names carry the first validation set's Recall@1
    expected_names = [f"epoch0{epoch}-step{4 * (epoch + 1)}-R1={recall_at_1[str(epoch)]:.2f}.ckpt" for epoch in (0, 1)]
    assert sorted(Path(path).name for path in ranking.best_k_models) == expected_names


class PoisonWeights(pl.Callback):
    """Puts a NaN into the weights after the first optimizer step, as a diverging run would."""

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args) -> None:
        if trainer.global_step == 1:
            pl_module.aggregator.dust_bin.data.fill_(float("nan"))


@pytest.mark.parametrize(("save_every", "what"), [(1, "weights"), (1000, "descriptors")])
def test_non_finite_values_stop_the_run_at_their_step_and_nothing_corrupt_is_saved(
    toy_world: Path, tmp_path: Path, monkeypatch, save_every: int, what: str
):
    monkeypatch.setattr(train_cli, "default_trainer_settings",
                        lambda original=train_cli.default_trainer_settings: {**original(), "callbacks": [PoisonWeights()]})
    args = train_args(toy_world, tmp_path / "nan", "--trainer.max_epochs", "1",
                      "--resume_checkpoint.every_n_train_steps", str(save_every))
    with pytest.raises(NonFiniteError, match=rf"non-finite {what}.* at optimizer step 1\b"):
        run_training(args)
    assert not list((tmp_path / "nan").rglob("*.ckpt"))


def test_missing_data_root_is_a_one_line_error_before_the_model_is_built(tmp_path: Path, monkeypatch, capsys):
    from models import vpr_model

    monkeypatch.setattr(vpr_model, "build_network", lambda *args, **kwargs: pytest.fail("the model was built"))
    line = main_error_line(["--data.data_root", str(tmp_path / "nowhere"), "--trainer.accelerator", "cpu",
                            "--trainer.default_root_dir", str(tmp_path)], capsys)
    assert line.startswith(f"main.py: error: --data.data_root {tmp_path / 'nowhere'}: ")


def test_a_bug_in_an_aggregator_keeps_its_traceback(toy_world: Path, tmp_path: Path, monkeypatch) -> None:
    """Only a UserError is one line: a ValueError raised by a bug in the aggregator's forward at the
    first training step leaves main.py as itself, with the frames that raised it."""
    from models.aggregators.salad import SALAD

    def broken_forward(self, *args, **kwargs):
        raise ValueError("a bug inside the aggregator")

    monkeypatch.setattr(SALAD, "forward", broken_forward)
    with pytest.raises(ValueError, match="a bug inside the aggregator") as info:
        train_cli.cli(train_args(toy_world, tmp_path / "bug", "--trainer.max_steps", "1"))
    assert not isinstance(info.value, UserError)
    assert traceback.extract_tb(info.value.__traceback__)[-1].name == "broken_forward"


@pytest.mark.parametrize(
    ("backbone", "backbone_config", "aggregator", "agg_config"),
    [("dinov2_vits14", {"num_trainable_blocks": 1, "pretrained": False}, "GeM", {})],  # every pair: tests/test_cross_product.py
)
def test_a_pair_trains_through_the_cli_flags(toy_world, tmp_path, backbone, backbone_config, aggregator, agg_config):
    """The pair, and a loss and miner other than the defaults, chosen and configured by flags."""
    args = train_args(toy_world, tmp_path / "pair", "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
                      "--data.val_set_names", '["sped"]')
    overrides = {
        "--model.backbone_arch": backbone, "--model.backbone_config": json.dumps(backbone_config),
        "--model.agg_arch": aggregator, "--model.agg_config": json.dumps(agg_config),
        "--model.loss_name": "TripletMarginLoss", "--model.loss_config": '{"margin": 0.3}',
        "--model.miner_name": "TripletMarginMiner", "--model.miner_config": '{"type_of_triplets": "all"}',
        "--model.miner_margin": "0.25",
    }
    for flag, value in overrides.items():
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args += [flag, value]
    trainer = run_training(args)
    assert trainer.global_step == 2
    assert "sped/R1" in trainer.callback_metrics
    assert type(trainer.lightning_module.aggregator).__name__ == aggregator
    objective = trainer.lightning_module.objective
    assert type(objective.loss).__name__ == "TripletMarginLoss" and objective.loss.margin == 0.3
    assert type(objective.miner).__name__ == "TripletMarginMiner" and objective.miner.margin == 0.25
    assert objective.miner.type_of_triplets == "all"
    recorded = torch.load(tmp_path / "pair" / "checkpoints" / "last.ckpt", weights_only=True)["hyper_parameters"]
    assert recorded["loss_config"] == {"margin": 0.3, "swap": False, "smooth_loss": False}
    assert (recorded["miner_config"], recorded["miner_margin"]) == ({"type_of_triplets": "all"}, 0.25)


@pytest.mark.parametrize(
    ("flag", "value", "expected"),
    [
        ("--model.loss_name", "CircleLoss", "loss_name='CircleLoss' is not a registered loss; registered: ContrastiveLoss, "),
        ("--model.loss_config", '{"alfa": 2}', "loss MultiSimilarityLoss takes no argument alfa; its arguments: alpha, beta, base"),
        ("--model.miner_name", "HardMiner", "miner_name='HardMiner' is not a registered miner; registered: "),
        ("--model.miner_config", '{"epsilon": 0.2}', "miner MultiSimilarityMiner takes no argument epsilon; its arguments: none (margin: set by miner_margin=)"),
    ],
)
def test_an_unknown_loss_or_miner_is_one_line_before_the_model_is_built(toy_world, tmp_path, monkeypatch, flag, value, expected):
    from models import vpr_model

    monkeypatch.setattr(vpr_model, "build_network", lambda *args, **kwargs: pytest.fail("the model was built"))
    with pytest.raises(UserError) as info:
        run_training(train_args(toy_world, tmp_path / "run", flag, value))
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_default_model_is_the_paper_recipe_starting_from_pretrained_dinov2(monkeypatch):
    from models.backbones import dinov2
    from models.vpr_model import VPRModel

    fetched = []

    def fake_fetch(url, path, what, argument="pretrained_path"):
        fetched.append(url)
        return dinov2.DINOv2("dinov2_vitb14").model.state_dict()

    monkeypatch.setattr(dinov2, "fetch_state_dict", fake_fetch)
    model = VPRModel()
    assert fetched == ["https://dl.fbaipublicfiles.com/dinov2/dinov2_vitb14/dinov2_vitb14_pretrain.pth"]
    assert model.backbone.num_trainable_blocks == 4 and model.aggregator.out_dim == 8448
    assert model.hparams.agg_config["in_channels"] == 768 and model.hparams.agg_config["dropout"] == 0.3
    configured = model.configure_optimizers()
    optimizer, schedule = configured["optimizer"], configured["lr_scheduler"]
    assert schedule["interval"] == "step"
    assert (schedule["scheduler"].start_factor, schedule["scheduler"].end_factor, schedule["scheduler"].total_iters) == (1.0, 0.2, 4000)
    assert type(optimizer).__name__ == "AdamW" and optimizer.defaults["lr"] == 6e-5
    assert optimizer.defaults["weight_decay"] == 9.5e-9
    assert model.objective.loss.alpha == 1 and model.objective.loss.beta == 50 and model.objective.miner.epsilon == 0.1


def test_compile_network_compiles_in_place_and_trains_alike(compile_calls):
    from models.vpr_model import VPRModel

    config = {
        "backbone_arch": "resnet18",
        "backbone_config": {"layers_to_crop": [3, 4], "layers_to_freeze": -1, "pretrained": False},
        "agg_config": {"num_clusters": 4, "cluster_dim": 8, "token_dim": 8, "dropout": 0.0},  # inductor draws other masks
    }
    torch.manual_seed(1)  # the weights do not depend on the tests that ran before
    eager = VPRModel(**config)
    assert compile_calls == []
    fast = VPRModel(**config, compile_network=True)
    assert len(compile_calls) == 2  # nn.Module.compile of the backbone and of the aggregator
    fast.load_state_dict(eager.state_dict())  # the same keys: checkpoints are interchangeable
    images = torch.randn(8, 3, 56, 56)
    labels = torch.arange(4).repeat_interleave(2)
    losses = []
    for model in (eager, fast):
        model.train()
        loss = model.objective(model(images), labels).loss
        loss.backward()
        losses.append(loss.detach())
    torch.testing.assert_close(losses[1], losses[0], atol=1e-5, rtol=1e-4)
    pairs = [(name, p.grad, q.grad) for (name, p), q in zip(eager.named_parameters(), fast.parameters())]
    for name, grad, fast_grad in pairs:
        assert (fast_grad is None) == (grad is None), name
    # Compiled kernels sum in another order, and train-mode BatchNorm's backward amplifies it:
    # measured up to 0.8% of the largest gradient (ResNet-18 conv1, seed 1).
    scale = max(float(grad.abs().max()) for _, grad, _ in pairs if grad is not None)
    for name, grad, fast_grad in pairs:
        if grad is not None:
            torch.testing.assert_close(fast_grad, grad, atol=0.01 * scale, rtol=1e-3, msg=name)
    eager_flat = torch.cat([grad.flatten() for _, grad, _ in pairs if grad is not None])
    fast_flat = torch.cat([fast_grad.flatten() for _, grad, fast_grad in pairs if grad is not None])
    assert torch.nn.functional.cosine_similarity(eager_flat, fast_flat, dim=0) > 0.9999


@pytest.mark.parametrize(
    ("cuda", "bf16", "precision"), [(False, False, "32-true"), (True, True, "bf16-mixed"), (True, False, "16-mixed")]
)
def test_default_precision_is_bf16_mixed_where_the_gpu_has_it(monkeypatch, cuda: bool, bf16: bool, precision: str):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: bf16)
    assert train_cli.default_trainer_settings()["precision"] == precision


def test_warmup_then_step_decay_by_epochs() -> None:
    """``lr_sched: multistep``: a linear warmup over steps, then x gamma at each milestone epoch."""
    from models.vpr_model import WarmupMultiStep

    schedule = WarmupMultiStep(warmup_steps=4, milestone_epochs=[2, 3], gamma=0.1, steps_per_epoch=5)
    factors = [schedule(step) for step in range(17)]
    expected = [0.25, 0.5, 0.75] + [1.0] * 7 + [0.1] * 5 + [0.01] * 2  # epochs 2 and 3 start at steps 10 and 15
    assert factors == pytest.approx(expected)
    assert WarmupMultiStep()(0) == 1.0  # no warmup, no milestone
