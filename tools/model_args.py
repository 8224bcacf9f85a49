"""List the arguments each registered backbone and aggregator takes, with their defaults: the keys
of ``backbone_config`` and ``agg_config`` (``main.py``'s ``--model.backbone_config``, eval.py's and
the exporter's ``--backbone_config``).

Example::

    python3 -m tools.model_args                 # every builder
    python3 -m tools.model_args resnet18 SALAD  # some
"""

from __future__ import annotations

import argparse
import inspect
import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as `python tools/model_args.py`: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models import AGGREGATORS, BACKBONES
from models.registry import Registry

CONFIG_OF = {"backbone": "backbone_config", "aggregator": "agg_config"}


def describe(registry: Registry, name: str) -> str:
    """``name (kind): key=default, ...`` for one builder (``key`` alone: no default)."""
    parts = [key if default is inspect.Parameter.empty else f"{key}={default!r}"
             for key, default in registry.arguments(name).items()]
    return f"{name} ({registry.kind}, {CONFIG_OF[registry.kind]}): {', '.join(parts) or 'no arguments'}"


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
    for registry in registries:
        for name in registry.names():
            if not args.names or name in args.names:
                print(describe(registry, name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
