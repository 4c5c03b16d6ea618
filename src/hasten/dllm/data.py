"""Data for the dLLM trained here: GSM8K-style arithmetic with exact answers, and Python source.

* **Arithmetic** (:func:`arithmetic_problem`): a short word problem with 2-3 steps of addition
  and subtraction of a one-digit number, answered in the style of GSM8K (Cobbe et al., arXiv 2110.14168): one line per
  step with the equation written out, then ``#### <answer>``. Generated from a seed, so the
  held-out evaluation set (:func:`eval_problems`, seeds from :data:`EVAL_SEED`) is reproducible
  and disjoint from training (the training script skips any question in it).
* **Real text** (:func:`stdlib_files`): the Python standard library's own ``.py`` files (the
  interpreter running this code; Python Software Foundation License). Files are split by name
  into training and held-out parts (:func:`is_heldout_file`).

Example::

    >>> p = arithmetic_problem(random.Random(0))
    >>> p.answer == int(p.solution.rsplit("#### ", 1)[1])
    True
    >>> parse_answer("so 3 + 4 = 7.\\n#### 7")
    7
"""

from __future__ import annotations

import random
import re
import sysconfig
import zlib
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "Problem",
    "arithmetic_problem",
    "eval_problems",
    "parse_answer",
    "stdlib_files",
    "is_heldout_file",
    "EVAL_SEED",
    "TEXT_LICENSE",
    "prompt_text",
]

EVAL_SEED = 1_000_003
TEXT_LICENSE = "Python Software Foundation License (the CPython standard library)"
NAMES = ("Sam", "Ann", "Tom", "Mia", "Leo", "Zoe", "Ben", "Eva", "Max", "Ivy", "Kai", "Lily")
ITEMS = ("apples", "books", "coins", "pens", "cards", "stickers", "marbles", "shells", "stamps", "cookies")
_ANSWER = re.compile(r"####\s*(-?\d+)")


@dataclass(frozen=True)
class Problem:
    """One word problem: ``question`` (the prompt text), ``solution`` (the GSM8K-style answer), ``answer``."""

    question: str
    solution: str
    answer: int


def arithmetic_problem(rng: random.Random) -> Problem:
    """A 2-3 step word problem adding or subtracting 1..9 each step; every intermediate value stays in 0..99."""
    name, other = rng.sample(NAMES, 2)
    item = rng.choice(ITEMS)
    value = rng.randint(5, 40)
    question = [f"{name} has {value} {item}."]
    lines = [f"{name} starts with {value} {item}."]
    for _ in range(rng.randint(2, 3)):
        add = value < 10 or (value < 90 and rng.random() < 0.5)
        n = rng.randint(1, min(9, 99 - value) if add else min(9, value))
        if add:
            verb, past = rng.choice([("buys", "buying"), ("finds", "finding"), ("gets", "getting")])
            question.append(f"Then {name} {verb} {n} more.")
            lines.append(f"After {past} {n} more, {name} has {value} + {n} = {value + n}.")
            value += n
        else:
            verb, past = rng.choice(
                [(f"gives {n} to {other}", "giving"), (f"loses {n}", "losing"), (f"sells {n}", "selling")]
            )
            question.append(f"Then {name} {verb}.")
            lines.append(f"After {past} {n}, {name} has {value} - {n} = {value - n}.")
            value -= n
    question.append(f"How many {item} does {name} have now?")
    return Problem(" ".join(question), "\n".join(lines) + f"\n#### {value}", value)


def prompt_text(problem: Problem) -> str:
    """The prompt the model is trained and evaluated with."""
    return f"Question: {problem.question}\nAnswer:\n"


def eval_problems(n: int = 200) -> list[Problem]:
    """The held-out evaluation set: ``n`` problems from seed :data:`EVAL_SEED` (never trained on)."""
    rng = random.Random(EVAL_SEED)
    return [arithmetic_problem(rng) for _ in range(n)]


def parse_answer(text: str) -> int | None:
    """The integer after the first ``####`` in ``text``, or None if there is none."""
    match = _ANSWER.search(text)
    return int(match.group(1)) if match else None


def stdlib_files() -> list[Path]:
    """The top-level ``.py`` files of the running interpreter's standard library, sorted by name."""
    root = Path(sysconfig.get_paths()["stdlib"])
    return sorted(p for p in root.glob("*.py") if not p.name.startswith(("test", "_")))


def is_heldout_file(path: Path) -> bool:
    """About 1 file in 8 (by a crc32 of its name) is held out of training for the real-text set."""
    return zlib.crc32(path.name.encode()) % 8 == 0
