"""Tree layout and acceptance rules on literal inputs, against brute-force references."""

import pytest
import torch

from hasten.tree import DraftTree, tree_layout
from hasten.verify import greedy_accept, recursive_rejection_walk, speculative_sample_accept, walk_tree

TREES = {
    "one-node": (-1,),
    "chain": (-1, 0, 1, 2),
    "wide-3x4": None,  # filled below: 3 children per node, depth 4, pruned to 3 per level
    "sparse": (-1, -1, 0, 2, 2, 1, -1),
    "shared-prefix": (-1, 0, 0, 1, 1, 2),
}


def _wide(width=3, depth=4):
    parents, frontier = [], [-1]
    for _ in range(depth):
        nxt = []
        for p in frontier:
            for _ in range(width):
                parents.append(p)
                nxt.append(len(parents) - 1)
        frontier = nxt[:width]
    return tuple(parents)


TREES["wide-3x4"] = _wide()


def brute_force(parents):
    """Ancestor sets by walking parent pointers; depths by counting steps to the root."""
    n = len(parents) + 1
    visible = torch.zeros(n, n, dtype=torch.bool)
    depths = []
    for row in range(n):
        node, depth = row - 1, 0
        visible[row, row] = True
        visible[row, 0] = True
        while node >= 0:
            visible[row, node + 1] = True
            node = parents[node]
            depth += 1
        depths.append(depth)
    return visible, tuple(depths)


@pytest.mark.parametrize("name", list(TREES))
def test_layout_matches_brute_force(name):
    parents = TREES[name]
    layout = tree_layout(parents, tuple(range(100, 100 + len(parents))))
    visible, depths = brute_force(parents)
    assert torch.equal(layout.visible, visible)
    assert layout.depths == depths
    assert torch.equal(layout.node_ancestors, visible[1:, 1:])
    for node, parent in enumerate(parents):
        assert layout.children[parent + 1][100 + node] == node


def test_draft_tree_validation_and_truncation():
    with pytest.raises(ValueError):
        DraftTree((1, 2), (-1,))
    with pytest.raises(ValueError):
        DraftTree((1, 2), (1, -1))  # parent after child
    with pytest.raises(ValueError):
        DraftTree((1, 2), (-1, -1), torch.ones(3, 4) / 4)  # one probs row per node
    tree = DraftTree((10, 11, 12, 13), (-1, 0, 1, -1))
    cut = tree.truncated(max_depth=2)
    assert cut.tokens == (10, 11, 13) and cut.parents == (-1, 0, -1)
    assert DraftTree.chain([4, 5]).is_chain and not tree.is_chain


def test_walk_tree_picks_matching_path():
    # root children: 7 (node0), 8 (node3); node0 children: 9 (node1), 4 (node2)
    tree = DraftTree((7, 9, 4, 8), (-1, 0, 0, -1))
    layout = tree_layout(tree.parents, tree.tokens)
    # row tokens: root->7, node0->4, node1->?, node2->6, node3->?
    assert walk_tree(layout.children, [7, 4, 0, 6, 0]) == ([0, 2], 6)
    assert walk_tree(layout.children, [8, 0, 0, 0, 5]) == ([3], 5)
    assert walk_tree(layout.children, [1, 0, 0, 0, 0]) == ([], 1)


def test_greedy_accept_chain():
    assert greedy_accept([3, 5, 8], [3, 5, 2, 6]) == ([0, 1], 2)
    assert greedy_accept([3, 5, 8], [3, 5, 8, 6]) == ([0, 1, 2], 6)
    assert greedy_accept([], [4]) == ([], 4)


def test_speculative_sampling_identity_accepts_all():
    probs = torch.softmax(torch.randn(4, 6, dtype=torch.float64), -1)
    tokens = torch.tensor([1, 2, 3])
    path, _ = speculative_sample_accept(tokens, probs[:3], probs, torch.Generator().manual_seed(0))
    assert path == [0, 1, 2]


def test_speculative_sampling_zero_target_prob_rejects():
    target = torch.tensor([[0.0, 1.0, 0.0], [0.5, 0.5, 0.0]], dtype=torch.float64)
    draft = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)
    path, nxt = speculative_sample_accept(torch.tensor([0]), draft, target, torch.Generator().manual_seed(0))
    assert path == [] and nxt == 1  # residual is all on token 1


def test_speculative_sampling_single_step_distribution_exact():
    """One drafted token: P(first emitted token = x) must equal target_probs[0][x]."""
    gen = torch.Generator().manual_seed(0)
    target = torch.tensor([[0.5, 0.3, 0.2], [1 / 3, 1 / 3, 1 / 3]], dtype=torch.float64)
    draft = torch.tensor([[0.1, 0.2, 0.7]], dtype=torch.float64)
    counts = torch.zeros(3)
    n = 20000
    for _ in range(n):
        x = int(torch.multinomial(draft[0], 1, generator=gen))
        path, nxt = speculative_sample_accept(torch.tensor([x]), draft, target, gen)
        counts[x if path else nxt] += 1
    assert torch.allclose(counts / n, target[0].float(), atol=0.015)


def test_recursive_rejection_siblings_without_replacement_exact():
    """Two siblings drawn without replacement from q: P(first emitted token = x) = p(x)."""
    gen = torch.Generator().manual_seed(1)
    p = torch.tensor([0.5, 0.3, 0.15, 0.05], dtype=torch.float64)
    q = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    target = torch.stack([p, torch.full((4,), 0.25, dtype=torch.float64), torch.full((4,), 0.25, dtype=torch.float64)])
    counts = torch.zeros(4)
    n = 20000
    for _ in range(n):
        a, b = torch.multinomial(q, 2, replacement=False, generator=gen).tolist()
        tree = DraftTree((a, b), (-1, -1), torch.stack([q, q]))
        layout = tree_layout(tree.parents, tree.tokens)
        path, nxt = recursive_rejection_walk(layout.children, tree.tokens, tree.draft_probs, target, gen)
        counts[tree.tokens[path[0]] if path else nxt] += 1
    assert torch.allclose(counts / n, p.float(), atol=0.012)


def test_recursive_rejection_accepts_identical_draft():
    p = torch.tensor([0.2, 0.8], dtype=torch.float64)
    tree = DraftTree((1, 0), (-1, 0), torch.stack([p, p]))
    layout = tree_layout(tree.parents, tree.tokens)
    target = torch.stack([p, p, p])
    for seed in range(20):
        path, _ = recursive_rejection_walk(
            layout.children, tree.tokens, tree.draft_probs, target, torch.Generator().manual_seed(seed)
        )
        assert path == [0, 1]
