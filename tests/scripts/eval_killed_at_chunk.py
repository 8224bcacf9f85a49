"""eval.py killed with SIGKILL, as by ``kill -9`` or a scheduler, while it writes the database.

Run by tests/test_eval_scale.py as ``python -m tests.scripts.eval_killed_at_chunk N [eval.py flags]``:
the process dies once ``N`` chunks are recorded, after the rows of chunk ``N + 1`` are written
to the descriptor file but before its record is: a chunk half done, with no teardown.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import eval as eval_cli
from utils.evaluation import streaming

recorded = 0
write_record = streaming.write_atomically


def write_or_die(path: Path, write: object) -> Path:
    global recorded
    if path.parent.name == "chunks":
        if recorded == int(sys.argv[1]):
            os.kill(os.getpid(), signal.SIGKILL)
        recorded += 1
    return write_record(path, write)  # type: ignore[arg-type]


if __name__ == "__main__":
    streaming.write_atomically = write_or_die  # type: ignore[assignment]
    eval_cli.main(sys.argv[2:])
