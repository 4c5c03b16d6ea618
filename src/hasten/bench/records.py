"""Raw benchmark records: an append-only JSONL log and the run's ``meta.json``.

Every record is one JSON object on one line, written with a single ``write`` of the whole
line and flushed to disk before the next generation starts. A line without its final
newline (a write cut short by a kill) is never read back, and ``--resume`` truncates it
away before appending, so an interrupted run never leaves a half-written record.

Record kinds (field ``kind``):
    ``generation``: one method on one question turn in one run (token ids, timings,
        counters), or the error it raised (field ``error``).
    ``audit``: a method's output against the plain-decoding baseline's on the same
        question turn: exact match, first differing position, baseline's top-2 logit margin.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable

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

RECORDS_FILE = "records.jsonl"
META_FILE = "meta.json"


def item_key(rec: dict[str, Any]) -> tuple:
    """(run, subtask, question_id, turn): one question turn in one run."""
    return rec["run"], rec["subtask"], rec["question_id"], rec["turn"]


def record_key(rec: dict[str, Any]) -> tuple:
    """(kind, run, subtask, question_id, turn, method): what a record is unique by."""
    return (rec["kind"], *item_key(rec), rec["method"])


def _complete_prefix(data: bytes) -> int:
    """Length of ``data`` up to and including its last newline.

    Example: b'{"a": 1}\\n{"b"' -> 9 (the second, unterminated line is cut).
    """
    return data.rfind(b"\n") + 1


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Every complete record in ``path`` (an unterminated last line is ignored); [] when
    the file does not exist.

    Raises:
        ValueError: a complete line that is not a JSON object (the file was edited or
            corrupted; the message gives the line number).
    """
    path = Path(path)
    if not path.is_file():
        return []
    data = path.read_bytes()
    records = []
    for number, line in enumerate(data[: _complete_prefix(data)].splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            raise ValueError(f"{path}:{number}: not a JSON record") from None
        if not isinstance(rec, dict):
            raise ValueError(f"{path}:{number}: not a JSON object")
        records.append(rec)
    return records


class RecordLog:
    """Appends records to a JSONL file, one whole line per ``write``, synced to disk.

    Use as a context manager; opening cuts an unterminated last line left by a kill.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._fd: int | None = None

    def __enter__(self) -> "RecordLog":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.is_file():
            keep = _complete_prefix(self.path.read_bytes())
            if keep != self.path.stat().st_size:
                os.truncate(self.path, keep)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def append(self, record: dict[str, Any]) -> None:
        """Write ``record`` as one line and sync it.

        Raises:
            RuntimeError: the log is not open.
            TypeError: a value JSON cannot encode.
        """
        if self._fd is None:
            raise RuntimeError("RecordLog is not open; use it in a with statement")
        data = (json.dumps(record, sort_keys=True, allow_nan=False) + "\n").encode("utf-8")
        written = os.write(self._fd, data)
        while written < len(data):  # a short write on a regular file is rare; finish the line
            written += os.write(self._fd, data[written:])
        os.fsync(self._fd)

    def extend(self, records: Iterable[dict[str, Any]]) -> None:
        for rec in records:
            self.append(rec)


def write_meta(out_dir: str | Path, meta: dict[str, Any]) -> None:
    """Write ``meta.json`` atomically (temporary file, then rename)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out_dir, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
    os.replace(tmp, out_dir / META_FILE)


def read_meta(out_dir: str | Path) -> dict[str, Any]:
    """The run's ``meta.json``.

    Raises:
        FileNotFoundError: ``out_dir`` holds no benchmark run.
    """
    path = Path(out_dir) / META_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; is {out_dir} a `hasten bench --out` folder?")
    return json.loads(path.read_text())
