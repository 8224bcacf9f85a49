"""main.py killed with SIGKILL, as by ``kill -9``, when training is about to take a given step.

Run by tests/test_train_cli.py as ``python -m tests.scripts.train_killed_at_step STEP [main.py flags]``:
the process dies at the start of optimizer step ``STEP + 1``, after every checkpoint of step
``STEP`` is written, with no exception handling or teardown.
"""

from __future__ import annotations

import os
import signal
import sys

import pytorch_lightning as pl

import main as train_cli


class KillAtStep(pl.Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer: pl.Trainer, *args: object) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    step, flags = int(sys.argv[1]), sys.argv[2:]
    del sys.argv[1:]
    defaults = train_cli.default_trainer_settings
    train_cli.default_trainer_settings = lambda: {**defaults(), "callbacks": [*defaults()["callbacks"], KillAtStep(step)]}
    train_cli.main(flags)
