"""Raw benchmark records: an append-only JSONL log, the run's ``meta.json``, and the
``--resume`` check every family's bench shares.

Every record is one JSON object on one line, written with a single ``write`` of the whole
line and flushed to disk before the next measurement starts. A line without its final
newline (a write cut short by a kill) is never read back, and ``--resume`` truncates it
away before appending, so an interrupted run never leaves a half-written record.

JSON has no infinity (PSNR of identical outputs is ``inf``): :func:`encode_non_finite`
stores non-finite floats as the strings ``"inf"``, ``"-inf"``, ``"nan"`` and
:func:`decode_non_finite` turns them back, leaving named text fields alone.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "RecordLog",
    "read_records",
    "write_meta",
    "read_meta",
    "check_resume",
    "encode_non_finite",
    "decode_non_finite",
    "RECORDS_FILE",
    "META_FILE",
]

RECORDS_FILE = "records.jsonl"
META_FILE = "meta.json"
_NON_FINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


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

    def __enter__(self) -> RecordLog:
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


def check_resume(
    out_dir: str | Path,
    meta: dict[str, Any],
    resume: bool,
    protocol_fields: Sequence[str],
    *,
    missing_differs: bool = False,
    records_file: str = RECORDS_FILE,
) -> bool:
    """Refuse to mix runs: whether ``out_dir`` holds a run that ``resume`` continues.

    Compares the ``protocol_fields`` of ``meta`` with the run's ``meta.json``: records made
    under other settings would be averaged into the same rows.

    Args:
        out_dir: the run folder. meta: the new run's meta (fields it lacks are not compared).
        resume: continue the run on disk. protocol_fields: meta fields that must match.
        missing_differs: a field the old ``meta.json`` lacks counts as different (otherwise
            a field an older version did not record is not compared).
        records_file: the record log's file name in ``out_dir``.

    Returns:
        True when continuing a run whose ``meta.json`` exists.

    Raises:
        ValueError: records exist and ``resume`` is False, or ``resume`` with a run whose
            protocol differs (the message lists the differing fields).
    """
    out_dir = Path(out_dir)
    existing = read_records(out_dir / records_file)
    if existing and not resume:
        raise ValueError(
            f"{out_dir} already holds {len(existing)} records; pass --resume to continue "
            "that run or choose another --out"
        )
    if resume and (out_dir / META_FILE).is_file():
        old = read_meta(out_dir)
        differ = [k for k in protocol_fields if k in meta and (k in old or missing_differs) and old.get(k) != meta[k]]
        if differ:
            raise ValueError(f"cannot resume {out_dir}: {', '.join(differ)} differ from that run")
        return True
    return False


def _encode_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: _encode_value(v) for k, v in value.items()}
    return value


def _decode_value(key: str, value: Any, text_fields: frozenset[str]) -> Any:
    if isinstance(value, str) and value in _NON_FINITE and key not in text_fields:
        return _NON_FINITE[value]
    if isinstance(value, dict):
        return {k: _decode_value(k, v, text_fields) for k, v in value.items()}
    return value


def encode_non_finite(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` with non-finite floats (also in nested dicts) replaced by strings.

    Example: ``{"psnr": inf}`` -> ``{"psnr": "inf"}``.
    """
    return {k: _encode_value(v) for k, v in record.items()}


def decode_non_finite(record: dict[str, Any], text_fields: Iterable[str] = ()) -> dict[str, Any]:
    """Inverse of :func:`encode_non_finite`; the fields named in ``text_fields`` stay strings.

    Example: ``{"psnr": "inf", "method": "nan"}``, text_fields=("method",) ->
    ``{"psnr": inf, "method": "nan"}``.
    """
    keep = frozenset(text_fields)
    return {k: _decode_value(k, v, keep) for k, v in record.items()}
