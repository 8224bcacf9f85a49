"""Which classes a configuration may name before Lightning's CLI imports them.

A ``config.yaml`` saved with a run is reused with ``main.py --config`` (the resume recipe), and
one copied from someone else's run folder can name any ``class_path``: the CLI imports that
module (running its code) while parsing. The classes a run of this project holds are allowed:
Lightning's own callbacks, loggers, strategies, plugins and profilers, and this project's.

Two layers: :func:`check_config_classes` reads every configuration file on the command line
(given to ``--config`` or to any other key, ``--trainer file.yaml``, and the files those name)
before parsing, and names the file, the key and the class of the first other one;
:func:`import_policy` has the parser (jsonargparse) refuse to import any other class, whatever
names it (a flag, a file found another way, a checkpoint's hyperparameters).
``main.py --trust_config`` turns both off for a configuration of your own.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from os import PathLike
from pathlib import Path
from typing import Any

import yaml
from jsonargparse import _common as jsonargparse_settings
from jsonargparse import set_parsing_settings

from utils.errors import UserError

LIGHTNING_PACKAGES = ("pytorch_lightning", "lightning.pytorch")
LIGHTNING_KINDS = ("callbacks", "loggers", "strategies", "plugins", "profilers", "accelerators")
PROJECT_PACKAGES = ("models", "dataloaders", "utils", "toy_world")
ALLOWED_MODULES: tuple[str, ...] = tuple(
    f"{package}.{kind}" for package in LIGHTNING_PACKAGES for kind in LIGHTNING_KINDS
) + PROJECT_PACKAGES
"""The modules (and everything under them) whose classes a configuration may name."""
ALLOWED_PREFIXES = tuple(f"{module}." for module in ALLOWED_MODULES)
REFUSED_NAMES = frozenset({"LambdaCallback"})
"""Lightning classes that call whatever functions the configuration names."""
REFUSED_MODULES = tuple(f"{package}.callbacks.{name}" for package in LIGHTNING_PACKAGES
                        for name in ("LambdaCallback", "lambda_function"))
""":data:`REFUSED_NAMES` as the parser's import paths (the class, and the module defining it)."""
CONFIG_SUFFIXES = (".yaml", ".yml", ".json")
CLASS_KEYS = frozenset({"callbacks", "logger", "plugins", "strategy", "profiler", "accelerator"})
"""Trainer keys whose string values Lightning's CLI also reads as class names."""


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


def check_config_classes(path: str | PathLike[str], seen: set[Path] | None = None) -> None:
    """Refuse a configuration file naming a class outside :data:`ALLOWED_PREFIXES`, or naming
    another configuration file that does (relative to the file's folder, as the parser reads it).

    Raises:
        UserError: one line naming the file, the key and the class.
    """
    path = Path(path)
    seen = set() if seen is None else seen
    if path.resolve() in seen:
        return
    seen.add(path.resolve())
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError):
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
    for value in strings(config):
        if value.endswith(CONFIG_SUFFIXES):
            for candidate in (path.parent / value, Path(value)):
                if candidate.is_file():
                    check_config_classes(candidate, seen)


def strings(node: Any) -> Iterator[str]:
    """Every string value in a parsed configuration."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)


def config_files(args: list[str]) -> list[str]:
    """The configuration files in a command line: each value (``--key value`` or ``--key=value``)
    naming an existing ``.yaml``, ``.yml`` or ``.json`` file, whatever the key (``--config``,
    ``--trainer``, ``--trainer.callbacks``, ...)."""
    values = [arg.split("=", 1)[1] if arg.startswith("-") and "=" in arg else arg for arg in args]
    return [value for value in values if value.endswith(CONFIG_SUFFIXES) and Path(value).is_file()]


@contextmanager
def import_policy() -> Iterator[None]:
    """While the block runs, the parser imports no class named by a value (a flag, a file, a
    checkpoint's hyperparameters) outside :data:`ALLOWED_MODULES`: it refuses it with an error
    holding :data:`DENIED_IMPORT` (see :func:`denied_class`). The parser's previous policy is put
    back afterwards (tests and notebooks call ``main.main`` again in one process)."""
    settings = jsonargparse_settings.parsing_settings
    previous = {key: settings[key] for key in ("import_path_verdicts", "import_paths_enforced")}
    set_parsing_settings(import_path_denylist=["*", *REFUSED_MODULES], import_path_allowlist=list(ALLOWED_MODULES))
    try:
        yield
    finally:
        settings.update(previous)


DENIED_IMPORT = re.compile(r"Importing '([\w.]+)' is not allowed")
PARSER_KEY = re.compile(r'Parser key "([\w.\[\]]+)"')
LOADED_FILE = re.compile(r"Unable to load config '([^']+)'")


def denied_class(message: str) -> str | None:
    """One line for a parser error refusing a class under :func:`import_policy` (naming the key,
    the class and the file it came from), else None."""
    denied = DENIED_IMPORT.search(message)
    if denied is None:
        return None
    before = message[:denied.start()]
    keys, files = PARSER_KEY.findall(before), LOADED_FILE.findall(before)
    where = f"--{keys[-1]}: " if keys else ""
    source = f" (in {files[-1]})" if files else ""
    return (f"{where}the class {denied.group(1)}{source} is not one a run of this project holds; refused, not imported "
            "(pass --trust_config if the configuration is yours)")
