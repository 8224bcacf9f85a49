"""Objects whose pickle runs code when unpickled: what a crafted index file or checkpoint holds."""

from __future__ import annotations

import builtins
import collections
import os
from pathlib import Path


class RunsShell:
    """Pickles as ``os.system(command)``: unpickling it runs the command."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple:
        return os.system, (self.command,)


class RunsPython:
    """Pickles as ``builtins.exec(source)``."""

    def __init__(self, source: str) -> None:
        self.source = source

    def __reduce__(self) -> tuple:
        return builtins.exec, (self.source,)


def planted_checkpoint(path: Path, marker: Path) -> Path:
    """A Lightning-shaped checkpoint whose hyperparameters run ``touch marker`` when unpickled."""
    import torch

    payload = {"state_dict": collections.OrderedDict(weight=torch.ones(2)), "epoch": 0, "global_step": 1,
               "hyper_parameters": {"lr": 1e-3, "note": RunsShell(f"touch {marker}")}}
    torch.save(payload, path)
    return path
