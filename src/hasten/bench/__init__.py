"""Benchmark harness: the Spec-Bench protocol with peers side by side, an exactness audit,
and a report (``hasten bench`` / ``hasten report``; see docs/BENCH.md).

Modules: :mod:`.datasets` (questions), :mod:`.peers` (contenders), :mod:`.runner` (the
loop), :mod:`.records` (raw JSONL), :mod:`.metrics` (figures), :mod:`.report` (report.md
and plots), :mod:`.cli` (the commands), :mod:`.tiny` (a tiny random model for smoke tests).
"""

from .datasets import Question, load_dataset
from .metrics import Summary, summarize
from .peers import Contender, Outcome, Request
from .records import read_records
from .report import render_report
from .runner import BenchRunner, BenchSettings

__all__ = [
    "Question",
    "load_dataset",
    "Summary",
    "summarize",
    "Contender",
    "Outcome",
    "Request",
    "read_records",
    "render_report",
    "BenchRunner",
    "BenchSettings",
]
