"""The record log never yields or keeps a half-written record."""

from __future__ import annotations

import pytest

from hasten.bench.records import RecordLog, read_meta, read_records, write_meta


def test_append_and_read(tmp_path):
    path = tmp_path / "r.jsonl"
    with RecordLog(path) as log:
        log.append({"a": 1})
        log.extend([{"b": [1, 2]}, {"c": None}])
    assert read_records(path) == [{"a": 1}, {"b": [1, 2]}, {"c": None}]
    assert read_records(tmp_path / "none.jsonl") == []


def test_partial_last_line_is_ignored_then_cut(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_bytes(b'{"a": 1}\n{"b": 2}\n{"c": ')
    assert read_records(path) == [{"a": 1}, {"b": 2}]
    with RecordLog(path) as log:
        log.append({"d": 4})
    assert path.read_bytes() == b'{"a": 1}\n{"b": 2}\n{"d": 4}\n'


def test_corrupt_complete_line_raises(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_bytes(b'{"a": 1}\nnonsense\n')
    with pytest.raises(ValueError, match=":2:"):
        read_records(path)


def test_append_needs_an_open_log_and_finite_numbers(tmp_path):
    log = RecordLog(tmp_path / "r.jsonl")
    with pytest.raises(RuntimeError):
        log.append({"a": 1})
    with log, pytest.raises(ValueError):
        log.append({"x": float("nan")})
    assert read_records(tmp_path / "r.jsonl") == []


def test_meta_roundtrip(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_meta(tmp_path)
    write_meta(tmp_path, {"model": "m", "methods": ["ar"]})
    assert read_meta(tmp_path) == {"model": "m", "methods": ["ar"]}
