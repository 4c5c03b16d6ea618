"""Metric arithmetic on hand-made records (expected values worked out by hand)."""

from __future__ import annotations

import pytest
import torch

from hasten.bench import metrics


def gen(
    method,
    qid,
    new_tokens,
    seconds,
    *,
    subtask="qa",
    turn=0,
    run=0,
    forward_passes=None,
    forward_seconds=None,
    sha="x",
    error=None,
):
    rec = {
        "kind": "generation",
        "method": method,
        "run": run,
        "subtask": subtask,
        "question_id": qid,
        "turn": turn,
        "error": error,
    }
    if error is None:
        rec.update(
            new_tokens=new_tokens,
            seconds=seconds,
            forward_passes=forward_passes,
            forward_seconds=forward_seconds,
            output_sha1=sha,
            steps=None if forward_passes is None else forward_passes - 1,
        )
    return rec


def audit(method, qid, exact, subtask="qa", first_diff=None, margin=None):
    return {
        "kind": "audit",
        "method": method,
        "run": 0,
        "subtask": subtask,
        "question_id": qid,
        "turn": 0,
        "exact": exact,
        "first_diff": first_diff,
        "margin": margin,
    }


RECORDS = [
    # question 1 (qa): ar 100 tokens in 4 s; pl the same 100 tokens in 2 s with 26 forwards
    gen("ar", "1", 100, 4.0, forward_passes=100, forward_seconds=3.5),
    gen("pl", "1", 100, 2.0, forward_passes=26, forward_seconds=1.5),
    # question 2 (rag): ar 50 tokens in 1 s; pl 50 tokens in 1 s with 50 forwards
    gen("ar", "2", 50, 1.0, subtask="rag", forward_passes=50, forward_seconds=0.9),
    gen("pl", "2", 50, 1.0, subtask="rag", forward_passes=50, forward_seconds=0.8),
    # question 3 (qa): pl failed, so ar's 3 s must not enter pl's speedup
    gen("ar", "3", 10, 3.0, forward_passes=10, forward_seconds=2.0),
    gen("pl", "3", 0, 0.0, error="ValueError: boom"),
]


def test_tokens_per_second_is_a_ratio_of_sums():
    assert metrics.tokens_per_second(metrics.generations(RECORDS, "ar")) == pytest.approx(160 / 8.0)


def test_speedup_pairs_only_turns_both_finished():
    s = metrics.summarize(RECORDS, "pl")
    # pairs: q1 and q2 -> pl 150 tokens / 3 s = 50 tok/s; ar 150 / 5 s = 30 tok/s
    assert s.speedup == pytest.approx(50 / 30)
    assert s.generations == 2 and s.errors == 1
    assert metrics.summarize(RECORDS, "pl", "qa").speedup == pytest.approx(2.0)
    assert metrics.summarize(RECORDS, "pl", "rag").speedup == pytest.approx(1.0)
    assert metrics.summarize(RECORDS, "ar").speedup == pytest.approx(1.0)


def test_mean_accepted_tokens_counts_tokens_from_drafting_prefill():
    # hasten's speculative paths prefill without producing a token: 10 tokens in 4 steps
    recs = [{"method": "pl", "new_tokens": 10, "steps": 4, "prefill_tokens": 0}]
    assert metrics.mean_accepted_tokens(recs) == pytest.approx(2.5)


def test_mean_accepted_tokens_excludes_the_prefill_token():
    # q1: 99 tokens after the first over 25 steps; q2: 49 over 49 steps -> 148 / 74 = 2.0
    assert metrics.summarize(RECORDS, "pl").mean_accepted_tokens == pytest.approx(2.0)
    assert metrics.summarize(RECORDS, "ar").mean_accepted_tokens == pytest.approx(1.0)


def test_forward_passes_per_token_and_overhead():
    s = metrics.summarize(RECORDS, "pl")
    assert s.forward_passes_per_token == pytest.approx(76 / 150)
    # (2.0 - 1.5) + (1.0 - 0.8) = 0.7 s outside forwards over 25 + 49 steps
    assert s.overhead_ms_per_step == pytest.approx(700 / 74)


def test_records_without_counters_give_none():
    recs = [gen("ar", "1", 10, 1.0), gen("llamacpp", "1", 10, 0.5)]
    s = metrics.summarize(recs, "llamacpp")
    assert s.speedup == pytest.approx(2.0)
    assert s.mean_accepted_tokens is None and s.forward_passes_per_token is None and s.overhead_ms_per_step is None


def test_no_shared_turn_means_no_speedup():
    recs = [gen("ar", "1", 10, 1.0), gen("pl", "2", 10, 1.0)]
    assert metrics.summarize(recs, "pl").speedup is None


def test_exact_match_and_agreement():
    recs = [
        audit("pl", "1", True),
        audit("pl", "2", False, first_diff=7, margin=0.01),
        audit("pl", "3", True),
        audit("pl", "4", True, subtask="rag"),
    ]
    assert metrics.exact_match(recs, "pl") == (3, 4)
    assert metrics.exact_match(recs, "pl", "qa") == (2, 3)
    assert [a["question_id"] for a in metrics.mismatches(recs, "pl")] == ["2"]
    gens = [
        gen("hf", "1", 5, 1.0, sha="a"),
        gen("pl", "1", 5, 1.0, sha="a"),
        gen("hf", "2", 5, 1.0, sha="b"),
        gen("pl", "2", 5, 1.0, sha="c"),
        gen("pl", "3", 5, 1.0, sha="d"),
    ]
    assert metrics.agreement(gens, "pl", "hf") == (1, 2)


def test_first_difference():
    assert metrics.first_difference([1, 2, 3], [1, 5, 3]) == 1
    assert metrics.first_difference([1, 2], [1, 2, 3]) == 2
    assert metrics.first_difference([4], [4]) is None
    assert metrics.first_difference([], [9]) == 0


def test_top2_margin():
    assert metrics.top2_margin(torch.tensor([0.1, 2.0, 1.5])) == pytest.approx(0.5)
    assert metrics.top2_margin(torch.tensor([3.0, 3.0])) == 0.0
    with pytest.raises(ValueError):
        metrics.top2_margin(torch.tensor([1.0]))


def test_oracle_speedup_from_a_cost_curve():
    from hasten.cost import CostCurve

    # 1 token 40 ms, 2 tokens 44 ms, 4 tokens 80 ms (3 tokens: 62 ms by interpolation):
    # k=1 -> 2 / 1.1 = 1.82, k=2 -> 3 / 1.55 = 1.94, k=3 -> 4 / 2.0 = 2.0
    curve = CostCurve((1, 2, 4), (0.040, 0.044, 0.080))
    assert curve.oracle_speedup() == (pytest.approx(2.0), 3)
    assert curve.oracle_speedup(max_draft=1) == (pytest.approx(2 / 1.1), 1)


def test_specbench_speedup_averages_per_question_speeds():
    recs = [
        gen("ar", "A", 100, 2.0),
        gen("pl", "A", 100, 1.0),  # 50 vs 100 tok/s
        gen("ar", "B", 10, 1.0),
        gen("pl", "B", 10, 1.0),  # 10 vs 10 tok/s
        # a two-turn question counts once, its turns summed: ar 30 tokens / 3 s, pl 30 / 2 s
        gen("ar", "C", 20, 2.0, turn=0),
        gen("ar", "C", 10, 1.0, turn=1),
        gen("pl", "C", 20, 1.0, turn=0),
        gen("pl", "C", 10, 1.0, turn=1),
        gen("ar", "D", 10, 1.0, turn=0),
        gen("ar", "D", 10, 1.0, turn=1),
        gen("pl", "D", 10, 1.0, turn=0),
    ]  # D: pl lacks a turn, so D is left out for both
    ar, pl = metrics.generations(recs, "ar"), metrics.generations(recs, "pl")
    # per question: pl 100, 10, 15 tok/s (mean 125/3); ar 50, 10, 10 (mean 70/3)
    assert metrics.specbench_speedup(pl, ar) == pytest.approx(125 / 70)
    # the ratio of sums pairs turns (D's shared first turn included): pl 150 tokens / 5 s, ar 150 / 7 s
    assert metrics.speedup(pl, ar) == pytest.approx(7 / 5)
    assert metrics.specbench_speedup(pl, []) is None


def test_oracle_column_only_where_the_cost_curve_was_measured():
    from hasten.bench.report import _oracle

    meta = {
        "dtype": "float32",
        "oracle": {"speedup": 9.0},
        "contenders": {"llamacpp": {"uses_target": False}, "trie": {"uses_target": True}},
    }
    assert _oracle(meta, "trie") == 9.0
    assert _oracle(meta, "trie@bfloat16") is None  # another dtype has another curve
    assert _oracle(meta, "llamacpp") is None  # another engine
