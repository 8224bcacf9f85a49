"""Name -> builder registries for backbones and aggregators.

A new architecture is one module plus one ``@BACKBONES.register("name")`` (or
``AGGREGATORS``) line; names are matched exactly, never by substring.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

import torch.nn as nn

from utils.errors import UserError

BuilderT = TypeVar("BuilderT", bound=Callable[..., nn.Module])


class Registry:
    """A named table of module builders (classes or functions returning ``nn.Module``)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
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
            UserError: an argument the builder does not take (one line naming its arguments).
        """
        builder = self.get(name)
        takes_any = any(p.kind is p.VAR_KEYWORD for p in inspect.signature(builder).parameters.values())
        unknown = [key for key in kwargs if key not in self.arguments(name)]
        if unknown and not takes_any:
            raise UserError(
                f"{self.kind} {name} takes no argument {', '.join(unknown)}; its arguments: "
                f"{', '.join(self.arguments(name))} (with defaults: python3 -m tools.model_args {name})"
            )
        return builder(**kwargs)

    def names(self) -> list[str]:
        return sorted(self._builders)

    def arguments(self, name: str) -> dict[str, Any]:
        """The keyword arguments of ``name``'s builder and their defaults (``inspect.Parameter.empty``
        where it has none): the keys of its ``*_config``."""
        parameters = inspect.signature(self.get(name)).parameters.values()
        return {
            parameter.name: parameter.default
            for parameter in parameters
            if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)
        }

    def describe_arguments(self, names: list[str] | None = None) -> list[str]:
        """One line per set of builders taking the same arguments: ``name, name: key=default, ...``
        (``key`` alone: no default), for ``names`` (default: every builder)."""
        groups: dict[str, list[str]] = {}
        for name in names if names is not None else self.names():
            parts = [key if default is inspect.Parameter.empty else f"{key}={default!r}"
                     for key, default in self.arguments(name).items()]
            groups.setdefault(", ".join(parts) or "no arguments", []).append(name)
        return [f"{', '.join(members)}: {arguments}" for arguments, members in groups.items()]

    def __contains__(self, name: object) -> bool:
        return name in self._builders


BACKBONES = Registry("backbone")
AGGREGATORS = Registry("aggregator")
