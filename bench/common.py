"""What the throughput benches share: the start of ``main``, flag checks and the machine's name."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Iterable
from pathlib import Path

import torch

from utils.evaluation.inference import CPUINFO


def cpu_model_name(cpuinfo: Path = CPUINFO) -> str:
    """The ``model name`` of the first CPU in ``cpuinfo``, or ``"CPU"``."""
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "CPU"


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's with the number of torch threads."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_model_name()}, {torch.get_num_threads()} torch threads"


def add_device_flag(parser: argparse.ArgumentParser) -> None:
    """``--device {cpu,cuda}``, CUDA by default where torch sees a GPU (checked by :func:`check_device`)."""
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")


def check_device(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """``--device cuda`` where torch sees no GPU is a flag error."""
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")


def require_at_least(parser: argparse.ArgumentParser, args: argparse.Namespace, minimum: int, flags: Iterable[str]) -> None:
    """A flag error for the first of ``flags`` set below ``minimum`` (flags left at None pass)."""
    expected = "0 or more" if minimum == 0 else f"at least {minimum}"
    for flag in flags:
        value = getattr(args, flag)
        if value is not None and value < minimum:
            parser.error(f"--{flag} {value}: expected {expected}")


def require_warmup_for_compile(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """``--compile`` with no warm-up would time the compilation: a flag error."""
    if args.compile and args.warmup < 1:
        parser.error("--compile needs --warmup >= 1 so that compilation is not timed")


def start(
    parse_args: Callable[[list[str] | None], argparse.Namespace], argv: list[str] | None
) -> tuple[argparse.Namespace, torch.device]:
    """Log to the terminal, parse the flags, apply ``--threads`` and return the flags and ``--device``."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    return args, torch.device(args.device)
