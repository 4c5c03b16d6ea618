"""Hardware-aware draft sizing on hand-made cost curves."""

import pytest

from hasten.budget import BudgetConfig, DraftBudget
from hasten.cost import CostCurve, time_sizes
from hasten.tree import DraftTree

LINEAR = CostCurve((1, 2, 4, 8), (1.0, 2.0, 4.0, 8.0))  # every token costs a full forward
FLAT = CostCurve((1, 2, 4, 8), (1.0, 1.0, 1.0, 1.0))  # verification is free (ideal accelerator)
CPU_LIKE = CostCurve((1, 2, 4, 8), (45.0, 52.0, 70.0, 100.0))  # ms, fp32 SmolLM2 here


def test_linear_cost_never_drafts_without_evidence():
    budget = DraftBudget(LINEAR, BudgetConfig(explore_every=0))
    # prior q = 0.5: E(1) = 1.5 tokens for 2 units of cost < 1 token per unit
    assert budget.choose_depth([1, 2, 3, 4]) == 0


def test_flat_cost_verifies_everything():
    budget = DraftBudget(FLAT, BudgetConfig(explore_every=0))
    assert budget.choose_depth([1, 2, 3, 4, 5, 6, 7]) == 7


def test_cpu_like_cost_follows_acceptance():
    budget = DraftBudget(CPU_LIKE, BudgetConfig(explore_every=0, prior_weight=0.01))
    for _ in range(30):
        budget.observe(verified_depth=7, accepted=7)  # drafts always right
    # q ~ 1: E(7) = 8 tokens for 100 ms beats E(0) = 1 token for 45 ms
    assert budget.choose_depth(list(range(1, 8))) == 7
    for _ in range(60):
        budget.observe(verified_depth=1, accepted=0)  # drafts always wrong
    assert budget.choose_depth(list(range(1, 8))) == 0


def test_exploration_after_skips():
    budget = DraftBudget(LINEAR, BudgetConfig(explore_every=3))
    assert [budget.choose_depth([1, 2]) for _ in range(6)] == [0, 0, 1, 0, 0, 1]


def test_cut_truncates_tree_by_depth():
    budget = DraftBudget(FLAT, BudgetConfig(max_nodes=3, explore_every=0))
    tree = DraftTree((10, 11, 12, 13, 14), (-1, 0, 1, -1, 3))
    cut = budget.cut(tree)  # depth 2 would need 4 nodes > max_nodes: keep the two depth-1 nodes
    assert cut.tokens == (10, 13) and cut.parents == (-1, -1)
    assert len(DraftBudget(LINEAR, BudgetConfig(explore_every=0)).cut(tree)) == 0


def test_reset_forgets_observations():
    budget = DraftBudget(CPU_LIKE, BudgetConfig(explore_every=0))
    before = budget.rate(1)
    budget.observe(3, 3)
    assert budget.rate(1) > before
    budget.reset()
    assert budget.rate(1) == pytest.approx(before)


def test_oracle_speedup_on_cpu_like_curve():
    speedup, k = CPU_LIKE.oracle_speedup()
    assert k == 7 and speedup == pytest.approx(8 * 45 / 100)


# --- per-node cut of scored drafts (calibrated node scores) ---


def _scored(tokens, parents, scores):
    return DraftTree(tuple(tokens), tuple(parents), node_scores=tuple(scores))


def test_scored_draft_flat_cost_keeps_every_node_linear_cost_none():
    tree = _scored([10, 11, 12], [-1, 0, -1], [0.9, 0.5, 0.1])
    assert DraftBudget(FLAT, BudgetConfig(explore_every=0)).cut(tree).tokens == (10, 11, 12)
    assert len(DraftBudget(LINEAR, BudgetConfig(explore_every=0)).cut(tree)) == 0


def test_observe_step_counts_nodes_whose_parent_was_accepted():
    budget = DraftBudget(CPU_LIKE, BudgetConfig(explore_every=0, score_bins=8, prior_weight=2.0))
    # node 0: conditional 0.9 -> bin 7; node 1: 0.45 / 0.9 = 0.5 -> bin 4; node 2: 0.05 -> bin 0;
    # node 3 (child of the rejected node 2) is not counted
    tree = _scored([10, 11, 12, 13], [-1, 0, -1, 2], [0.9, 0.45, 0.05, 0.05])
    budget.observe_step(tree, [0])
    # (hits + prior * weight) / (trials + weight), prior = bin centre (b + 0.5) / 8
    assert budget.bin_rate(7) == pytest.approx((1 + 0.9375 * 2) / 3)
    assert budget.bin_rate(4) == pytest.approx((0 + 0.5625 * 2) / 3)
    assert budget.bin_rate(0) == pytest.approx((0 + 0.0625 * 2) / 3)
    assert budget.bin_rate(1) == pytest.approx(0.1875)  # untouched: its prior
    # the depth rates are still learned
    assert budget.rate(1) > BudgetConfig().prior


def test_confident_steps_draft_deep_and_doubtful_steps_decode_plainly():
    budget = DraftBudget(CPU_LIKE, BudgetConfig(explore_every=0, score_bins=4))
    by_depth = DraftBudget(CPU_LIKE, BudgetConfig(explore_every=0, use_node_scores=False))
    chain_hi = _scored([1, 2, 3, 4, 5, 6, 7], range(-1, 6), [0.95] * 7)
    chain_lo = _scored([1, 2, 3, 4, 5, 6, 7], range(-1, 6), [0.3] * 7)  # bin 1 at the root, bin 3 below
    for _ in range(40):
        budget.observe_step(chain_hi, list(range(7)))  # bin 3 (conditional 1.0 / 0.95) always right
        budget.observe_step(_scored([1], [-1], [0.3]), [])  # bin 1 always wrong
        by_depth.observe_step(chain_hi, list(range(7)))
        by_depth.observe_step(_scored([1], [-1], [0.3]), [])
    assert budget.cut(chain_hi).tokens == (1, 2, 3, 4, 5, 6, 7)
    assert len(budget.cut(chain_lo)) == 0
    # by depth alone both steps look alike (q1 ~ 0.5, deeper ~ 1), so the doubtful one
    # is verified in full too
    assert len(by_depth.cut(chain_lo)) == len(by_depth.cut(chain_hi)) >= 4


def test_node_cut_keeps_most_probable_nodes_closed_under_parents():
    budget = DraftBudget(CPU_LIKE, BudgetConfig(explore_every=0, max_nodes=3, prior_weight=1e-3))
    for _ in range(50):  # high bins right, low bins wrong
        budget.observe_step(_scored([1, 2], [-1, -1], [0.99, 0.2]), [0])
    tree = _scored([1, 2, 3, 4, 5], [-1, 0, 1, -1, 0], [0.99, 0.98, 0.97, 0.2, 0.1])
    cut = budget.cut(tree)
    # nodes 0-2 are a confident chain; node 3 (a low root child) and node 4 (a doubtful child) go
    assert cut.tokens == (1, 2, 3) and cut.parents == (-1, 0, 1)
    assert cut.node_scores == (0.99, 0.98, 0.97)


def test_node_cut_explores_after_skips():
    budget = DraftBudget(LINEAR, BudgetConfig(explore_every=2))
    tree = _scored([10, 11], [-1, 0], [0.9, 0.8])
    assert [len(budget.cut(tree)) for _ in range(4)] == [0, 1, 0, 1]


def test_depth_cut_when_scores_off_or_absent():
    flat = DraftBudget(FLAT, BudgetConfig(explore_every=0, max_nodes=2, use_node_scores=False))
    tree = _scored([10, 11, 12], [-1, 0, -1], [0.9, 0.5, 0.1])
    cut = flat.cut(tree)  # depth 1 only (depth 2 would need 3 nodes): the two root children
    assert cut.tokens == (10, 12) and cut.node_scores == (0.9, 0.1)


def test_draft_tree_node_score_validation_and_subset():
    with pytest.raises(ValueError, match="node scores"):
        DraftTree((1, 2), (-1, 0), node_scores=(0.5,))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        DraftTree((1,), (-1,), node_scores=(1.5,))
    tree = _scored([1, 2, 3], [-1, 0, 1], [0.9, 0.8, 0.7])
    with pytest.raises(ValueError, match="closed under parents"):
        tree.subset([0, 2])
    assert tree.subset([0, 1]).node_scores == (0.9, 0.8)


def test_time_sizes_rounds_alternate_and_drop_the_warm_up():
    calls, clock = [], iter(range(100))

    def timed_forward(size):
        calls.append(size)
        return float(next(clock))  # the n-th call "takes" n seconds

    seconds = time_sizes(timed_forward, (1, 2, 4), repeats=3)
    # warm-up 1,2,4 (calls 0-2, dropped), then 4,2,1 / 1,2,4 / 4,2,1 (calls 3-11)
    assert calls == [1, 2, 4, 4, 2, 1, 1, 2, 4, 4, 2, 1]
    # size 1 timed at calls 5, 6, 11; size 2 at 4, 7, 10; size 4 at 3, 8, 9
    assert seconds == (6.0, 7.0, 8.0)
    with pytest.raises(ValueError, match="repeats"):
        time_sizes(timed_forward, (1, 2), repeats=0)


def test_time_sizes_keeps_a_slow_spell_out_of_the_curve():
    true_cost = {1: 0.040, 2: 0.044, 4: 0.060, 8: 0.090}
    n = iter(range(1000))

    def timed_forward(size):  # calls 10-17 run during a background job: +0.1 s each
        return true_cost[size] + (0.1 if 10 <= next(n) < 18 else 0.0)

    seconds = time_sizes(timed_forward, (1, 2, 4, 8), repeats=5)
    # the spell (8 calls) takes 2 of each size's 5 timed forwards, so the medians are
    # untouched; timed back to back it would have covered all 5 repeats of one size
    assert seconds == pytest.approx(tuple(true_cost.values()))


def test_measure_forward_cost_on_a_tiny_model(tiny_factory):
    from hasten.cost import measure_forward_cost

    model = tiny_factory("llama")
    curve = measure_forward_cost(model, sizes=(1, 2, 4), context=8, repeats=2)
    assert curve.sizes == (1, 2, 4) and all(t > 0 for t in curve.seconds)


def test_a_sampled_draft_is_cut_the_same_way_whatever_its_length():
    """Speculative sampling stays exact only if verifying a sampled token never depends on
    that token. A drafter's confidence stop makes the draft's length depend on its tokens,
    so the cut must not depend on the length: x1 is verified in both drafts or in neither."""
    import torch

    curve = CostCurve((1, 2, 3, 4), (45.0, 60.0, 61.0, 62.0))  # a jump, then flat: not unimodal
    budget = DraftBudget(curve, BudgetConfig(explore_every=0))
    budget.trials, budget.hits = [50.0, 50.0, 50.0], [15.0, 45.0, 45.0]  # q1 = 16/52, q2 = q3 = 46/52
    # E(d)/cost(d+1): d=0 1/45 = .0222, d=1 1.308/60 = .0218, d=2 1.580/61 = .0259, d=3 1.821/62 = .0294
    assert budget.choose_depth([1]) == 0  # judged by its own depth, a 1-token draft is not worth verifying
    short = DraftTree.chain([1], torch.full((1, 4), 0.25))  # the drafter stopped after a doubtful x1
    long = DraftTree.chain([1, 2, 3], torch.full((3, 4), 0.25))
    assert [len(budget.cut(d, max_depth=3)) for d in (short, long)] == [1, 3]
    with pytest.raises(ValueError, match="max_depth"):
        budget.cut(short)
