"""List the arguments each registered backbone and aggregator takes, with their defaults: the keys
of ``backbone_config`` and ``agg_config`` (``main.py``'s ``--model.backbone_config``, eval.py's and
the exporter's ``--backbone_config``).

Example::

    python3 -m tools.model_args                 # every builder
    python3 -m tools.model_args resnet18 SALAD  # some
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as `python tools/model_args.py`: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models import AGGREGATORS, BACKBONES
from models.registry import Registry
from utils.cli import print_listing

CONFIG_OF = {"backbone": "backbone_config", "aggregator": "agg_config"}
"""Which configuration holds the arguments of each kind of builder."""


NOTE = ("in_channels is the backbone's width, filled in; main.py starts a backbone from its pretrained weights "
        "unless backbone_config sets pretrained: false")


def describe(registries: tuple[Registry, ...] = (BACKBONES, AGGREGATORS), names: Sequence[str] = ()) -> list[str]:
    """The lines this tool prints: per registry, its builders (those of ``names``, default all)
    grouped by identical arguments, each with its arguments and defaults."""
    lines = []
    for registry in registries:
        chosen = [name for name in registry.names() if not names or name in names]
        if chosen:
            lines.append(f"{CONFIG_OF[registry.kind]} of each {registry.kind}:")
            lines += [f"  {line}" for line in registry.describe_arguments(chosen)]
    return lines


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python3 -m tools.model_args",
        description="List each registered backbone's and aggregator's arguments with their defaults "
        "(the keys of backbone_config and agg_config).",
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help="builders to list (default: all)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    registries = (BACKBONES, AGGREGATORS)
    known = [name for registry in registries for name in registry.names()]
    unknown = [name for name in args.names if name not in known]
    if unknown:
        parser.error(f"unknown name {', '.join(unknown)}; registered: {', '.join(known)}")
    print_listing("\n".join([*describe(registries, args.names), NOTE]) + "\n", parser.prog)
    return 0


if __name__ == "__main__":
    sys.exit(main())
