"""The shared bench core: names, interleaving, resume, non-finite records, tables."""

from __future__ import annotations

import math

import pytest

from hasten.benchcore import (
    Contender,
    NullBar,
    RecordLog,
    check_resume,
    decode_non_finite,
    encode_non_finite,
    interleaved_pairs,
    markdown_table,
    number,
    progress_bar,
    rate,
    read_records,
    rotated,
    speedup_of_fastest,
    text_table,
    write_meta,
)


def test_contender_parses_name_and_variant_once():
    c = Contender.parse("trie@bf16", normalize=lambda v: {"bf16": "bfloat16"}[v])
    assert (c.base, c.variant, c.name, str(c)) == ("trie", "bfloat16", "trie@bfloat16", "trie@bfloat16")
    assert Contender.parse("ar") == Contender("ar", None)
    assert c.baseline("ar") == Contender("ar", "bfloat16")
    with pytest.raises(ValueError, match="empty variant"):
        Contender.parse("trie@")
    with pytest.raises(ValueError):
        Contender("a@b")
    with pytest.raises(KeyError):  # the normalizer's own error passes through
        Contender.parse("trie@fp8", normalize=lambda v: {"bf16": "bfloat16"}[v])


def test_rotated_and_interleaved_order():
    assert rotated(["a", "b", "c"], 4) == ["b", "c", "a"]
    assert rotated([], 3) == []
    calls = []
    base, method = interleaved_pairs(
        lambda: calls.append("b") or len(calls), lambda: calls.append("m") or len(calls), 3
    )
    assert calls == ["b", "m", "m", "b", "b", "m"]
    assert base == [1, 4, 5] and method == [2, 3, 6]
    with pytest.raises(ValueError):
        interleaved_pairs(lambda: 0, lambda: 0, 0)
    assert speedup_of_fastest([2.0, 1.8], [1.0, 0.9]) == pytest.approx(2.0)
    assert speedup_of_fastest([1.0], [0.0]) == math.inf


def test_check_resume_refuses_mixed_runs(tmp_path):
    assert check_resume(tmp_path, {"a": 1}, resume=False, protocol_fields=("a",)) is False
    with RecordLog(tmp_path / "records.jsonl") as log:
        log.append({"x": 1})
    with pytest.raises(ValueError, match="--resume"):
        check_resume(tmp_path, {"a": 1}, False, ("a",))
    write_meta(tmp_path, {"a": 1})
    assert check_resume(tmp_path, {"a": 1, "b": 2}, True, ("a", "b")) is True  # b: not recorded before, not compared
    with pytest.raises(ValueError, match="b differ"):
        check_resume(tmp_path, {"a": 1, "b": 2}, True, ("a", "b"), missing_differs=True)
    with pytest.raises(ValueError, match="a differ"):
        check_resume(tmp_path, {"a": 2}, True, ("a",))


def test_non_finite_round_trip_through_the_log(tmp_path):
    record = {"psnr": math.inf, "low": -math.inf, "extra": {"x": math.nan}, "method": "inf"}
    with RecordLog(tmp_path / "r.jsonl") as log:
        log.append(encode_non_finite(record))
    back = decode_non_finite(read_records(tmp_path / "r.jsonl")[0], text_fields=("method",))
    assert back["psnr"] == math.inf and back["low"] == -math.inf and math.isnan(back["extra"]["x"])
    assert back["method"] == "inf"


def test_tables_and_cells():
    assert markdown_table(["a", "b"], [["1", "2"]], "lr") == ["| a | b |", "|---|---:|", "| 1 | 2 |"]
    assert text_table(["a", "bb"], [["ccc", "d"]]) == ["a    bb", "ccc  d"]
    assert number(1.234, ".1f", "x") == "1.2x"
    assert number(None) == "—" and number(math.inf, ".1f") == "inf" and number(0.25, ".1%") == "25.0%"
    assert rate(3, 4) == "75% (3/4)" and rate(0, 0) == "—"


def test_progress_bar_off_is_silent(capsys):
    with progress_bar(10, enabled=False) as bar:
        assert isinstance(bar, NullBar)
        bar.update(1)
        bar.set_postfix_str("x")
    assert capsys.readouterr().err == ""
