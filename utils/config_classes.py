"""Which classes a configuration file may name before Lightning's CLI imports them.

A ``config.yaml`` saved with a run is reused with ``main.py --config`` (the resume recipe), and
one copied from someone else's run folder can name any ``class_path``: the CLI imports that
module (running its code) while parsing. :func:`refused_class` allows the classes a run of this
project holds, Lightning's own callbacks, loggers, strategies, plugins and profilers and this
project's classes, and names the first other one; ``main.py --trust_config`` skips the check
for a file of your own.
"""

from __future__ import annotations

from collections.abc import Iterator
from os import PathLike
from pathlib import Path
from typing import Any

import yaml

from utils.errors import UserError

LIGHTNING_PACKAGES = ("pytorch_lightning", "lightning.pytorch")
LIGHTNING_KINDS = ("callbacks", "loggers", "strategies", "plugins", "profilers", "accelerators")
ALLOWED_PREFIXES: tuple[str, ...] = tuple(
    f"{package}.{kind}." for package in LIGHTNING_PACKAGES for kind in LIGHTNING_KINDS
) + ("models.", "dataloaders.", "utils.", "toy_world.")
"""Dotted-name prefixes of the classes a configuration may name (this project's packages last)."""
REFUSED_NAMES = frozenset({"LambdaCallback"})
"""Lightning classes that call whatever functions the configuration names."""
CLASS_KEYS = frozenset({"callbacks", "logger", "plugins", "strategy", "profiler", "accelerator"})
"""Trainer keys whose string values Lightning's CLI also reads as class names."""
CONFIG_FLAGS = ("--config", "-c")


def named_classes(node: Any, key: str = "") -> Iterator[tuple[str, str]]:
    """``(key, dotted name)`` of every class a parsed configuration names: each ``class_path``,
    and the dotted strings under :data:`CLASS_KEYS`; ``key`` is the dotted key holding it."""
    if isinstance(node, dict):
        for name, value in node.items():
            inner = f"{key}.{name}" if key else str(name)
            if name == "class_path" and isinstance(value, str):
                yield key, value
            elif isinstance(value, str) and name in CLASS_KEYS and "." in value:
                yield inner, value
            else:
                yield from named_classes(value, inner)
    elif isinstance(node, list):
        last = key.rsplit(".", 1)[-1]
        for index, value in enumerate(node):
            if isinstance(value, str) and last in CLASS_KEYS and "." in value:
                yield f"{key}[{index}]", value
            else:
                yield from named_classes(value, f"{key}[{index}]")


def allowed(dotted: str) -> bool:
    """A short name (resolved by the CLI among classes already imported) or an allowed prefix."""
    if dotted.rsplit(".", 1)[-1] in REFUSED_NAMES:
        return False
    return "." not in dotted or dotted.startswith(ALLOWED_PREFIXES)


def check_config_classes(path: str | PathLike[str]) -> None:
    """Refuse a configuration file naming a class outside :data:`ALLOWED_PREFIXES`.

    Raises:
        UserError: one line naming the file, the key and the class.
    """
    try:
        text = Path(path).read_text()
    except OSError:
        return  # missing or unreadable: the CLI names it in its own error
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError:
        return  # not YAML: the CLI names it
    for key, dotted in named_classes(config):
        if not allowed(dotted):
            raise UserError(
                f"config {path}: {key} names the class {dotted}, which a run of this project does not hold; "
                "refused, not imported (pass --trust_config if the file is yours)"
            )


def config_files(args: list[str]) -> list[str]:
    """The files given with ``--config``/``-c`` in a command line."""
    files = []
    for index, arg in enumerate(args):
        if arg in CONFIG_FLAGS and index + 1 < len(args):
            files.append(args[index + 1])
        elif arg.startswith("--config="):
            files.append(arg.split("=", 1)[1])
    return files
