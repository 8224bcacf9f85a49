"""Name -> builder registries for backbones and aggregators.

A new architecture is one module plus one ``@BACKBONES.register("name")`` (or
``AGGREGATORS``) line; names are matched exactly, never by substring.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from typing import Any, TypeVar

import torch.nn as nn

from utils.cli import first_line
from utils.errors import UserError

BuilderT = TypeVar("BuilderT", bound=Callable[..., nn.Module])


class Registry:
    """A named table of module builders (classes or functions returning ``nn.Module``)."""

    def __init__(self, kind: str, config_name: str) -> None:
        self.kind = kind
        self.config_name = config_name
        """The parameter holding the builders' keyword arguments (``backbone_config``), named in errors."""
        self._builders: dict[str, Callable[..., nn.Module]] = {}

    def register(self, name: str) -> Callable[[BuilderT], BuilderT]:
        """Decorator that registers ``builder`` under ``name`` (exact, case-sensitive)."""

        def decorator(builder: BuilderT) -> BuilderT:
            if name in self._builders:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._builders[name] = builder
            return builder

        return decorator

    def get(self, name: str) -> Callable[..., nn.Module]:
        try:
            return self._builders[name]
        except KeyError:
            raise ValueError(
                f"unknown {self.kind} {name!r}; registered: {', '.join(self.names())}"
            ) from None

    def build(self, name: str, **kwargs: Any) -> nn.Module:
        """Build the module registered as ``name`` with keyword arguments ``kwargs``.

        Raises:
            UserError: an argument the builder does not take, or sizes it cannot build (a
                negative one), in one line naming :attr:`config_name`.
        """
        builder = self.get(name)
        taken = accepted_arguments(builder)
        unknown = sorted(set(kwargs) - taken) if taken is not None else []
        if unknown:
            raise UserError(f"{self.config_name}={json_text(kwargs)}: {self.kind} {name} takes no {', '.join(unknown)} "
                            f"(it takes {', '.join(sorted(taken)) or 'no argument'})")
        try:
            return builder(**kwargs)
        except RuntimeError as error:
            if "negative dimension" not in str(error):
                raise
            raise UserError(f"{self.config_name}={json_text(kwargs)}: {self.kind} {name} cannot be built with a "
                            f"negative size ({first_line(error)})") from None

    def names(self) -> list[str]:
        return sorted(self._builders)

    def __contains__(self, name: object) -> bool:
        return name in self._builders


def accepted_arguments(builder: Callable[..., nn.Module]) -> set[str] | None:
    """The keyword arguments ``builder`` takes, or None when it takes any (``**kwargs``)."""
    parameters = inspect.signature(builder).parameters.values()
    if any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters):
        return None
    return {parameter.name for parameter in parameters
            if parameter.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)}


def json_text(values: dict[str, Any]) -> str:
    """``values`` as compact JSON (as a user writes it on the command line), ``repr`` for the rest."""
    return json.dumps(values, separators=(", ", ": "), default=repr)


BACKBONES = Registry("backbone", "backbone_config")
AGGREGATORS = Registry("aggregator", "agg_config")
