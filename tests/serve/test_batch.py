"""BatchedDecoder: per-row acceptance with continuous batching equals hasten.generate per
request (float64), with a negative control; and the auto-off rule."""

from __future__ import annotations

import random

import pytest

import hasten
from hasten.batch import AutoOff, AutoOffConfig, BatchedDecoder, BatchRequest, measured_speedup
from hasten.cost import CostCurve
from hasten.drafters.base import Drafter
from hasten.sampling import SamplingParams
from hasten.tree import DraftTree

from .serve_live import tiny_serve_model


def prompts(count: int = 7) -> list[list[int]]:
    rng = random.Random(3)
    out = [[5], [9, 9], [11, 12, 13, 11, 12, 13, 11, 12]]
    while len(out) < count:
        body = [rng.randrange(3, 128) for _ in range(rng.choice([4, 9, 17, 30]))]
        out.append(body + body[2:6])
    return out


@pytest.fixture(scope="module")
def model():
    return tiny_serve_model(seed=1)


def run_batch(model, reqs: list[BatchRequest], join_every: int = 2) -> list[list[int]]:
    """Requests join every ``join_every`` steps and leave when done (continuous batching)."""
    dec = BatchedDecoder(model)
    rows = []
    for i, req in enumerate(reqs):
        rows.append(dec.make_row(req))
        dec.add(rows[-1])
        if i % join_every == 0:
            for row in dec.step():
                dec.remove(row)
    while dec.rows:
        for row in dec.step():
            dec.remove(row)
    return [row.run.tokens for row in rows]


@pytest.mark.parametrize("method", [None, "prompt_lookup", "suffix", "trie"])
def test_batched_rows_equal_generate(model, method):
    ps = prompts()
    reqs = [BatchRequest(p, 24, method=method, eos_token_id=[], draft_budget=None) for p in ps]
    expected = [
        hasten.generate(model, p, method=method, max_new_tokens=24, eos_token_id=[], draft_budget=None)
        .sequences[0]
        .tolist()
        for p in ps
    ]
    assert run_batch(model, reqs) == expected


def test_batched_sampling_equals_generate(model):
    ps = prompts()
    params = SamplingParams(do_sample=True, temperature=0.9, top_p=0.95)
    reqs = [
        BatchRequest(p, 20, method="prompt_lookup", params=params, seed=i, draft_budget="auto")
        for i, p in enumerate(ps)
    ]
    expected = [
        hasten.generate(
            model, p, method="prompt_lookup", max_new_tokens=20, do_sample=True, temperature=0.9, top_p=0.95, seed=i
        )
        .sequences[0]
        .tolist()
        for i, p in enumerate(ps)
    ]
    assert run_batch(model, reqs, join_every=3) == expected


class OracleDrafter(Drafter):
    """Proposes the known continuation (``reference``), or a shifted wrong one (``wrong``)."""

    def __init__(self, reference: list[int], wrong: bool = False):
        self.reference, self.wrong = reference, wrong

    def propose(self, tokens, max_depth):
        nxt = self.reference[len(tokens) : len(tokens) + min(max_depth, 5)]
        return DraftTree.chain([(t + 1) % 128 if self.wrong else t for t in nxt]) if nxt else None


def test_rows_accept_different_lengths(model):
    """One row accepts every draft token, the other none: each step the rows commit
    different lengths (per-row compaction), and both still equal generate."""
    ps = [prompts()[3], prompts()[4]]
    refs = [hasten.generate(model, p, max_new_tokens=20, eos_token_id=[]).sequences[0].tolist() for p in ps]
    dec = BatchedDecoder(model, batch_budget=False)  # verify every proposed node
    rows = [
        dec.make_row(BatchRequest(p, 20, method=OracleDrafter(ref, wrong=i == 1), eos_token_id=[], draft_budget=None))
        for i, (p, ref) in enumerate(zip(ps, refs))
    ]
    for row in rows:
        dec.add(row)
    while dec.rows:
        for row in dec.step():
            dec.remove(row)
    assert [row.run.tokens for row in rows] == refs
    assert sum(rows[0].stats.accepted) >= 15 and sum(rows[1].stats.accepted) == 0
    assert len(rows[0].stats.accepted) < len(rows[1].stats.accepted)


def test_negative_control_without_compaction_differs(model, monkeypatch):
    """If the verified rows were kept uncompacted, outputs would change: the test can fail."""
    ps = prompts()
    expected = [
        hasten.generate(model, p, method="prompt_lookup", max_new_tokens=24, eos_token_id=[], draft_budget=None)
        .sequences[0]
        .tolist()
        for p in ps
    ]

    def no_compaction(self, moves):  # keeps every verified row where the forward wrote it
        self._length = max(row.cached for row in self.rows)

    monkeypatch.setattr(BatchedDecoder, "_compact", no_compaction)
    reqs = [BatchRequest(p, 24, method="prompt_lookup", eos_token_id=[], draft_budget=None) for p in ps]
    try:
        got = run_batch(model, reqs)
    except Exception:  # a broken cache may also fail outright
        return
    assert got != expected


def test_in_place_cache_equals_a_fresh_prefill(model):
    """After steps with different acceptance per row, joins and a leave, each row's live KV slots
    equal an independent batch-1 prefill of its committed tokens (the in-place per-row compaction
    moved exactly the accepted slots), and the padding slots are finite."""
    import torch
    from transformers import DynamicCache

    from hasten import kv

    ps = prompts()[2:6]
    refs = [hasten.generate(model, p, max_new_tokens=18, eos_token_id=[]).sequences[0].tolist() for p in ps]
    dec = BatchedDecoder(model, batch_budget=False)
    rows = []
    for i, (p, ref) in enumerate(zip(ps, refs)):
        drafter = OracleDrafter(ref, wrong=i % 2 == 1)
        rows.append(dec.make_row(BatchRequest(p, 18, method=drafter, eos_token_id=[], draft_budget=None)))
        dec.add(rows[-1])
        dec.step()
    dec.remove(rows[1])
    for _ in range(3):
        dec.step()
    assert len({row.cached for row in dec.rows}) > 1  # rows of different lengths share the buffers
    for b, row in enumerate(dec.rows):
        cache = DynamicCache(config=model.config)
        with torch.inference_mode():
            model(input_ids=torch.tensor([row.run.tokens[:-1]]), **{kv.cache_kwarg(model): cache}, use_cache=True)
        assert len(cache.layers) == len(dec.keys) and cache.layers[0].keys.shape[2] == row.cached
        for layer, keys, values in zip(cache.layers, dec.keys, dec.values):
            assert torch.allclose(keys[b, :, : row.cached], layer.keys[0], atol=1e-12)
            assert torch.allclose(values[b, :, : row.cached], layer.values[0], atol=1e-12)
            assert torch.isfinite(keys).all() and torch.isfinite(values).all()


def test_prompt_past_context_is_refused_before_work(model):
    dec = BatchedDecoder(model)
    with pytest.raises(ValueError, match="context length"):
        dec.make_row(BatchRequest([5] * 256, 4))
    assert dec.forwards == 0


CURVE = CostCurve((1, 2, 4, 8), (1.0, 1.2, 1.6, 2.4))


def test_measured_speedup_hand_example():
    assert measured_speedup([2, 2], [3, 3], CURVE) == pytest.approx(2 / 1.6)
    assert measured_speedup([1, 1], [1, 1], CURVE) == pytest.approx(1 / 1.2)
    assert measured_speedup([], [], CURVE) == 1.0


def test_auto_off_switches_off_when_losing_and_reprobes():
    auto = AutoOff(CURVE, AutoOffConfig(window=4, off_steps=3, max_off_steps=6))
    for _ in range(4):  # 3 nodes verified, nothing accepted: speedup 1 / 1.6 < 1
        assert auto.speculating
        auto.observe(3, 1)
    assert not auto.speculating and auto.switches == 1
    for _ in range(3):  # three plain steps
        assert not auto.speculating
        auto.observe(0, 1)
    assert auto.speculating  # re-probe
    for _ in range(4):
        auto.observe(3, 1)
    assert auto.off_left == 6 and auto.switches == 2  # doubled off period


def test_auto_off_stays_on_when_winning():
    auto = AutoOff(CURVE, AutoOffConfig(window=4))
    for _ in range(12):  # 3 nodes, all accepted: 4 tokens per 1.6 cost
        auto.observe(3, 4)
        assert auto.speculating
    assert auto.switches == 0


def test_auto_off_never_changes_output(model):
    """A drafter that is always wrong triggers auto-off; the output stays the library's."""
    ps = prompts()
    reqs = [
        BatchRequest(
            p,
            40,
            method="prompt_lookup",
            eos_token_id=[],
            draft_budget=None,
            auto_off=AutoOffConfig(window=2, off_steps=2, min_speedup=50.0),
        )
        for p in ps
    ]
    expected = [
        hasten.generate(model, p, method="prompt_lookup", max_new_tokens=40, eos_token_id=[], draft_budget=None)
        .sequences[0]
        .tolist()
        for p in ps
    ]
    dec_out = run_batch(model, reqs)
    assert dec_out == expected


def test_auto_off_cuts_drafting_in_the_loop(model):
    p = [20, 21, 22, 23] * 6
    on = BatchedDecoder(model)
    row_on = on.make_row(BatchRequest(p, 40, method="prompt_lookup", eos_token_id=[], draft_budget=None))
    off = BatchedDecoder(model)
    row_off = off.make_row(
        BatchRequest(
            p,
            40,
            method="prompt_lookup",
            eos_token_id=[],
            draft_budget=None,
            auto_off=AutoOffConfig(window=2, off_steps=4, min_speedup=50.0),
        )
    )
    for dec, row in ((on, row_on), (off, row_off)):
        dec.add(row)
        while not row.done:
            dec.step()
    assert row_off.run.tokens == row_on.run.tokens
    assert row_off.auto_off.switches >= 1
    plain_steps = sum(1 for d in row_off.stats.drafted if d == 0)
    assert plain_steps > sum(1 for d in row_on.stats.drafted if d == 0)


def test_float32_batch_equals_generate():
    model = tiny_serve_model(seed=2).float()
    ps = prompts(5)
    reqs = [BatchRequest(p, 16, method="prompt_lookup", eos_token_id=[], draft_budget=None) for p in ps]
    expected = [
        hasten.generate(model, p, method="prompt_lookup", max_new_tokens=16, eos_token_id=[], draft_budget=None)
        .sequences[0]
        .tolist()
        for p in ps
    ]
    assert run_batch(model, reqs) == expected


def test_batch_width_hand_examples():
    from hasten.batch import batch_width

    curve = CostCurve((1, 2, 4, 8), (1.0, 1.0, 1.6, 2.4))
    assert batch_width([[1.0, 1.1], [1.0, 1.1]], curve) == 0  # 2.2 / 1.6 < 2 / 1.0
    assert batch_width([[1.0, 1.9], [1.0, 1.9]], curve) == 1  # 3.8 / 1.6 > 2 / 1.0
    assert batch_width([[1.0], [1.0]], curve) == 0


def test_batch_width_cut_never_changes_output(model):
    ps = prompts()
    reqs = [BatchRequest(p, 24, method="suffix", eos_token_id=[], draft_budget="auto") for p in ps]
    expected = [
        hasten.generate(model, p, method="suffix", max_new_tokens=24, eos_token_id=[]).sequences[0].tolist() for p in ps
    ]
    assert run_batch(model, reqs) == expected


def test_batch_cost_hand_examples():
    """The decoder's own step timings override the batch-1 curve (values hand-computed)."""
    from hasten.batch import BatchCost

    curve = CostCurve((1, 8, 16, 24), (0.5, 1.5, 1.8, 2.1))
    cost = BatchCost(curve, window=3)
    assert not cost.known(8)
    assert cost.cost(8, 2) == pytest.approx(1.8)  # nothing timed: the curve at 8 * 2 tokens
    cost.observe(8, 1, 1.5)
    assert cost.known(8) and not cost.known(4)
    assert cost.cost(8, 2) == pytest.approx(1.5 * 1.8 / 1.5)  # one width timed: scaled by the curve
    for seconds in (2.7, 2.9, 10.0):
        cost.observe(8, 2, seconds)
    assert cost.cost(8, 2) == pytest.approx(2.9)  # median of the window
    assert cost.cost(8, 3) == pytest.approx(2.9 + (2.9 - 1.5))  # extrapolated from the last two widths
    cost.observe(8, 4, 3.5)
    assert cost.cost(8, 3) == pytest.approx(2.9 + (3.5 - 2.9) / 2)  # interpolated
    cost.observe(8, 2, 1.0)
    cost.observe(8, 2, 1.0)  # window 3: (10.0, 1.0, 1.0) -> median 1.0
    assert cost.cost(8, 2) == pytest.approx(1.0)
    dip = BatchCost(CostCurve((1, 8, 16), (0.5, 1.5, 1.4)))  # a noisy curve: 16 tokens "cheaper" than 8
    dip.observe(8, 1, 1.5)
    assert dip.cost(8, 2) == pytest.approx(1.5)  # the curve made monotone: never cheaper than a plain step


def test_batch_width_rule_on_measured_costs():
    """The batch-level auto-off: drafting only where the batch's own timings say it pays.

    Curve cost(8) = 1.5 s, cost(16) = 1.8 s: on the curve a width of 1 looks nearly free for
    8 rows. Each row expects 1.5 committed tokens with one drafted node.
    - nothing timed at B = 8: a plain step first (width 0), whatever the rows expect;
    - plain step timed 1.5 s, width 2 estimated 1.8 s: 8 * 1.5 / 1.8 = 6.67 > 8 / 1.5 = 5.33 -> draft 1;
    - width 2 then timed 2.7 s (padding: every row pays for Q = 2): 12 / 2.7 = 4.44 < 5.33 -> 0;
    - rows expecting 2.0 with one node: 16 / 2.7 = 5.93 > 5.33 -> draft again."""
    from hasten.batch import BatchCost, batch_width

    cost = BatchCost(CostCurve((1, 8, 16, 24), (0.5, 1.5, 1.8, 2.1)))
    expected = [[1.0, 1.5]] * 8
    assert batch_width([[1.0, 2.0]] * 8, cost) == 0
    cost.observe(8, 1, 1.5)
    assert batch_width(expected, cost) == 1
    # 8 * 4 / 2.1 = 15.2 would pick width 2 on the curve alone, but only width 1 (Q = 2) may be explored next
    assert batch_width([[1.0, 2.0, 4.0]] * 8, cost) == 1
    cost.observe(8, 2, 2.7)
    assert batch_width(expected, cost) == 0
    assert batch_width([[1.0, 2.0]] * 8, cost) == 1
    # width 2 (Q = 3) extrapolated to 2.7 + 1.2 = 3.9 s: 8 * 2.9 / 3.9 = 5.95 > 16 / 2.7 = 5.93
    assert batch_width([[1.0, 2.0, 2.9]] * 8, cost) == 2
    assert batch_width([[1.0, 2.0, 2.8]] * 8, cost) == 1  # 22.4 / 3.9 = 5.74 < 5.93


def test_batch_off_hand_example():
    """Refused proposals switch proposing off for a doubling period; a kept draft resets it."""
    from hasten.batch import BatchOff

    off = BatchOff(patience=2, off_steps=3, max_off_steps=5)
    trace = []
    for proposed, drafted in (
        [(True, False), (False, False), (True, False)]
        + [(False, False)] * 3
        + [
            (True, False),
            (True, False),
        ]
    ):
        trace.append(off.speculating)
        off.observe(proposed, drafted)
    # step 1 refused, step 2 proposed nothing (no count), step 3 refused -> off 3 steps -> 2 refusals -> off 5
    assert trace == [True, True, True, False, False, False, True, True]
    assert off.off_left == 5  # 2 * 3 = 6, capped at max_off_steps
    for _ in range(5):
        off.observe(False, False)
    off.observe(True, True)  # the rule kept a draft: the next off period is back to 3
    assert off.speculating and off.next_off == 3
    with pytest.raises(ValueError):
        BatchOff(patience=0)


def test_batch_off_skips_proposals_without_changing_output(model):
    """With every draft refused by the width rule, proposals stop after ``patience`` steps; tokens unchanged."""
    from hasten.batch import BatchCost, BatchOff

    ps = prompts()[2:6]
    expected = [hasten.generate(model, p, max_new_tokens=30, eos_token_id=[]).sequences[0].tolist() for p in ps]
    dec = BatchedDecoder(model)
    cost = BatchCost(CostCurve((1, 2), (1.0, 1.0)))
    for q in range(1, 40):  # a huge measured price for any draft: the rule always picks width 0
        cost.observe(len(ps), q, 1.0 if q == 1 else 100.0 * q)
    dec._batch_cost = cost
    dec.batch_off = BatchOff(patience=2, off_steps=8, max_off_steps=64)
    calls = []

    class Counting(OracleDrafter):  # always proposes (the reference continuation), counting its calls
        def propose(self, tokens, max_depth):
            calls.append(1)
            return super().propose(tokens, max_depth)

    rows = []
    for p, ref in zip(ps, expected):
        rows.append(dec.make_row(BatchRequest(p, 30, method=Counting(ref), eos_token_id=[], draft_budget=None)))
        dec.add(rows[-1])
    steps = 0
    while dec.rows:
        steps += 1
        for row in dec.step():
            dec.remove(row)
    assert [row.run.tokens for row in rows] == expected
    assert all(d == 0 for row in rows for d in row.stats.drafted)
    # 2 steps propose, 8 off, 2 propose, 16 off, 2 propose: at most 6 * 4 proposals of 30 * 4 without BatchOff
    assert steps == 30 and 0 < len(calls) <= 6 * len(ps)
