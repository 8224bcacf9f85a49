"""main.py given something from elsewhere: a checkpoint URL is fetched and checked like a local file,
a configuration file from another run folder may name only the classes a run of this project holds."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml

import main as train_cli
from tests.planted_pickles import planted_checkpoint
from utils.checkpoint_digest import with_digest
from utils.checkpoint_files import RefusedCheckpointError, local_checkpoint, remove_downloads, shown_checkpoint
from utils.config_classes import allowed
from utils.errors import UserError


@pytest.mark.parametrize("scheme", ["http", "file"])
def test_a_checkpoint_url_is_checked_like_a_local_file_and_runs_nothing(served, download_folder, tmp_path: Path, scheme: str):
    base, folder = served
    marker = tmp_path / "marker"
    planted = planted_checkpoint(folder / "last.ckpt", marker)
    url = f"{base}/last.ckpt" if scheme == "http" else planted.as_uri()
    with pytest.raises(RefusedCheckpointError) as info:
        train_cli.main(["--ckpt_path", url, "--data.data_root", str(tmp_path), "--trainer.default_root_dir", str(tmp_path / "logs")])
    line = train_cli.render(info.value, train_cli.PARAMETER_FLAGS)
    assert line.startswith(f"checkpoint {url} holds a pickled ")  # the URL typed, not a temporary copy
    assert line.endswith("refused, not executed") and "\n" not in line
    assert not marker.exists() and not (tmp_path / "logs").exists()
    assert list(download_folder.iterdir()) == []  # the refused download is gone at once


def test_a_served_checkpoint_is_fetched_whole_once_and_removed_at_the_end(served, download_folder):
    base, folder = served
    (folder / "weights.ckpt").write_bytes(b"PK\x03\x04 some bytes")
    local = local_checkpoint(f"{base}/weights.ckpt")
    assert Path(local).name == "weights.ckpt" and Path(local).read_bytes() == b"PK\x03\x04 some bytes"
    assert Path(local).parent.parent == download_folder and shown_checkpoint(local) == f"{base}/weights.ckpt"
    assert local_checkpoint(f"{base}/weights.ckpt") == local  # read twice in a process (export: size, weights)
    assert Path(local_checkpoint(f"{base}/sub/..")).name == "checkpoint.ckpt"  # never a name leaving its folder
    remove_downloads()  # what the end of the process does
    assert list(download_folder.iterdir()) == []
    with pytest.raises(UserError, match=rf"^checkpoint {base}/missing.ckpt could not be downloaded \(.*404"):
        local_checkpoint(f"{base}/missing.ckpt")
    assert list(download_folder.iterdir()) == []  # no empty folder left by the failed download
    assert local_checkpoint("logs/last.ckpt") == "logs/last.ckpt"


@pytest.mark.parametrize(("url", "spelled"), [
    ("s3://bucket/last.ckpt", "s3://"), ("simplecache::http://host/last.ckpt", "simplecache::"), ("hf://org/last.ckpt", "hf://"),
])
def test_other_url_schemes_are_refused_in_one_line(url: str, spelled: str):
    with pytest.raises(UserError) as info:
        local_checkpoint(url)
    assert str(info.value) == (f"checkpoint {url}: {spelled} paths are not read; copy the file here and pass its "
                               "local path")


def test_a_resume_from_a_url_trains_on_from_the_downloaded_copy_kept_until_the_end(
        short_run, small_toy_world, served, download_folder, tmp_path: Path):
    from tests.toy_training import train_args

    base, folder = served
    (folder / "last.ckpt").write_bytes(short_run[1].read_bytes())
    done = torch.load(short_run[1], map_location="cpu", weights_only=True)["global_step"]
    args = train_args(small_toy_world, tmp_path / "run", "--trainer.max_steps", str(done + 1),
                      "--trainer.limit_val_batches", "0")
    trainer = train_cli.main([*args, "--ckpt_path", f"{base}/last.ckpt"]).trainer
    assert trainer.global_step == done + 1  # Lightning read the checked copy when fit began
    assert [path.name for path in download_folder.glob("ckpt-*/*")] == ["last.ckpt"]  # kept until the process ends
    remove_downloads()
    assert list(download_folder.iterdir()) == []


@pytest.fixture
def planted_module(tmp_path: Path, monkeypatch) -> Iterator[Path]:
    """A module ``plantedmod`` on the path whose import touches ``tmp_path / "imported"``."""
    marker = tmp_path / "imported"
    (tmp_path / "plantedmod.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n"
        "from pytorch_lightning import Callback\nclass Anything(Callback):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "plantedmod", raising=False)
    yield marker
    sys.modules.pop("plantedmod", None)


@pytest.mark.parametrize("entry", ["{class_path: plantedmod.Anything}", "plantedmod.Anything"])
def test_a_config_naming_another_class_is_refused_before_import_unless_trusted(tmp_path, planted_module, capsys, entry):
    config = tmp_path / "config.yaml"
    config.write_text(f"trainer:\n  callbacks:\n  - {entry}\n")
    with pytest.raises(UserError) as info:
        train_cli.main(["--config", str(config), "--print_config"])
    assert str(info.value).startswith(f"config {config}: trainer.callbacks[0] names the class plantedmod.Anything")
    assert "--trust_config" in str(info.value) and not planted_module.exists()
    with pytest.raises(SystemExit):  # the user's own file: parsed (and printed) as before
        train_cli.main(["--config", str(config), "--trust_config", "--print_config"])
    assert planted_module.exists() and "plantedmod.Anything" in capsys.readouterr().out


def test_the_classes_a_run_holds_are_allowed():
    assert allowed("pytorch_lightning.callbacks.LearningRateMonitor") and allowed("lightning.pytorch.loggers.WandbLogger")
    assert allowed("utils.training.resume.RandomStateCheckpoint") and allowed("ModelCheckpoint")
    assert not allowed("pytorch_lightning.callbacks.LambdaCallback") and not allowed("os.system")


@pytest.mark.parametrize("spelling", ["--trainer FILE", "--trainer=FILE", "--config OUTER"])
def test_a_config_file_given_to_another_key_or_named_by_a_config_is_checked_too(tmp_path, planted_module, spelling):
    trainer_file = tmp_path / "trainer.yaml"
    trainer_file.write_text("callbacks:\n- class_path: plantedmod.Anything\n")
    (tmp_path / "outer.yaml").write_text("trainer: trainer.yaml\n")  # read relative to its own folder
    args = spelling.replace("FILE", str(trainer_file)).replace("OUTER", str(tmp_path / "outer.yaml")).split(" ")
    with pytest.raises(UserError, match=rf"^config {trainer_file}: callbacks\[0\] names the class plantedmod.Anything"):
        train_cli.main([*args, "--print_config"])
    assert not planted_module.exists()


def test_a_class_named_by_a_flag_is_refused_in_one_line_unless_trusted(planted_module, capsys):
    with pytest.raises(SystemExit) as info:
        train_cli.cli(["--trainer.callbacks+=plantedmod.Anything", "--print_config"])
    assert info.value.code == 2 and not planted_module.exists()
    line = capsys.readouterr().err.strip()
    assert line == ("main.py: error: --trainer.callbacks: the class plantedmod.Anything is not one a run of this project "
                    "holds; refused, not imported (pass --trust_config if the configuration is yours)")
    with pytest.raises(SystemExit):
        train_cli.main(["--trainer.callbacks+=plantedmod.Anything", "--trust_config", "--print_config"])
    assert planted_module.exists() and "plantedmod.Anything" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # the policy was the run's only: Lightning's own classes still parse
        train_cli.main(["--trainer.callbacks+=LearningRateMonitor", "--print_config"])
    assert "pytorch_lightning.callbacks.LearningRateMonitor" in capsys.readouterr().out


def test_a_missing_checkpoint_a_folder_and_a_data_url_are_one_line(tmp_path: Path):
    missing, folder = tmp_path / "nope.ckpt", tmp_path
    cases = [(str(missing), rf"^ckpt_path={missing} does not exist$"),
             (str(folder), rf"^ckpt_path={folder} is a folder, not a checkpoint file$"),
             ("data:application/octet-stream;base64,gASVAAAAAA==", r"^checkpoint data:application/\S+: data: paths are not read")]
    for ckpt_path, message in cases:
        with pytest.raises(UserError, match=message):
            train_cli.main(["--ckpt_path", ckpt_path, "--data.data_root", str(tmp_path),
                            "--trainer.default_root_dir", str(tmp_path / "logs")])
    assert not (tmp_path / "logs").exists()


POPEN = {"class_path": "subprocess.Popen", "init_args": {"args": "touch MARKER", "shell": True}}
"""A class path and arguments that would run a shell command, hidden in a dict-valued setting."""


@pytest.mark.parametrize("where", ["checkpoint", "config", "config string", "allowed prefix"])
def test_a_class_path_inside_a_dict_setting_runs_nothing(short_run, small_toy_world, tmp_path: Path, where: str):
    """jsonargparse builds a ``{class_path, init_args}`` met in a ``dict[str, Any]`` such as
    ``backbone_config``: from a checkpoint's hyperparameters, a config file (also as a JSON string),
    or a dotted path starting with an allowed package that reaches ``subprocess.Popen``."""
    from tests.toy_training import train_args

    marker = tmp_path / "ran"
    popen = json.loads(json.dumps(POPEN).replace("MARKER", str(marker)))
    if where == "allowed prefix":
        popen["class_path"] = "pytorch_lightning.strategies.launchers.subprocess_script.subprocess.Popen"
    backbone_config = {"layers_to_crop": [3, 4], "layers_to_freeze": -1, "pretrained": False, "x": popen}
    extra: list[str] = []
    if where == "checkpoint":
        payload = torch.load(short_run[1], map_location="cpu", weights_only=True)
        payload["hyper_parameters"]["backbone_config"] = backbone_config
        torch.save(with_digest(payload), tmp_path / "planted.ckpt")  # a planted file carries a digest of its own
        extra = ["--ckpt_path", str(tmp_path / "planted.ckpt")]
    else:
        value = json.dumps(backbone_config) if where == "config string" else backbone_config
        (tmp_path / "config.yaml").write_text(yaml.safe_dump({"model": {"backbone_config": value}}))
        extra = ["--config", str(tmp_path / "config.yaml")]
    args = train_args(small_toy_world, tmp_path / "run", "--trainer.max_steps", "1")
    del args[args.index("--model.backbone_config"):args.index("--model.backbone_config") + 2]
    with pytest.raises(UserError) as info:
        train_cli.main([*args, *extra])
    assert not marker.exists()
    line = train_cli.render(info.value, train_cli.PARAMETER_FLAGS)
    if where == "checkpoint":  # named as the checkpoint's setting, not as a flag the user did not give
        assert line.startswith(f"--ckpt_path {tmp_path / 'planted.ckpt'}: its hyper_parameters.backbone_config="), line
    else:  # refused by the file check, or by the model's own check of its arguments
        assert line.startswith((f"config {tmp_path / 'config.yaml'}: model.backbone_config.x names the class",
                                "--model.backbone_config ")), line
