"""``meta.json`` fields every bench records: machine, date, command line, versions."""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import sys
from pathlib import Path

__all__ = ["machine", "utc_date", "command_line", "versions"]


def machine(cpu_name: bool = True) -> str:
    """The CPU (its model name from /proc/cpuinfo when ``cpu_name`` and available, else the
    architecture), core count and torch's thread count.

    Example: "AMD EPYC 7B13, 16 CPU cores, torch threads 1".
    """
    import torch

    cpu = platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpu_name and cpuinfo.is_file():
        names = [ln.split(":", 1)[1].strip() for ln in cpuinfo.read_text().splitlines() if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    return f"{cpu}, {os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()}"


def utc_date() -> str:
    """Now, to the minute. Example: "2026-12-05 13:40 UTC"."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def command_line() -> str:
    """The command that started this process, as ``hasten ...`` when run through the script."""
    if Path(sys.argv[0]).name == "hasten":
        return shlex.join(["hasten", *sys.argv[1:]])
    return shlex.join(sys.argv)


def versions(*packages: str) -> dict[str, str]:
    """``{"hasten": ..., "torch": ..., <each of packages>: ...}`` (packages must be importable)."""
    import importlib

    import hasten

    out = {"hasten": hasten.__version__}
    for name in ("torch", *packages):
        out[name] = importlib.import_module(name).__version__
    return out
