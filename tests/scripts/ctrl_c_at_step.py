"""A callback for tests run through main.py: Ctrl-C as a terminal sends it under torchrun, SIGINT to
every process of the run's process group (each DDP rank) and at once a second time (torchrun
forwards the SIGINT it got to its workers), when training is about to take step ``step + 1``.
Rank 0 sends them; run the command in a session of its own."""

from __future__ import annotations

import os
import signal

import pytorch_lightning as pl


class CtrlCAtStep(pl.Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer: pl.Trainer, *args: object) -> None:
        if trainer.global_step == self.step and trainer.is_global_zero:
            os.killpg(os.getpgrp(), signal.SIGINT)
            os.killpg(os.getpgrp(), signal.SIGINT)
