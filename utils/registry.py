"""A name -> builder registry (timm-like): the models' backbones and aggregators
(``models.registry``), the training losses and miners (``utils.training.metric_learning``).

Names are matched exactly, never by substring.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import torch.nn as nn

from utils.errors import UserError, render

BuilderT = TypeVar("BuilderT", bound=Callable[..., nn.Module])


class Registry:
    """A named table of module builders (classes or functions returning ``nn.Module``)."""

    def __init__(self, kind: str, config_name: str | None = None) -> None:
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
            raise UserError(
                f"unknown {self.kind} {name!r}; registered: {', '.join(self.names())}"
            ) from None

    def build(self, name: str, **kwargs: Any) -> nn.Module:
        """Build the module registered as ``name`` with keyword arguments ``kwargs``.

        Raises:
            UserError: an argument the builder does not take, or a size it cannot build (a negative
                one): one line naming :attr:`config_name` and the builder's arguments.
        """
        builder = self.get(name)
        takes_any = any(p.kind is p.VAR_KEYWORD for p in inspect.signature(builder).parameters.values())
        accepted = self.arguments(name)
        unknown = [key for key in kwargs if key not in accepted]
        given = f"{self.config_name}={json_text(kwargs)}: " if self.config_name else ""
        if unknown and not takes_any:
            raise UserError(
                f"{given}{self.kind} {name} takes no argument {', '.join(unknown)}; its arguments: "
                f"{', '.join(accepted)} (with defaults: python3 -m tools.model_args {name})"
            )
        try:
            return builder(**kwargs)
        except RuntimeError as error:
            if "negative dimension" not in str(error):
                raise
            raise UserError(f"{given}{self.kind} {name} cannot be built with a negative size ({render(error)})") from None

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

    def build_checked(
        self,
        name: str,
        config: Mapping[str, Any],
        name_parameter: str,
        config_parameter: str,
        given: Mapping[str, tuple[str, Any]] | None = None,
    ) -> nn.Module:
        """Build ``name`` with the keyword arguments ``config``, refusing an unknown name or
        argument in one line that names the parameter they came from (``loss_name=``,
        ``loss_config=``) and lists the valid ones.

        Args:
            given: arguments set by parameters of their own, ``{argument: (parameter, value)}``
                (a miner's ``margin`` from ``miner_margin``): passed to a builder that takes them,
                refused in ``config``.
        """
        if name not in self._builders:
            raise UserError(f"{name_parameter}={name!r} is not a registered {self.kind}; registered: {', '.join(self.names())}")
        builder = self._builders[name]
        given = given or {}
        accepted = list(self.arguments(name))
        settable = [key for key in accepted if key not in given]
        unknown = sorted(set(config) - set(settable))
        if unknown:
            apart = "".join(f" ({key}: set by {given[key][0]}=)" for key in accepted if key in given)
            raise UserError(
                f"{config_parameter}={dict(config)}: {self.kind} {name} takes no argument {', '.join(unknown)}; "
                f"its arguments: {', '.join(settable) or 'none'}{apart}"
            )
        return builder(**config, **{key: value for key, (_, value) in given.items() if key in accepted})


def json_text(values: Mapping[str, Any]) -> str:
    """``values`` as compact JSON (as a user writes it on the command line), ``repr`` for the rest."""
    return json.dumps(dict(values), separators=(", ", ": "), default=repr)
