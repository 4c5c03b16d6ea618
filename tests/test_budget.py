"""Hardware-aware draft sizing on hand-made cost curves."""

import pytest

from hasten.budget import BudgetConfig, DraftBudget
from hasten.cost import CostCurve
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
