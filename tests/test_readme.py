"""The README's commands, run as a user runs them (offline: on the toy world and on files made
from seeds), so the README cannot drift from the code.

Every shell command of the README's ``bash`` blocks must be one this file knows how to check, and
every ``--flag`` the README names must be a flag of the program it belongs to. Commands that need
the real datasets or the released files are checked as far as offline allows: parsed and
validated by the program itself (``main.py --print_config``, eval.py's own argument checks);
the others run.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
CHECKOUT = "path/to/this/checkout"


def blocks(language: str) -> list[str]:
    return re.findall(rf"^ *```{language}\n(.*?)^ *```", README, flags=re.MULTILINE | re.DOTALL)


def shell_commands() -> list[str]:
    lines = [line.strip() for block in blocks("bash") for line in block.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def run(command: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    """``command`` in ``cwd`` as if from the checkout (its modules importable), with ``cwd``'s paths."""
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def user_folder(small_toy_world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user's working folder: ``../data`` is the toy world (GSV-Cities under ``gsv-cities``),
    ``data/toy`` is free, and ``logs/lightning_logs/version_0`` holds a finished tiny run."""
    parent = tmp_path_factory.mktemp("user")
    (parent / "data").symlink_to(small_toy_world)
    work = parent / "work"
    work.mkdir()
    train = run([
        sys.executable, str(REPO / "main.py"), "--config", str(REPO / "configs/toy.yaml"),
        "--data.data_root", "../data/gsv-cities", "--data.data_dir", "../data", "--data.cities", "[Bangkok]",
        "--data.image_size", "[56, 56]", "--data.num_workers", "0", "--data.persistent_workers", "false",
        "--data.val_set_names", "[sped]", "--trainer.max_epochs", "1", "--trainer.check_val_every_n_epoch", "1",
        "--trainer.default_root_dir", "logs",
    ], work)
    assert train.returncode == 0, train.stderr[-3000:]
    return work


def program_of(command: str) -> str:
    words = shlex.split(command)
    if words[:2] == ["python3", "-m"]:
        return words[2]
    return " ".join(words[:2]) if words[0] == "python3" else words[0]


def test_every_command_is_one_this_test_checks() -> None:
    known = {"make", "python3 main.py", "python3 eval.py", "tools.build_index", "tools.make_toy_world",
             "tools.plot_recalls", "tools.export_onnx", "tools.models", "torchrun", "srun"}
    commands = shell_commands()
    assert len(commands) >= 15
    assert {program_of(command) for command in commands} <= known
    assert shell_commands()[:2] == ["make demo", "make test"]  # the quick start is exactly these two


def test_make_targets_exist() -> None:
    for target in ("demo", "test"):
        assert run(["make", "-n", target], REPO).returncode == 0


def main_output(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """What ``python3 main.py ARGV`` prints when it exits by itself (``--help``, ``--print_config``)."""
    import main as train_cli

    with pytest.raises(SystemExit) as exit_info:
        train_cli.main(argv)
    assert exit_info.value.code in (0, None), capsys.readouterr().err[-3000:]
    return capsys.readouterr().out


@pytest.fixture(scope="module")
def main_help(user_folder: Path) -> str:
    completed = run([sys.executable, str(REPO / "main.py"), "fit", "--help"], user_folder, 120)  # every option
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout


@pytest.mark.parametrize("command", [c for c in shell_commands() if program_of(c) == "python3 main.py"])
def test_main_commands(command: str, user_folder: Path, main_help: str, monkeypatch, capsys) -> None:
    import main as train_cli

    words = shlex.split(command)[2:]
    if words == ["--help"]:
        assert "--data.data_root" in main_help  # the module fixture ran it as written
        return
    monkeypatch.chdir(user_folder)
    words = [str(REPO / word) if word.startswith("configs/") else word for word in words]
    if "--ckpt_path" in words:  # resume the finished tiny run with its own configuration: it is complete
        trainer = train_cli.main(words).trainer
        assert trainer.current_epoch == 1 and trainer.global_step > 0
        assert sorted(path.name for path in (user_folder / "logs" / "lightning_logs").iterdir()) == ["version_0"]
        return
    assert "data_root: ../data/gsv-cities" in main_output([*words, "--print_config"], capsys)


EVAL_LAUNCHERS = ("python3 eval.py", "torchrun", "srun")


@pytest.mark.parametrize("command", [c for c in shell_commands() if program_of(c) in EVAL_LAUNCHERS])
def test_eval_commands(command: str, user_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import eval as eval_cli
    from dataloaders.eval_sets import published_registry

    launcher = shlex.split(command)
    words = launcher[launcher.index("eval.py") + 1 :]
    if launcher[0] == "torchrun":  # its own flags, as torchrun parses them
        from torch.distributed.run import get_args_parser

        get_args_parser().parse_args(launcher[1:])
    elif launcher[0] == "srun":
        assert launcher[1:3] == ["python3", "eval.py"]
    if words == ["--help"]:
        with pytest.raises(SystemExit) as exit_info:
            eval_cli.build_parser().parse_args(words)
        assert exit_info.value.code == 0
        return
    monkeypatch.chdir(user_folder)
    for index, word in enumerate(words[:-1]):
        if word == "--ckpt_path" and not Path(words[index + 1]).exists():
            Path(words[index + 1]).parent.mkdir(parents=True, exist_ok=True)
            Path(words[index + 1]).write_bytes(b"")  # a stand-in for the released file
        if word in ("--database_folder", "--queries_folder"):
            Path(words[index + 1]).mkdir(parents=True, exist_ok=True)
    args = eval_cli.build_parser().parse_args(words)  # an unknown flag or value exits here
    eval_cli.check_arguments(args)
    eval_cli.eval_options(args)
    eval_cli.architecture_from_args(args)
    assert eval_cli.select_sets(args, published_registry())


def test_tool_commands(user_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tools import export_onnx, plot_recalls
    from utils.evaluation.results import make_set_result, write_results_json

    commands = {program_of(command): shlex.split(command) for command in shell_commands()}
    assert run([sys.executable, *commands["tools.build_index"][1:]], REPO, 120).returncode == 0
    toy = run([sys.executable, *commands["tools.make_toy_world"][1:], "--size", "small", "--image-size", "16"], user_folder)
    assert toy.returncode == 0, toy.stderr[-2000:]
    assert (user_folder / "data/toy/toy_world.json").is_file()

    monkeypatch.chdir(user_folder)
    plot = commands["tools.plot_recalls"][3:]
    for path in plot[plot.index("--runs") + 1 : plot.index("--out")]:
        Path(path).parent.mkdir(parents=True)
        write_results_json(path, {"sped": make_set_result({1: 50.0}, [50.0, 75.0], num_queries=4, num_db=4)})
    assert plot_recalls.main(plot) == 0 and Path(plot[plot.index("--out") + 1]).is_file()

    export = export_onnx.build_parser().parse_args(commands["tools.export_onnx"][3:])
    assert export_onnx.resolve_architecture(export).agg_arch == "SALAD"
    assert export_onnx.resolve_image_size(export) == (322, 322)

    listing = run([sys.executable, *commands["tools.models"][1:]], REPO, 120)
    assert listing.returncode == 0 and "dinov2_salad" in listing.stdout, listing.stderr[-2000:]


MAIN_FLAGS = ("--config", "--ckpt_path", "--trust_config", "--trainer")
"""main.py's flags outside its sections (``--trainer FILE``: the trainer's section from a file)."""


def test_every_flag_the_readme_names_exists(main_help: str) -> None:
    from torch.distributed.run import get_args_parser as torchrun_parser

    import eval as eval_cli
    from tools import export_onnx, models, plot_recalls

    parsers = (eval_cli.build_parser(), export_onnx.build_parser(), plot_recalls.build_parser(), models.build_parser(),
               torchrun_parser())
    tool_flags = {option for parser in parsers for action in parser._actions for option in action.option_strings}
    mentioned = {flag.rstrip(".") for flag in re.findall(r"(?<![\w-])(--[a-z][a-z0-9_.-]*)", README)}
    for flag in sorted(mentioned):
        if flag.startswith(("--model.", "--data.", "--trainer.", "--checkpoint.")) or flag in MAIN_FLAGS:
            assert re.search(rf"(?<![\w.-]){re.escape(flag)}(?![\w.-])", main_help), f"main.py has no {flag}"
        elif flag not in ("--ntasks-per-node", "--logdir"):  # SLURM's and TensorBoard's own
            assert flag in tool_flags, f"no program of this project has {flag}"


def test_python_snippets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The torch.hub and ONNX snippets, on files made from seeds under the names they use."""
    from PIL import Image

    from models.loading import load_network
    from tools import export_onnx

    monkeypatch.chdir(tmp_path)
    (tmp_path / "weights").mkdir()
    for name, file_name in (("dinov2_salad", "dino_salad.ckpt"), ("dinov2_boq", "dinov2_12288.pth")):
        torch.save(load_network(release=name, pretrained=False).network.state_dict(), tmp_path / "weights" / file_name)
    assert export_onnx.main(["--backbone", "resnet18", "--aggregator", "GeM", "--image_size", "32",
                             "--output", "weights/dino_salad.onnx"]) == 0
    Image.new("RGB", (64, 48), (120, 90, 60)).save(tmp_path / "query.jpg")
    hub, onnx = blocks("python")
    scope: dict = {}
    exec(compile(hub.replace(CHECKOUT, str(REPO)), "README torch.hub", "exec"), scope)
    assert scope["descriptors"].shape == (2, 8448) and scope["boq"].descriptor_dim == 12288
    exec(compile(onnx, "README ONNX", "exec"), scope)
    assert scope["descriptors"].shape == (1, 256)  # ResNet-18 cropped at layer4: 256 channels
