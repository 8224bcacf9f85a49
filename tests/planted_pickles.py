"""Objects whose pickle runs code when unpickled: what a crafted index file or checkpoint holds."""

from __future__ import annotations

import builtins
import os


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
