"""What a user of main.py sees: run folders with TensorBoard events and metrics.csv in K order, a
recall table at each validation, plain help, the offered subcommands, and one-line errors that
name main.py's own flags."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path

import pytest

import main as train_cli
from utils.errors import UserError, render

REPO = Path(__file__).resolve().parents[1]


def run_main(*args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "main.py", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)


def toy_flags(world: Path, out: Path) -> list[str]:
    return [
        "--config", "configs/toy.yaml", "--data.data_root", str(world / "gsv-cities"), "--data.data_dir", str(world),
        "--data.cities", "[Bangkok, Boston, PRS]", "--data.image_size", "[56, 56]", "--data.num_workers", "0",
        "--data.persistent_workers", "false", "--data.val_set_names", "[sped, pitts30k_val]",
        "--trainer.max_epochs", "1", "--trainer.check_val_every_n_epoch", "1", "--trainer.default_root_dir", str(out),
    ]


def test_a_run_folder_holds_events_metrics_in_k_order_and_named_checkpoints(small_toy_world: Path, tmp_path: Path) -> None:
    completed = run_main(*toy_flags(small_toy_world, tmp_path / "logs"))
    assert completed.returncode == 0, completed.stderr[-3000:]
    folder = tmp_path / "logs" / "lightning_logs" / "version_0"
    assert list(folder.glob("events.out.tfevents.*")), "no TensorBoard event file"
    with (folder / "metrics.csv").open() as stream:
        header = next(csv.reader(stream))
    for set_name in ("sped", "pitts30k_val"):
        columns = [column for column in header if column.startswith(f"{set_name}/R")]
        assert columns == [f"{set_name}/R{k}" for k in (1, 5, 10, 15, 20, 25)]
    (checkpoint,) = (folder / "checkpoints").glob("epoch*.ckpt")
    assert re.fullmatch(r"epoch00-step\d+-R1=\d+\.\d\d\.ckpt", checkpoint.name)  # the first set's (sped) R@1
    # one table per set at validation, K in order; nothing a user cannot act on
    assert re.search(r"sped, epoch 0, step \d+.*\n.*\n\|\s+R@1\s+\|\s+R@5\s+\|\s+R@10 ", completed.stdout)
    assert "pitts30k_val, epoch 0" in completed.stdout
    for notice in ("litlogger", "tensorboardX", "LeafSpec", "index (faiss)", "search (faiss)", "checking sped files"):
        assert notice not in completed.stderr + completed.stdout, notice


def test_help_is_plain_text_and_documents_every_data_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        train_cli.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "``" not in text and ":class:" not in text and ".. warning::" not in text
    data_flags = re.findall(r"^  (--data\.\w+) .*\n((?:^ {20,}.*\n)*)", text, flags=re.MULTILINE)
    assert len(data_flags) >= 20
    for flag, help_text in data_flags:
        assert not help_text.strip().startswith("(type:"), f"{flag} has no help"
    assert "--data.train_transform" not in text  # an object, not a flag
    assert not re.search(r"^  --(optimizer|lr_scheduler)\b", text, flags=re.MULTILINE)  # the model's own options


@pytest.mark.parametrize("subcommand", ["test", "predict"])
def test_only_fit_and_validate_are_offered(subcommand: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert set(train_cli.VPRTrainingCLI.subcommands()) == {"fit", "validate"}
    with pytest.raises(SystemExit) as exit_info:
        train_cli.main([subcommand, "--data.data_root", str(tmp_path)])
    assert exit_info.value.code != 0 and subcommand in capsys.readouterr().err


def test_an_offline_pretrained_backbone_names_main_pys_flag(small_toy_world: Path, tmp_path: Path) -> None:
    completed = run_main(
        "--data.data_root", str(small_toy_world / "gsv-cities"), "--data.data_dir", str(small_toy_world),
        "--model.backbone_arch", "dinov2_vits14", "--trainer.accelerator", "cpu",
        "--trainer.default_root_dir", str(tmp_path),
    )
    assert completed.returncode != 0 and "Traceback" not in completed.stderr
    last = completed.stderr.strip().splitlines()[-1]
    assert last.startswith("main.py: error: could not download dinov2_vits14 weights")
    assert last.endswith("""(in --model.backbone_config '{"pretrained_path": "dinov2_vits14_pretrain.pth"}')""")


def main_error_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run main.py's command-line entry in-process expecting a user error: exit status 2 and, last
    on stderr, one line ``main.py: error: ...``, no traceback."""
    with pytest.raises(SystemExit) as exit_info:
        train_cli.cli(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


def test_user_errors_name_main_pys_flags(small_toy_world: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The library names its parameters (``data_dir=``, ``image_size=``); main.py shows its own flags."""
    line = main_error_line([*toy_flags(small_toy_world, tmp_path / "logs"), "--data.data_dir", str(tmp_path)], capsys)
    assert line.startswith("main.py: error: sped: index file") and f"set by --data.data_dir {tmp_path};" in line
    vit = ["--model.backbone_arch", "dinov2_vits14", "--model.backbone_config", '{"num_trainable_blocks": 1, "pretrained": false}',
           "--model.agg_arch", "GeM", "--model.agg_config", "{}"]
    line = main_error_line([*toy_flags(small_toy_world, tmp_path / "logs"), *vit, "--data.image_size", "[100, 100]"], capsys)
    assert line.startswith("main.py: error: --data.image_size [100, 100]: image size 100x100 is not a multiple of the patch size 14")
    assert render(UserError("set index_dir=FOLDER or sped_root=FOLDER"), train_cli.PARAMETER_FLAGS) == (
        "set --data.index_dir FOLDER or --data.sped_root FOLDER"
    )
