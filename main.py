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

A configuration (a ``--config`` file, a file given to another key, a flag) naming a class other
than Lightning's callbacks, loggers, ... and this project's is refused before it is imported,
unless ``--trust_config`` says the configuration is yours. Every file a run writes is written
atomically (a full disk or a kill leaves the previous version; the error names the file).
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import re
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional, Union

import torch
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint
from pytorch_lightning.cli import ArgsType, LightningArgumentParser, LightningCLI
from pytorch_lightning.cli import Namespace as ConfigNamespace

from dataloaders.gsv_cities import check_gsv_root
from dataloaders.training_sets import TRAINING_SETS
from dataloaders.vpr_datamodule import VPRDataModule
from models import AGGREGATORS, BACKBONES
from models.vpr_model import VPRModel
from utils.errors import UserError, UserFileError, render
from utils.training.metric_learning import LOSSES, MINERS
from utils.model_flags import MODEL_ARGS_COMMAND
from utils.atomic_write import write_atomically
from utils.checkpoint_files import shown_checkpoint
from utils.config_classes import check_config_classes, config_files, denied_class, import_policy
from utils.training.checkpoint_io import on_local_disk, use_atomic_checkpoints
from utils.training.loggers import run_loggers
from utils.training.resume import (InterruptCheckpoint, RandomStateCheckpoint, RunFolderSnapshot, check_resume_path,
                                   checkpoint_hyperparameters, checkpoint_step, continue_run_folder,
                                   explicit_model_keys, overruled_settings, rewind_notice)

log = logging.getLogger("main")

TRUST_CONFIG_FLAG = "--trust_config"
"""Says the configuration (its files and flags) is the user's own: the classes it names are not
checked (:mod:`utils.config_classes`)."""

SUBCOMMANDS = ("fit", "validate")
"""What main.py offers: training, and validation of a checkpoint (there is no test or predict
step: evaluation is eval.py's)."""
CHECKPOINT_FILENAME = "epoch{epoch:02d}-step{step}-R1={R1:.2f}"
"""Checkpoint names carry the Recall@1 of the first validation set (logged as ``R1``)."""
PARAMETER_FLAGS = {
    **{name: f"--data.{name}" for name in inspect.signature(VPRDataModule).parameters},
    **{name: f"--model.{name}" for name in inspect.signature(VPRModel).parameters},
    "ckpt_path": "--ckpt_path",
}
"""Library parameter name -> main.py flag (``image_size`` is ``--data.image_size``), for
:func:`utils.errors.render`."""
UNRANKED_FILENAME = "epoch{epoch:02d}-step{step}"
"""Checkpoint names when validation gives no recall (``--trainer.limit_val_batches`` below the set)."""
CONFIG_HELP = {
    "model.backbone_config": "the backbone's arguments (null: the paper's for its backbone, else the defaults); "
    "it starts from its pretrained weights unless pretrained: false; another backbone family's arguments are left "
    "out with a notice",
    "model.agg_config": "the aggregator's arguments (null: the paper's for SALAD, else the defaults); in_channels "
    "is the backbone's width",
}
"""``--help`` of the two configuration dicts (Lightning shows only their type)."""
PROJECT_SECTION = re.compile(r"^  --(model|data)\.", flags=re.MULTILINE)
"""A ``--help`` section of this project's own options."""
PROJECT_USAGE = ("usage: python3 main.py [fit | validate] [--config FILE.yaml] [--model.KEY VALUE ...] "
                 "[--data.KEY VALUE ...] [--trainer.KEY VALUE ...] [--ckpt_path FILE]")
DEFAULT_LOG_EVERY_N_STEPS = 50
"""Lightning's ``log_every_n_steps`` when none is given."""
COUNT_OR_FRACTION_FLAGS = ("limit_train_batches", "limit_val_batches", "limit_test_batches", "limit_predict_batches",
                           "overfit_batches", "val_check_interval")
"""Trainer settings where an integer counts batches and a float is a fraction of them."""
RST_MARKUP = ((re.compile(r"``([^`]*)``"), r"\1"), (re.compile(r":[a-z]+:`~?([^`]*)`"), r"\1"),
              (re.compile(r"\.\. (\w+)::"), r"\1:"), (re.compile(r"(\w)::(\s)"), r"\1:\2"))
"""Docstring markup that Lightning's and our docstrings carry into ``--help`` (pattern, replacement)."""


def monitored_metric(val_set_names: Sequence[str]) -> str:
    """Checkpoints are ranked by Recall@1 on the first validation set (pitts30k_val by default)."""
    return f"{val_set_names[0]}/R1" if val_set_names else "loss"


class VPRArgumentParser(LightningArgumentParser):
    """Lightning's parser, saving configurations atomically (``config.yaml`` of a run) and telling
    a class refused by :func:`utils.config_classes.import_policy` in one line."""

    def save(self, namespace: ConfigNamespace, path: str | os.PathLike[str], **kwargs: Any) -> None:
        """A single file on the local disk (what Lightning's ``SaveConfigCallback`` asks for) is
        dumped and written atomically (never overwriting unless ``overwrite``); anything else is the
        parser's own ``save``."""
        options = dict(kwargs)
        overwrite = options.pop("overwrite", False)
        skip_unset = options.pop("skip_unset", options.pop("skip_none", True))
        if options.pop("multifile", True) or options or not on_local_disk(path):
            return super().save(namespace, path, **kwargs)
        text = self.dump(namespace, skip_unset=skip_unset)
        write_atomically(Path(path), lambda stream: stream.write(text.encode()), exclusive=not overwrite)

    def error(self, message: str, ex: Exception | None = None) -> Any:
        line = denied_class(message)
        if line is not None:
            raise UserError(line)
        return super().error(message, ex)


class VPRTrainingCLI(LightningCLI):
    _explicit_model_keys: frozenset[str] = frozenset()
    """The model settings the command line names (flags and configuration files)."""
    _checkpoint_settings: frozenset[str] = frozenset()
    """The model settings the ``--ckpt_path`` checkpoint gives."""

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        """Only ``fit`` and ``validate`` (see :data:`SUBCOMMANDS`)."""
        return {name: members for name, members in LightningCLI.subcommands().items() if name in SUBCOMMANDS}

    def parse_arguments(self, parser: LightningArgumentParser, args: ArgsType) -> None:
        """Parse, then check ``--ckpt_path`` before Lightning opens it (see :mod:`utils.training.resume`)."""
        super().parse_arguments(parser, args)
        given = list(sys.argv[1:] if args is None else args)
        self._explicit_model_keys = frozenset(explicit_model_keys(given, config_files(given)))
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
        self._checkpoint_settings = frozenset(checkpoint_hyperparameters(self.config[subcommand]["ckpt_path"]))
        defaults = self._subcommand_parsers[subcommand].get_defaults()["model"].as_dict()
        overruled = overruled_settings(given, self.config[subcommand]["model"].as_dict(), defaults,
                                       self._explicit_model_keys)
        if overruled:
            warnings.warn(f"--ckpt_path {shown_checkpoint(self.config[subcommand]['ckpt_path'])} resumes the checkpoint's model: "
                          f"{'; '.join(overruled)} ignored", stacklevel=1)

    def instantiate_classes(self) -> None:
        """A model setting the checkpoint gave that cannot be built is named as the checkpoint's
        (not as a ``--model.*`` flag the user did not give)."""
        try:
            super().instantiate_classes()
        except UserError as error:
            line = str(error)
            setting = next((key for key in self._checkpoint_settings if line.startswith(f"{key}=")), None)
            if setting is None:
                raise
            ckpt_path = self.config[self.config["subcommand"]]["ckpt_path"]
            raise UserError(f"--ckpt_path {ckpt_path}: its hyper_parameters.{line}") from None

    def before_fit(self) -> None:
        """A resumed run goes on in its checkpoint's version folder (see :mod:`utils.training.resume`)."""
        config = self.config["fit"]
        folder = continue_run_folder(self.trainer, config.get("ckpt_path"), config["trainer"].get("logger"))
        ckpt_path = config.get("ckpt_path")
        resumable = folder is not None and Path(ckpt_path).is_file()
        self._resumed_folder = RunFolderSnapshot.take(folder) if resumable else None
        self._resumed_step = checkpoint_step(ckpt_path) if resumable else 0
        if resumable:  # its checkpoints are what the resume continues: Lightning's notice says nothing to act on
            warnings.filterwarnings("ignore", message=f"Checkpoint directory {re.escape(str(folder))}.* exists and is not empty")
            notice = rewind_notice(folder, ckpt_path, self._resumed_step)
            if notice:
                log.warning(notice)

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
        self._counts_stay_counts(parser)
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
        if self.subcommand in (None, "fit") and "gsv_cities" in (config.data.get("train_sets") or {"gsv_cities": {}}):
            try:
                check_gsv_root(Path(config.data.data_root))
            except UserFileError as error:
                raise UserFileError(f"data_root={config.data.data_root}: {error}") from None
        unrank_partial_validation(config)

    def instantiate_trainer(self, **kwargs: Any) -> Any:
        """The trainer; unless ``--trainer.logger`` says otherwise, it logs to TensorBoard and to
        metrics.csv in one run folder (``utils.training.loggers``); its checkpoints are written
        atomically with a digest of their tensors (``utils.training.checkpoint_io``). A run shorter
        than ``--trainer.log_every_n_steps`` logs at its last step, so its metrics.csv is written."""
        config = self._get(self.config_init, "trainer", default={})
        if config.get("logger") in (None, True):
            kwargs["logger"] = run_loggers(config.get("default_root_dir") or ".")
        steps = [value for value in (config.get("max_steps"), config.get("limit_train_batches"))
                 if type(value) is int and value > 0]
        if steps and min(steps) < (config.get("log_every_n_steps") or DEFAULT_LOG_EVERY_N_STEPS):
            kwargs["log_every_n_steps"] = min(steps)
        trainer = super().instantiate_trainer(**kwargs)
        use_atomic_checkpoints(trainer)
        return trainer

    def _prepare_subcommand_parser(self, klass: type, subcommand: str, **kwargs: Any) -> LightningArgumentParser:
        """Each subcommand's parser, its help in plain text (every argument is added by now)."""
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        self._plain_help(parser)
        parser.epilog = (f"{TRUST_CONFIG_FLAG}: the configuration (files and flags) is your own; the classes it names "
                         "are imported unchecked (by default only Lightning's callbacks, loggers, ... and this project's "
                         "classes are)")
        return parser

    @staticmethod
    def _plain_help(parser: LightningArgumentParser) -> None:
        """``--help`` in plain text: the docstrings' reStructuredText markup taken out."""
        for action in parser._actions:
            if action.help:
                for pattern, replacement in RST_MARKUP:
                    action.help = pattern.sub(replacement, action.help)

    @staticmethod
    def _counts_stay_counts(parser: LightningArgumentParser) -> None:
        """``--trainer.limit_val_batches 1`` is one batch, ``1.0`` all of them: Lightning's hint
        ``Union[float, int]`` would read ``1`` as the fraction 1.0, so the integer is tried first."""
        for action in parser._actions:
            if action.dest.removeprefix("trainer.") in COUNT_OR_FRACTION_FLAGS and hasattr(action, "_typehint"):
                action._typehint = Optional[Union[int, float]]

    @staticmethod
    def _list_registered_names(parser: LightningArgumentParser) -> None:
        """``--help`` names every registered backbone, aggregator, loss and miner."""
        registries = {"model.backbone_arch": BACKBONES, "model.agg_arch": AGGREGATORS, "model.loss_name": LOSSES}
        for action in parser._actions:
            if action.dest in registries:
                action.help = f"one of: {', '.join(registries[action.dest].names())}"
            elif action.dest == "model.miner_name":
                action.help = f"one of: {', '.join(MINERS.names())}; null: no mining"
            elif action.dest == "data.train_sets":
                action.help = (f"{action.help or ''} Registered: {', '.join(TRAINING_SETS.names())}.").strip()
            elif action.dest in CONFIG_HELP:
                action.help = f"{CONFIG_HELP[action.dest]}; each builder's keys and defaults: {MODEL_ARGS_COMMAND}"


def unrank_partial_validation(config: Any) -> None:
    """With ``--trainer.limit_val_batches`` below the whole set (``1``: one batch, ``0.5``: half),
    validation gives no recall to rank checkpoints by: keep ``last.ckpt`` and the latest, unranked,
    and say so in one line."""
    limit = config.trainer.get("limit_val_batches")
    if limit is None or (isinstance(limit, float) and limit >= 1.0) or not config.get("checkpoint"):
        return
    if config.checkpoint.get("monitor") is None:
        return
    log.warning("--trainer.limit_val_batches %s: validation sees part of each set, so no recall ranks the checkpoints "
             "(last.ckpt and the latest are kept)", limit)
    config.checkpoint.monitor = None
    config.checkpoint.save_top_k = min(config.checkpoint.save_top_k, 1)
    config.checkpoint.filename = UNRANKED_FILENAME


class VPRProjectHelpCLI(VPRTrainingCLI):
    """``python3 main.py --help``: this project's options first, Lightning's behind a pointer
    (``python3 main.py fit --help`` shows every option)."""

    def _prepare_subcommand_parser(self, klass: type, subcommand: str, **kwargs: Any) -> LightningArgumentParser:
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        full_help = parser.format_help
        parser.format_help = lambda: project_help(full_help())  # type: ignore[method-assign]
        return parser


def project_help(full: str) -> str:
    """The sections of ``full`` (Lightning's ``--help``) holding this project's own options (the
    general options, ``--model.*``, ``--data.*``), each builder's arguments, and one line pointing to
    the rest."""
    from models import AGGREGATORS, BACKBONES
    from tools.model_args import NOTE, describe

    sections = full.split("\n\n")
    kept = [section for section in sections[1:] if section.startswith("options:") or PROJECT_SECTION.search(section)]
    hidden = sum(len(section.splitlines()) for section in sections if section not in kept)
    summary = (__doc__ or "").split("\n\n")[0]
    for pattern, replacement in RST_MARKUP:
        summary = pattern.sub(replacement, summary)
    return "\n\n".join([
        PROJECT_USAGE,
        summary,
        *kept,
        "\n".join([*describe((BACKBONES, AGGREGATORS)), f"({NOTE})"]),
        f"Lightning's own options (--trainer.*, --checkpoint.*, --resume_checkpoint.*, --ckpt_path, ...; {hidden} "
        f"more lines): python3 main.py fit --help\n",
    ])


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
    cli_class = VPRTrainingCLI
    if not args or args[0] not in SUBCOMMANDS:
        args.insert(0, "fit")  # `python3 main.py [flags]` trains, as the published script does; --help is fit's
        if "-h" in args or "--help" in args:
            cli_class = VPRProjectHelpCLI  # the project's options; `fit --help`: all of them
    if argv is None:  # from the command line: DDP's launcher re-runs sys.argv on the other ranks
        sys.argv[1:] = args
    trusted = TRUST_CONFIG_FLAG in args  # a configuration file of the user's own: any class it names is imported
    if trusted:  # sys.argv keeps the flag for DDP's other ranks; Lightning is given the rest
        args = [arg for arg in args if arg != TRUST_CONFIG_FLAG]
        warnings.filterwarnings("ignore", message=r"LightningCLI's args parameter")
    else:
        for config_file in config_files(args):
            check_config_classes(config_file)
    with contextlib.nullcontext() if trusted else import_policy():
        return cli_class(
            VPRModel,
            VPRDataModule,
            args=None if argv is None and not trusted else args,
            seed_everything_default=1,
            trainer_defaults=default_trainer_settings(),
            save_config_kwargs={"overwrite": False},
            parser_kwargs={"default_env": False},
            parser_class=VPRArgumentParser,
            auto_configure_optimizers=False,  # the optimizer and schedule are the model's (--model.optimizer, ...)
        )


def cli(argv: Sequence[str] | None = None) -> None:
    """Command-line entry: :func:`main`, a user error (:class:`utils.errors.UserError`) shown as one
    line ``main.py: error: ...`` with exit status 2; any other exception is a bug and keeps its traceback."""
    try:
        main(argv)
    except UserError as error:
        print(f"main.py: error: {render(error, PARAMETER_FLAGS)}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    cli()
