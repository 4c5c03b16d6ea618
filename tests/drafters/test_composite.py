"""composite: literal merges, per-source calibration by hand, sampled identity, llama.cpp-free."""

import pytest
import torch

import hasten
from hasten.drafters.composite import CompositeConfig, CompositeDrafter, SourceCalibration, merge_drafts
from hasten.tree import DraftTree


def paths_of(tree: DraftTree) -> set[tuple[int, ...]]:
    paths: list[tuple[int, ...]] = []
    for token, parent in zip(tree.tokens, tree.parents):
        paths.append((paths[parent] if parent >= 0 else ()) + (token,))
    return set(paths)


def test_merged_tree_holds_every_sources_candidates_once():
    sam = DraftTree((5, 6, 7), (-1, 0, 1))
    suffix = DraftTree((5, 8, 9), (-1, 0, -1), node_scores=(0.8, 0.5, 0.2))
    tree, proposers = merge_drafts({"sam": sam, "suffix": suffix}, SourceCalibration(), max_nodes=10)
    assert paths_of(tree) == {(5,), (5, 6), (5, 6, 7), (5, 8), (9,)}
    assert len(tree.tokens) == 5  # the shared first token 5 is one node
    assert set(proposers[(5,)]) == {"sam", "suffix"}
    assert set(proposers[(9,)]) == {"suffix"}


def test_max_nodes_keeps_the_most_probable_paths():
    sam = DraftTree((1, 2, 3), (-1, 0, 1))
    tree, _ = merge_drafts({"sam": sam}, SourceCalibration(), max_nodes=2)
    assert paths_of(tree) == {(1,), (1, 2)}


def test_calibration_by_hand():
    # 4 bins, prior weight 1: bin of 0.9 is 3 (centre 0.875); 2 verified, 2 accepted -> (2 + 0.875) / 3
    cal = SourceCalibration(bins=4, prior_weight=1.0)
    cal.observe("sam", 0.9, True)
    cal.observe("sam", 0.95, True)
    cal.observe("suffix", 0.9, False)
    assert cal.probability("sam", 0.9) == pytest.approx((2 + 0.875) / 3)
    assert cal.probability("suffix", 0.9) == pytest.approx(0.875 / 2)
    assert cal.probability("recycling", 0.1) == pytest.approx(0.125)


def test_on_accept_counts_only_verified_nodes_per_source():
    """Tree 5 -> 6 and 9: accepted path [5]; node 6 was verified (parent accepted) and
    rejected; 9 verified and rejected. sam proposed 5, 6; suffix proposed 5, 9."""
    drafter = CompositeDrafter(CompositeConfig(sources=("sam", "suffix")))
    sam = DraftTree((5, 6), (-1, 0))
    suffix = DraftTree((5, 9), (-1, -1), node_scores=(0.9, 0.3))
    tree, drafter.proposers = merge_drafts({"sam": sam, "suffix": suffix}, drafter.calibration, 10)
    index = {
        p: i
        for i, p in enumerate(
            sorted(paths_of(tree), key=lambda p: [tree.tokens[j] for j in range(len(tree.tokens))].index(p[-1]))
        )
    }
    five = tree.tokens.index(5)
    step = hasten.drafters.VerifiedStep([1, 5, 7], tree, [five], 7, None, torch.zeros(len(tree.tokens) + 1, 12))
    drafter.on_accept(step)
    counts = drafter.calibration.counts
    # sam: node 5 (first chain node, score 1.0 -> last bin) accepted, node 6 (score 1/2) rejected
    assert counts[("sam", 7)] == [1, 1] and counts[("sam", 4)] == [0, 1]
    # suffix: 5 (score 0.9 -> bin 7) accepted, 9 (0.3 -> bin 2) rejected
    assert counts[("suffix", 7)] == [1, 1] and counts[("suffix", 2)] == [0, 1]
    assert index  # the tree was built


def test_user_draft_source_and_bad_configs():
    with pytest.raises(ValueError, match="draft_ids"):
        CompositeConfig(sources=("draft",))
    with pytest.raises(ValueError, match="model-free"):
        CompositeConfig(sources=("sam", "draft_model"))
    with pytest.raises(ValueError):
        CompositeConfig(sources=())
    drafter = CompositeDrafter(CompositeConfig(sources=("draft",), draft_ids=(4, 5, 6, 7)))
    assert drafter._draft_text_chain([1, 4, 5], 3) == [6, 7]


@pytest.mark.parametrize("seed", range(3))
def test_sampled_output_equals_plain_sampling(tiny_factory, seed):
    """Draft-free: position-keyed draws give plain sampling's tokens for the same seed."""
    model = tiny_factory("llama")
    prompt = [5, 6, 7, 8, 5, 6, 7, 8, 5, 6]
    kw = {"max_new_tokens": 24, "do_sample": True, "temperature": 0.7, "seed": seed, "eos_token_id": []}
    plain = hasten.generate(model, prompt, **kw).sequences
    comp = hasten.generate(model, prompt, method="composite", **kw).sequences
    assert torch.equal(plain, comp)


def test_a_user_draft_is_accepted_when_it_is_the_answer(tiny_factory):
    model = tiny_factory("llama")
    prompt = [5, 6, 7, 8]
    plain = hasten.generate(model, prompt, max_new_tokens=16, eos_token_id=[])
    answer = tuple(plain.sequences[0, len(prompt) :].tolist())
    out = hasten.generate(
        model,
        prompt,
        method="composite",
        method_options={"sources": ("draft",), "draft_ids": answer},
        max_new_tokens=16,
        eos_token_id=[],
        draft_budget=None,
    )
    assert torch.equal(out.sequences, plain.sequences)
    assert out.stats.forward_passes < plain.stats.forward_passes
