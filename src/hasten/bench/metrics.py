"""Benchmark metrics: pure functions over raw records (see :mod:`hasten.bench.records`).

Every figure is a ratio of sums over the records it covers (long answers weigh more than
short ones: the throughput a user waits through), and every method is counted the same way:

* tokens/s = generated token ids / wall seconds, prefill included.
* speedup = tokens/s of the method / tokens/s of plain decoding (``ar``) over the question
  turns both finished in the same run, so machine drift hits both alike.
* mean accepted tokens (tau) = tokens committed per verification step, tokens produced
  by the prefill forward excluded: sum(new_tokens - prefill_tokens) / sum(steps), where
  steps = target forwards after the prefill and prefill_tokens is 1 for plain decoding
  and transformers greedy, 0 for hasten's speculative paths (their first step already
  drafts) and for transformers' assisted decoding (whose first forward prefills and
  verifies candidates at once, so every forward is a step).
  Plain decoding has tau = 1.
* forward passes per token = target forwards (prefill included) / generated tokens.
* overhead = (wall seconds - seconds inside target forwards) / verification steps, in ms:
  what drafting, acceptance and bookkeeping cost per step.
* oracle speedup: what a drafter that is always right reaches on this hardware, from the
  measured forward cost curve (:meth:`hasten.cost.CostCurve.oracle_speedup`).
* Spec-Bench's own speedup formula (its ``evaluation/speed.py``) differs: it takes each
  question's tokens/s (turns summed), averages those per method, and divides the two
  averages, so short answers weigh as much as long ones. :func:`specbench_speedup`
  computes it for comparison with figures published that way.

Figures a record cannot support (a llama.cpp peer has no forward counter) are None.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import torch

from .records import item_key

__all__ = [
    "Summary",
    "OVERALL",
    "generations",
    "tokens_per_second",
    "speedup",
    "specbench_speedup",
    "mean_accepted_tokens",
    "forward_passes_per_token",
    "overhead_ms_per_step",
    "summarize",
    "exact_match",
    "agreement",
    "mismatches",
    "first_difference",
    "top2_margin",
    "subtasks_in",
    "methods_in",
]

OVERALL = "overall"
Record = dict[str, Any]


@dataclass(frozen=True)
class Summary:
    """One method's figures over one subtask (or ``"overall"``); units in field names.

    ``speedup`` is None when no question turn was finished by both the method and the
    baseline; the other optional figures are None when no record carries the counters.
    """

    method: str
    subtask: str
    generations: int
    errors: int
    new_tokens: int
    seconds: float
    tokens_per_second: float | None
    speedup: float | None
    mean_accepted_tokens: float | None
    forward_passes_per_token: float | None
    overhead_ms_per_step: float | None


def generations(
    records: Iterable[Record], method: str | None = None, subtask: str = OVERALL, ok: bool | None = True
) -> list[Record]:
    """Generation records of ``method`` (any when None) in ``subtask``; ``ok`` True keeps
    successes, False errors, None both."""
    out = []
    for rec in records:
        if rec.get("kind") != "generation" or (method is not None and rec["method"] != method):
            continue
        if subtask != OVERALL and rec["subtask"] != subtask:
            continue
        if ok is not None and (rec.get("error") is None) != ok:
            continue
        out.append(rec)
    return out


def tokens_per_second(recs: Sequence[Record]) -> float | None:
    """Generated tokens / wall seconds over ``recs``.

    Example: 100 tokens in 2 s and 50 tokens in 1 s -> 50.0.
    """
    seconds = sum(r["seconds"] for r in recs)
    return sum(r["new_tokens"] for r in recs) / seconds if seconds > 0 else None


def speedup(method_recs: Sequence[Record], baseline_recs: Sequence[Record]) -> float | None:
    """tokens/s of the method / tokens/s of the baseline over the question turns both have.

    Example: method 100 tokens in 1 s, baseline the same 100 tokens in 2 s on the same
    question turn -> 2.0; a turn only one side finished is left out of both.
    """
    base = {item_key(r): r for r in baseline_recs}
    pairs = [(r, base[item_key(r)]) for r in method_recs if item_key(r) in base]
    if not pairs:
        return None
    ours, theirs = tokens_per_second([m for m, _ in pairs]), tokens_per_second([b for _, b in pairs])
    return ours / theirs if ours is not None and theirs else None


def specbench_speedup(method_recs: Sequence[Record], baseline_recs: Sequence[Record]) -> float | None:
    """Speedup by Spec-Bench's formula: mean over questions of the method's tokens/s
    (a question's turns summed) / the same mean for the baseline, over the questions
    (per run) whose turns both finished alike.

    Example: question A method 100 tokens in 1 s (100 tok/s), baseline 100 in 2 s (50);
    question B method 10 in 1 s (10), baseline 10 in 1 s (10) -> (100 + 10) / 2 over
    (50 + 10) / 2 = 1.833 (the ratio of sums gives 110 / 2 over 110 / 3 = 1.5).
    """

    def per_question(recs):
        grouped: dict[tuple, dict[Any, Record]] = {}
        for r in recs:
            run, subtask, question, turn = item_key(r)
            grouped.setdefault((run, subtask, question), {})[turn] = r
        return grouped

    ours, theirs = per_question(method_recs), per_question(baseline_recs)
    shared = [q for q in ours if q in theirs and ours[q].keys() == theirs[q].keys()]
    speeds = [(tokens_per_second(list(ours[q].values())), tokens_per_second(list(theirs[q].values()))) for q in shared]
    speeds = [(a, b) for a, b in speeds if a is not None and b is not None]
    if not speeds:
        return None
    return sum(a for a, _ in speeds) / sum(b for _, b in speeds)


def mean_accepted_tokens(recs: Sequence[Record]) -> float | None:
    """tau = sum(new_tokens - prefill_tokens) / sum(steps) over records that count steps
    (``prefill_tokens`` defaults to 1, the first token of plain decoding).

    Example: 11 tokens in 5 steps and 1 token in 0 steps -> (10 + 0) / 5 = 2.0; 10 tokens
    in 5 steps with prefill_tokens 0 -> 2.0.
    """
    counted = [r for r in recs if r.get("steps") is not None]
    steps = sum(r["steps"] for r in counted)
    return sum(r["new_tokens"] - r.get("prefill_tokens", 1) for r in counted) / steps if steps else None


def forward_passes_per_token(recs: Sequence[Record]) -> float | None:
    """Target forwards (prefill included) / generated tokens.

    Example: 33 forwards for 128 tokens -> 0.2578.
    """
    counted = [r for r in recs if r.get("forward_passes") is not None]
    tokens = sum(r["new_tokens"] for r in counted)
    return sum(r["forward_passes"] for r in counted) / tokens if tokens else None


def overhead_ms_per_step(recs: Sequence[Record]) -> float | None:
    """Milliseconds per verification step spent outside target forwards.

    Example: 2.0 s wall, 1.5 s in forwards, 50 steps -> 10.0 ms.
    """
    counted = [r for r in recs if r.get("forward_seconds") is not None and r.get("steps") is not None]
    steps = sum(r["steps"] for r in counted)
    if not steps:
        return None
    return 1000 * sum(r["seconds"] - r["forward_seconds"] for r in counted) / steps


def summarize(records: Sequence[Record], method: str, subtask: str = OVERALL, baseline: str = "ar") -> Summary:
    """All figures of ``method`` over ``subtask`` (see the module docstring)."""
    good = generations(records, method, subtask)
    base = generations(records, baseline, subtask)
    return Summary(
        method=method,
        subtask=subtask,
        generations=len(good),
        errors=len(generations(records, method, subtask, ok=False)),
        new_tokens=sum(r["new_tokens"] for r in good),
        seconds=sum(r["seconds"] for r in good),
        tokens_per_second=tokens_per_second(good),
        speedup=speedup(good, base),
        mean_accepted_tokens=mean_accepted_tokens(good),
        forward_passes_per_token=forward_passes_per_token(good),
        overhead_ms_per_step=overhead_ms_per_step(good),
    )


def _audits(records: Iterable[Record], method: str, subtask: str) -> list[Record]:
    return [
        r
        for r in records
        if r.get("kind") == "audit" and r["method"] == method and (subtask == OVERALL or r["subtask"] == subtask)
    ]


def exact_match(records: Sequence[Record], method: str, subtask: str = OVERALL) -> tuple[int, int]:
    """(exact, compared): audited question turns whose token ids equal the baseline's."""
    audits = _audits(records, method, subtask)
    return sum(1 for a in audits if a["exact"]), len(audits)


def mismatches(records: Sequence[Record], method: str) -> list[Record]:
    """Audit records of ``method`` that differ from the baseline, in question order."""
    return sorted((a for a in _audits(records, method, OVERALL) if not a["exact"]), key=item_key)


def agreement(records: Sequence[Record], method: str, reference: str, subtask: str = OVERALL) -> tuple[int, int]:
    """(equal, compared): question turns where ``method``'s token ids equal ``reference``'s
    (by output hash), over turns both finished.

    Example: method and reference agree on 3 of 4 shared turns -> (3, 4).
    """
    ref = {item_key(r): r["output_sha1"] for r in generations(records, reference, subtask)}
    own = [r for r in generations(records, method, subtask) if item_key(r) in ref]
    return sum(1 for r in own if r["output_sha1"] == ref[item_key(r)]), len(own)


def first_difference(a: Sequence[int], b: Sequence[int]) -> int | None:
    """First position where two token sequences differ; a length difference counts at
    the shorter length; None when equal.

    Example: [1, 2, 3] vs [1, 5, 3] -> 1; [1, 2] vs [1, 2, 3] -> 2; [4] vs [4] -> None.
    """
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def top2_margin(logits: torch.Tensor) -> float:
    """Largest minus second-largest logit of a (V,) float tensor: how close the greedy
    choice was to a tie (in logit units; a near-zero margin explains a flipped token).

    Example: [0.1, 2.0, 1.5] -> 0.5.

    Raises:
        ValueError: fewer than two logits.
    """
    if logits.numel() < 2:
        raise ValueError("need at least two logits")
    top = torch.topk(logits.reshape(-1).double(), 2).values
    return float(top[0] - top[1])


def subtasks_in(records: Iterable[Record], order: Sequence[str] = ()) -> list[str]:
    """Subtasks present in ``records``: those in ``order`` first (in that order), then the
    rest sorted."""
    present = {r["subtask"] for r in records if r.get("kind") == "generation"}
    return [s for s in order if s in present] + sorted(present - set(order))


def methods_in(records: Iterable[Record]) -> list[str]:
    """Methods present in generation records, in first-seen order."""
    seen: dict[str, None] = {}
    for r in records:
        if r.get("kind") == "generation":
            seen.setdefault(r["method"], None)
    return list(seen)
