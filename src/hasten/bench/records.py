"""Records of ``hasten bench``: the shared record log (:mod:`hasten.benchcore.records`)
and what an LLM bench record is keyed by.

Record kinds (field ``kind``):
    ``generation``: one method on one question turn in one run (token ids, timings,
        counters), or the error it raised (field ``error``).
    ``audit``: a method's output against the plain-decoding baseline's on the same
        question turn: exact match, first differing position, baseline's top-2 logit margin.
"""

from __future__ import annotations

from typing import Any

from ..benchcore.records import META_FILE, RECORDS_FILE, RecordLog, read_meta, read_records, write_meta

__all__ = [
    "RecordLog",
    "read_records",
    "item_key",
    "record_key",
    "write_meta",
    "read_meta",
    "RECORDS_FILE",
    "META_FILE",
]


def item_key(rec: dict[str, Any]) -> tuple:
    """(run, subtask, question_id, turn): one question turn in one run."""
    return rec["run"], rec["subtask"], rec["question_id"], rec["turn"]


def record_key(rec: dict[str, Any]) -> tuple:
    """(kind, run, subtask, question_id, turn, method): what a record is unique by."""
    return (rec["kind"], *item_key(rec), rec["method"])
