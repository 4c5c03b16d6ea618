"""Draft trees from scored paths and from candidate sequences, on literal inputs."""

from hasten.drafters._tree_build import merge_max, tree_from_scores, tree_from_sequences


def test_scores_best_first_with_parents_before_children():
    tree = tree_from_scores({(5,): 0.9, (5, 6): 0.6, (7,): 0.3, (5, 8): 0.2}, max_nodes=3)
    assert tree.tokens == (5, 6, 7)
    assert tree.parents == (-1, 0, -1)
    assert tree.node_scores == (0.9, 0.6, 0.3)


def test_scores_child_capped_by_parent_and_orphans_dropped():
    # (3, 4) claims more than its parent: it is capped to 0.2 and ranks after (9,) at 0.5;
    # (8, 1) has no (8,) parent and is dropped
    tree = tree_from_scores({(3,): 0.2, (3, 4): 0.9, (9,): 0.5, (8, 1): 0.95}, max_nodes=10)
    assert tree.tokens == (9, 3, 4)
    assert tree.parents == (-1, -1, 1)
    assert tree.node_scores == (0.5, 0.2, 0.2)


def test_scores_min_score_and_empty():
    assert tree_from_scores({(1,): 0.05}, max_nodes=4, min_score=0.1) is None
    assert tree_from_scores({}, max_nodes=4) is None
    tree = tree_from_scores({(1,): 0.5, (1, 2): 0.05, (3,): 0.5}, max_nodes=4, min_score=0.1)
    assert tree.tokens == (1, 3)  # tie at 0.5 broken by token order


def test_sequences_share_prefixes_in_order():
    tree = tree_from_sequences([[5, 6, 7], [5, 8], [9]])
    assert tree.tokens == (5, 6, 7, 8, 9)
    assert tree.parents == (-1, 0, 1, 0, -1)
    same = tree_from_sequences([(1, 2), (1, 2), (1, 2, 3)])
    assert same.tokens == (1, 2, 3) and same.parents == (-1, 0, 1)
    assert tree_from_sequences([[], ()]) is None


def test_merge_max_keeps_larger_weighted_score():
    into = {(5,): 0.5}
    merge_max(into, {(5,): 0.8, (6,): 0.4}, weight=0.5)
    assert into == {(5,): 0.5, (6,): 0.2}
    merge_max(into, {(5,): 0.8})
    assert into[(5,)] == 0.8
