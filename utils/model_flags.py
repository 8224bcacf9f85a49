"""The model-selection flags every tool shares (``eval.py``, ``tools.export_onnx``): one name per
concept, the names of ``main.py``'s keys, the older spellings kept as aliases.

=====================  ==============================  =========================
concept                flag                            also accepted
=====================  ==============================  =========================
checkpoint file        ``--ckpt_path``                 ``--checkpoint``
released model         ``--released``
backbone name          ``--backbone_arch``             ``--backbone``
backbone arguments     ``--backbone_config`` (JSON)
aggregator name        ``--agg_arch``                  ``--aggregator``
aggregator arguments   ``--agg_config`` (JSON)
output file/folder     ``--out``                       ``--output``, ``--out_dir``
=====================  ==============================  =========================

The parsed values land in ``args.ckpt_path``, ``args.released``, ``args.backbone``,
``args.backbone_config``, ``args.agg_arch`` and ``args.agg_config`` whichever spelling was used.
"""

from __future__ import annotations

import argparse
from typing import Any

from utils.cli import json_object

OUT_FILE_FLAGS = ("--out", "--output")
"""The output-file flag and its older spelling (``dest="out"``)."""
OUT_FOLDER_FLAGS = ("--out", "--out_dir")
"""The output-folder flag and its older spelling (``dest="out"``)."""
MODEL_ARGS_COMMAND = "python3 -m tools.model_args"
"""The command that lists each registered builder's arguments with their defaults."""


def add_model_arguments(
    parser: argparse.ArgumentParser,
    title: str = "model",
    checkpoint_help: str = "checkpoint file: a Lightning checkpoint of this project (architecture inside) or a bare "
    "state dict (described by the flags below)",
    default_backbone: str | None = None,
    default_aggregator: str | None = None,
    released: dict[str, Any] | None = None,
) -> argparse._ArgumentGroup:
    """Add the model group: ``--ckpt_path``, ``--released`` (also ``--method``, VPR-methods-evaluation's
    spelling), ``--backbone_arch``, ``--backbone_config``, ``--agg_arch``, ``--agg_config`` (with their
    aliases); returns the group for a tool's own flags. ``released``: the keyword arguments of
    ``--released`` where a tool takes it otherwise than as one name (eval.py: several)."""
    from models.registry import AGGREGATORS, BACKBONES
    from models.released import RELEASE_NAMES

    group = parser.add_argument_group(title)
    group.add_argument(  # kept a str: a Path would merge a URL's "//"
        "--ckpt_path", "--checkpoint", dest="ckpt_path",
        help=f"{checkpoint_help}; a path, or an http(s):// or file:// URL (downloaded, then checked like a file)",
    )
    group.add_argument(
        "--released", "--method", dest="released", **(released or {
            "choices": RELEASE_NAMES, "metavar": "NAME",
            "help": "a released model: its architecture (for a bare state dict) and its evaluation image size",
        }),
    )
    parts = (
        ("backbone", "backbone_arch", "backbone", BACKBONES, default_backbone, '{"num_trainable_blocks": 4}', ""),
        ("aggregator", "agg_arch", "agg_arch", AGGREGATORS, default_aggregator, '{"num_clusters": 64}',
         "; its input width defaults to the backbone's channels"),
    )
    for kind, flag, dest, registry, default, example, note in parts:
        old_flag = f"--{kind}"
        shown_default = f" (default {default})" if default else ""
        group.add_argument(
            f"--{flag}", old_flag, dest=dest, metavar="NAME",
            help=f"registered {kind}{shown_default}: {', '.join(registry.names())}",
        )
        group.add_argument(
            f"--{flag.replace('_arch', '_config')}", type=json_object, default={}, metavar="JSON",
            help=f"{kind} arguments as JSON, e.g. '{example}'{note} (each {kind}'s: {MODEL_ARGS_COMMAND})",
        )
    return group


def add_out_argument(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup, folder: bool = False, **kwargs: object
) -> argparse.Action:
    """``--out`` with ``dest="out"``, also spelt ``--output`` (a file) or ``--out_dir`` (a folder)."""
    return parser.add_argument(*(OUT_FOLDER_FLAGS if folder else OUT_FILE_FLAGS), dest="out", **kwargs)
