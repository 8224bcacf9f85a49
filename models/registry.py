"""Name -> builder registries for backbones and aggregators.

A new architecture is one module plus one ``@BACKBONES.register("name")`` (or
``AGGREGATORS``) line; names are matched exactly, never by substring.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

import torch.nn as nn

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
        """Build the module registered as ``name`` with keyword arguments ``kwargs``."""
        return self.get(name)(**kwargs)

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

    def __contains__(self, name: object) -> bool:
        return name in self._builders


BACKBONES = Registry("backbone")
AGGREGATORS = Registry("aggregator")
