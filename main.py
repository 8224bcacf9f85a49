"""Train a VPR model on GSV-Cities: ``python3 main.py`` reproduces the DINOv2 SALAD recipe.

Every option is a flag and a YAML key (Lightning's CLI): ``python3 main.py --help`` lists them,
``--config file.yaml`` loads a file, and the resolved configuration is saved with each run
under ``logs/``. ``--ckpt_path last.ckpt`` resumes an interrupted run: the file is checked
first (a torn or code-running checkpoint is refused in one line), and the run goes on in the
checkpoint's version folder, from the same place in the data order with the same random state,
so a run killed mid-epoch ends with the weights of an uninterrupted one (see ``utils/training/resume.py``).

    python3 main.py --data.data_root ../data/gsv-cities --data.data_dir ../data
    python3 main.py --config configs/toy.yaml
    python3 main.py --ckpt_path logs/<run>/checkpoints/last.ckpt   # resume
    python3 main.py validate --ckpt_path ...                        # validation only

A ``--config`` file naming a class other than Lightning's callbacks, loggers, ... and this
project's is refused before it is imported, unless ``--trust_config`` says the file is yours.
"""

from __future__ import annotations

import logging
import re
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint
from pytorch_lightning.cli import ArgsType, LightningArgumentParser, LightningCLI

from dataloaders.gsv_cities import check_gsv_root
from dataloaders.vpr_datamodule import VPRDataModule
from models import AGGREGATORS, BACKBONES
from models.pretrained import DownloadError
from models.vpr_model import NonFiniteError, VPRModel
from utils.cli import first_line
from utils.config_classes import check_config_classes, config_files
from utils.training.checkpoint_io import use_atomic_checkpoints
from utils.training.loggers import run_loggers
from utils.training.resume import (InterruptCheckpoint, RandomStateCheckpoint, RunFolderSnapshot, check_resume_path,
                                   checkpoint_step, continue_run_folder, overruled_settings)

TRUST_CONFIG_FLAG = "--trust_config"
"""Says a ``--config`` file is the user's own: the classes it names are not checked
(:mod:`utils.config_classes`)."""
SUBCOMMANDS = ("fit", "validate")
"""What main.py offers: training, and validation of a checkpoint (there is no test or predict
step: evaluation is eval.py's)."""
CHECKPOINT_FILENAME = "epoch{epoch:02d}-step{step}-R1={R1:.2f}"
"""Checkpoint names carry the Recall@1 of the first validation set (logged as ``R1``)."""
EVAL_FLAGS_IN_MESSAGES = re.compile(r"(?<![\w.-])--(data_dir|index_dir|msls_root|pitts_root|nordland_root|sped_root)\b")
"""The evaluation sets' messages name eval.py's flags; main.py's are ``--data.<name>``."""
RST_MARKUP = ((re.compile(r"``([^`]*)``"), r"\1"), (re.compile(r":[a-z]+:`~?([^`]*)`"), r"\1"),
              (re.compile(r"\.\. (\w+)::"), r"\1:"), (re.compile(r"(\w)::(\s)"), r"\1:\2"))
"""Docstring markup that Lightning's and our docstrings carry into ``--help`` (pattern, replacement)."""


def monitored_metric(val_set_names: Sequence[str]) -> str:
    """Checkpoints are ranked by Recall@1 on the first validation set (pitts30k_val by default)."""
    return f"{val_set_names[0]}/R1" if val_set_names else "loss"


class VPRTrainingCLI(LightningCLI):
    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        """Only ``fit`` and ``validate`` (see :data:`SUBCOMMANDS`)."""
        return {name: members for name, members in LightningCLI.subcommands().items() if name in SUBCOMMANDS}

    def parse_arguments(self, parser: LightningArgumentParser, args: ArgsType) -> None:
        """Parse, then check ``--ckpt_path`` before Lightning opens it (see :mod:`utils.training.resume`)."""
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        if subcommand and self.config[subcommand].get("ckpt_path") is not None:
            self.config[subcommand]["ckpt_path"] = check_resume_path(self.config[subcommand]["ckpt_path"])

    def _parse_ckpt_path(self) -> None:
        """Lightning replaces the model's settings with the checkpoint's; a flag the user gave
        (differing from its default) that the checkpoint overrules is named in one warning."""
        subcommand = self.config.get("subcommand")
        if not subcommand or not self.config[subcommand].get("ckpt_path"):
            return super()._parse_ckpt_path()
        given = self.config[subcommand]["model"].as_dict()
        super()._parse_ckpt_path()
        defaults = self._subcommand_parsers[subcommand].get_defaults()["model"].as_dict()
        overruled = overruled_settings(given, self.config[subcommand]["model"].as_dict(), defaults)
        if overruled:
            warnings.warn(f"--ckpt_path {self.config[subcommand]['ckpt_path']} resumes the checkpoint's model: "
                          f"{'; '.join(overruled)} ignored", stacklevel=1)

    def before_fit(self) -> None:
        """A resumed run goes on in its checkpoint's version folder (see :mod:`utils.training.resume`)."""
        config = self.config["fit"]
        folder = continue_run_folder(self.trainer, config.get("ckpt_path"), config["trainer"].get("logger"))
        ckpt_path = config.get("ckpt_path")
        resumable = folder is not None and Path(ckpt_path).is_file()
        self._resumed_folder = RunFolderSnapshot.take(folder) if resumable else None
        self._resumed_step = checkpoint_step(ckpt_path) if resumable else 0

    def _run_subcommand(self, subcommand: str) -> None:
        """A resume that fails before training a step (data changed, ...) leaves its run folder as it was."""
        try:
            super()._run_subcommand(subcommand)
        except BaseException:
            snapshot = getattr(self, "_resumed_folder", None)
            if snapshot is not None and self.trainer.global_step in (0, self._resumed_step):
                snapshot.restore()
            raise

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.mode": "max",
                "checkpoint.save_top_k": 3,
                "checkpoint.save_last": True,
                "checkpoint.auto_insert_metric_name": False,
                "checkpoint.filename": CHECKPOINT_FILENAME,
            }
        )
        parser.link_arguments("data.val_set_names", "checkpoint.monitor", compute_fn=monitored_metric)
        self._list_registered_names(parser)
        # A second, periodic checkpoint so that a run killed mid-epoch resumes where it stopped.
        parser.add_lightning_class_args(ModelCheckpoint, "resume_checkpoint")
        parser.set_defaults(
            {
                "resume_checkpoint.every_n_train_steps": 250,
                "resume_checkpoint.save_top_k": 1,
                "resume_checkpoint.filename": "resume-latest",
                "resume_checkpoint.enable_version_counter": False,
            }
        )


    def before_instantiate_classes(self) -> None:
        """Check the training data before the model is built (building may download weights)."""
        config = self.config[self.subcommand] if self.subcommand else self.config
        if self.subcommand in (None, "fit"):
            try:
                check_gsv_root(Path(config.data.data_root))
            except FileNotFoundError as error:
                raise FileNotFoundError(f"--data.data_root {config.data.data_root}: {error}") from None

    def instantiate_trainer(self, **kwargs: Any) -> Any:
        """The trainer; unless ``--trainer.logger`` says otherwise, it logs to TensorBoard and to
        metrics.csv in one run folder (``utils.training.loggers``); its checkpoints are written
        atomically with a digest of their tensors (``utils.training.checkpoint_io``)."""
        config = self._get(self.config_init, "trainer", default={})
        if config.get("logger") in (None, True):
            kwargs["logger"] = run_loggers(config.get("default_root_dir") or ".")
        trainer = super().instantiate_trainer(**kwargs)
        use_atomic_checkpoints(trainer)
        return trainer

    def _prepare_subcommand_parser(self, klass: type, subcommand: str, **kwargs: Any) -> LightningArgumentParser:
        """Each subcommand's parser, its help in plain text (every argument is added by now)."""
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        self._plain_help(parser)
        parser.epilog = (f"{TRUST_CONFIG_FLAG}: the --config files are your own; the classes they name are imported "
                         "unchecked (by default only Lightning's callbacks, loggers, ... and this project's classes are)")
        return parser

    @staticmethod
    def _plain_help(parser: LightningArgumentParser) -> None:
        """``--help`` in plain text: the docstrings' reStructuredText markup taken out."""
        for action in parser._actions:
            if action.help:
                for pattern, replacement in RST_MARKUP:
                    action.help = pattern.sub(replacement, action.help)

    @staticmethod
    def _list_registered_names(parser: LightningArgumentParser) -> None:
        """``--help`` names every registered backbone and aggregator."""
        registries = {"model.backbone_arch": BACKBONES, "model.agg_arch": AGGREGATORS}
        for action in parser._actions:
            if action.dest in registries:
                action.help = f"one of: {', '.join(registries[action.dest].names())}"


def default_precision() -> str:
    """bfloat16 mixed precision on GPUs that have it (no loss scaling; what ``bench/train_throughput``
    measures as ours), float16 mixed precision as published on older GPUs, float32 on the CPU."""
    if not torch.cuda.is_available():
        return "32-true"
    return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"


def default_trainer_settings() -> dict:
    """The paper's trainer: 4 epochs, validation every epoch, mixed precision on GPU."""
    return {
        "max_epochs": 4,
        "default_root_dir": "logs",
        "precision": default_precision(),
        "check_val_every_n_epoch": 1,
        "num_sanity_val_steps": 0,
        "reload_dataloaders_every_n_epochs": 1,
        "callbacks": [LearningRateMonitor(logging_interval="step"), RandomStateCheckpoint(), InterruptCheckpoint()],
    }


def quiet_notices() -> None:
    """Silence what a user cannot act on: Lightning's logging-platform tip and a deprecation inside
    Lightning's own code."""
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    for name in ("lightning_fabric.utilities.rank_zero", "pytorch_lightning.utilities.rank_zero"):
        logging.getLogger(name).addFilter(lambda record: "litlogger" not in record.getMessage())


def main(argv: Sequence[str] | None = None) -> VPRTrainingCLI:
    quiet_notices()
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in SUBCOMMANDS:
        args.insert(0, "fit")  # `python3 main.py [flags]` trains, as the published script does; --help is fit's
    if argv is None:  # from the command line: DDP's launcher re-runs sys.argv on the other ranks
        sys.argv[1:] = args
    trusted = TRUST_CONFIG_FLAG in args  # a configuration file of the user's own: any class it names is imported
    if trusted:  # sys.argv keeps the flag for DDP's other ranks; Lightning is given the rest
        args = [arg for arg in args if arg != TRUST_CONFIG_FLAG]
        warnings.filterwarnings("ignore", message=r"LightningCLI's args parameter")
    else:
        for config_file in config_files(args):
            check_config_classes(config_file)
    return VPRTrainingCLI(
        VPRModel,
        VPRDataModule,
        args=None if argv is None and not trusted else args,
        seed_everything_default=1,
        trainer_defaults=default_trainer_settings(),
        save_config_kwargs={"overwrite": False},
        parser_kwargs={"default_env": False},
        auto_configure_optimizers=False,  # the optimizer and schedule are the model's (--model.optimizer, ...)
    )


def error_line(error: BaseException) -> str:
    """The one line main.py prints for a user error, naming main.py's flags."""
    if isinstance(error, DownloadError):
        return (
            f"could not download {error.what} ({error.reason}); fetch {error.file_name} by hand and pass "
            f"""--model.backbone_config '{{"pretrained_path": "{error.file_name}"}}'"""
        )
    return EVAL_FLAGS_IN_MESSAGES.sub(r"--data.\1", first_line(error))


if __name__ == "__main__":
    try:
        main()
    except (OSError, ValueError, NonFiniteError, DownloadError) as error:
        sys.exit(f"main.py: error: {error_line(error)}")
