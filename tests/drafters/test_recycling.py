"""Token recycling: adjacency map, static tree shape, tree growth and map updates, on
literal inputs."""

import pytest
import torch

import hasten
from hasten.drafters import DraftRequest, VerifiedStep
from hasten.drafters.recycling import (
    AdjacencyMap,
    FrequentTokens,
    RecyclingConfig,
    RecyclingDrafter,
    grow_tree,
    static_tree,
)
from hasten.sampling import SamplingParams
from hasten.tree import DraftTree

from .recording import drafts_of


def test_adjacency_seed_and_update():
    adjacency = AdjacencyMap(top_k=2)
    adjacency.seed([4, 5, 4, 6])
    assert adjacency.get(4) == [6, 5] and adjacency.get(5) == [4] and adjacency.get(6) == []
    adjacency.seed([4, 7])  # row 4 is full
    assert adjacency.get(4) == [6, 5]
    adjacency.update([4, 9, 4], [[7, 8, 1], [2], [3, 1]])
    assert adjacency.get(4) == [3, 1]  # the later row wins; rows are cut to top_k
    assert adjacency.get(9) == [2]
    assert len(adjacency) == 3  # rows for 4, 5, 9


def test_static_tree_literal():
    assert static_tree((2, 1), (0.6, 0.2), 3) == ((-1, 0), (0, 0), (-1, 1))
    shape = static_tree((3, 2, 1), (0.5, 0.3, 0.2), 100)
    assert len(shape) == 3 + 3 * 2 + 3 * 2 * 1  # every allowed rank path, none repeated
    priors = []
    for i, (parent, rank) in enumerate(shape):
        assert parent < i
        prior = (0.5, 0.3, 0.2)[rank] * (priors[parent] if parent >= 0 else 1.0)
        priors.append(prior)
    assert priors == sorted(priors, reverse=True)  # best first


def test_grow_tree_literal():
    adjacency = AdjacencyMap(4)
    adjacency.update([1, 2], [[2, 3], [4]])
    tree = grow_tree(1, adjacency, ((-1, 0), (0, 0), (-1, 1), (1, 0), (2, 0)))
    assert (tree.tokens, tree.parents) == ((2, 4, 3), (-1, 0, -1))
    assert grow_tree(99, adjacency, ((-1, 0),)) is None


def test_frequent_tokens():
    frequent = FrequentTokens(2)
    frequent.add([5, 6, 6, 7, 7, 7])
    assert frequent.top == [7, 6]


def _begin(prompt, **options):
    drafter = RecyclingDrafter(RecyclingConfig(**options))
    drafter.begin(DraftRequest(prompt, None, SamplingParams(), torch.Generator(), 6))
    return drafter


def test_on_accept_recycles_top_k_of_every_row():
    drafter = _begin([3, 4], top_k=2, widths=(2, 1), rank_prior=(0.6, 0.3), probe=0)
    tokens = [3, 4]
    draft = drafter.propose(tokens, 5)
    assert draft is None  # 4 has no row yet and probing is off
    drafter.adjacency.update([4], [[1]])
    draft = drafter.propose(tokens, 5)
    assert (draft.tokens, draft.parents) == ((1,), (-1,))
    neg = float("-inf")
    scores = torch.tensor(
        [
            [0.1, 0.9, 0.3, 0.0, 0.2, 0.5],  # after root 4: top-2 = 1, 5
            [0.0, 0.0, 2.0, neg, neg, neg],
        ]
    )  # after 1: 2, then a tie among 0, 1
    tokens += [1, 2]
    drafter.on_accept(VerifiedStep(tokens, draft, [0], 2, [1, 2], scores))
    assert drafter.adjacency.get(4) == [1, 5]
    assert drafter.adjacency.get(1)[0] == 2 and len(drafter.adjacency.get(1)) == 2
    masked = torch.tensor([[neg, neg, 1.0, neg, neg, neg], [0.0] * 6])
    drafter.on_accept(VerifiedStep(tokens, draft, [], 2, [2, 0], masked))
    assert drafter.adjacency.get(4) == [2]  # tokens the processed scores rule out are not kept


def test_a_step_without_a_proposal_recycles_under_its_own_root():
    """On a generation's last step the engine asks for no draft (one token left), so the
    drafter's last proposal is a step behind: the row must go to the step's own root."""
    drafter = _begin([3, 4], top_k=2, widths=(2, 1), rank_prior=(0.6, 0.3), probe=0)
    drafter.propose([3, 4], 5)  # saw root 4
    tokens = [3, 4, 7, 8]  # then 7 was committed, and 8 on a plain last step with root 7
    scores = torch.tensor([[0.0, 0.1, 0.9, 0.3, 0.0, 0.0]])  # after 7: top-2 = 2, 3
    drafter.on_accept(VerifiedStep(tokens, DraftTree.chain([]), [], 8, [2], scores, root_position=2))
    assert drafter.adjacency.get(7) == [2, 3] and drafter.adjacency.get(4) == []


def test_probe_when_the_root_is_unknown():
    drafter = _begin([5, 5, 6], probe=2)
    tree = drafter.propose([5, 5, 6], 4)
    assert (tree.tokens, tree.parents) == ((5, 6), (-1, -1))
    assert drafter.stats()["probes"] == 1


def test_config_validation():
    assert RecyclingConfig(widths="3,2", rank_prior="0.5, 0.3, 0.1").widths == (3, 2)
    assert RecyclingConfig(widths=[2, 1]).widths == (2, 1)
    for bad in (
        {"widths": ()},
        {"widths": (9,)},
        {"widths": (5,), "rank_prior": (0.5,) * 4},
        {"rank_prior": (0.0, 0.5, 0.5, 0.5)},
        {"max_nodes": 0},
        {"probe": -1},
        {"adjacency": AdjacencyMap(2)},
        {"widths": "2,x"},
    ):
        with pytest.raises(ValueError):
            RecyclingConfig(**bad)


def test_shared_map_changes_drafts_not_output(tiny_factory):
    model = tiny_factory("qwen2")
    a, b = [10, 11, 12, 13], [14, 10, 11]
    shared = AdjacencyMap()
    config = RecyclingConfig(adjacency=shared)
    hasten.generate(model, a, method=RecyclingDrafter(config), max_new_tokens=20)
    assert len(shared) > 0
    plain = hasten.generate(model, b, max_new_tokens=20).sequences[0].tolist()
    fresh = drafts_of(model, b, RecyclingDrafter())
    hot = drafts_of(model, b, RecyclingDrafter(config))
    assert hot != fresh
    out = hasten.generate(model, b, method=RecyclingDrafter(config), max_new_tokens=20).sequences[0].tolist()
    assert out == plain


def test_draft_tree_is_a_valid_tree_on_repeated_tokens():
    adjacency = AdjacencyMap(3)
    adjacency.update([1, 2, 3], [[1, 2, 3], [2, 1, 3], [3, 2, 1]])  # tokens that follow themselves
    tree = grow_tree(1, adjacency, static_tree((3, 3, 3), (0.5, 0.3, 0.2), 20))
    assert isinstance(tree, DraftTree) and len(tree) == 20
    for parent in set(tree.parents):
        siblings = [t for t, p in zip(tree.tokens, tree.parents) if p == parent]
        assert len(siblings) == len(set(siblings))


def test_learns_from_plain_steps(tiny_factory):
    """With nothing seeded and probing off, every first step is a plain step; recycling
    observes those (observes_plain_steps) and starts drafting from what the target's
    top-k taught it. Output stays that of plain decoding."""
    import hasten

    model = tiny_factory("llama")
    prompt = [5, 9, 14, 5, 9]
    plain = hasten.generate(model, prompt, max_new_tokens=40, eos_token_id=[]).sequences
    result = hasten.generate(
        model,
        prompt,
        method="recycling",
        max_new_tokens=40,
        eos_token_id=[],
        method_options={"seed_from_prompt": False, "probe": 0},
        draft_budget=None,
    )
    assert torch.equal(result.sequences, plain)
    assert result.stats.drafted[0] == 0 and sum(result.stats.drafted) > 0
    assert sum(result.stats.accepted) > 0
