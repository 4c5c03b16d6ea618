"""The composite drafter: merged trees hold every source's candidates (literal cases),
calibration per source on hand-computed acceptances, the cross-request pool's memory bound
and persistence, next-next-token retrieval, predicted outputs, and losslessness."""

from __future__ import annotations

import random
import tracemalloc

import pytest
import torch
from conftest import VOCAB

import hasten
from hasten.drafters import DraftRequest, VerifiedStep, build_drafter
from hasten.drafters._composite_state import (
    CalibrationStore,
    CrossRequestPool,
    SourceCalibration,
    clear_process_pools,
)
from hasten.drafters.composite import (
    CompositeConfig,
    CompositeDrafter,
    chain_candidates,
    merge_candidates,
    retrieval_bin,
    tree_candidates,
)
from hasten.sampling import SamplingParams
from hasten.tree import DraftTree


def _request(prompt):
    return DraftRequest(list(prompt), None, SamplingParams(), torch.Generator(), VOCAB)


def _paths(tree: DraftTree | None) -> list[tuple[int, ...]]:
    if tree is None:
        return []
    paths: list[tuple[int, ...]] = []
    for token, parent in zip(tree.tokens, tree.parents):
        paths.append((paths[parent] if parent >= 0 else ()) + (token,))
    return paths


def _drafter(**options) -> CompositeDrafter:
    options.setdefault("calibration_cache", None)
    options.setdefault("min_prob", 0.0)
    options.setdefault("max_nodes", 500)
    return build_drafter("composite", **options)


@pytest.fixture(autouse=True)
def _fresh_process_pools():
    clear_process_pools()
    yield
    clear_process_pools()


# --- merging ---------------------------------------------------------------------------


def test_merge_literal_shares_prefixes_and_takes_the_best_source():
    candidates = [((5,), "a", 0), ((5, 6), "a", 0), ((5,), "b", 0), ((7,), "b", 0)]
    rates = {"a": 0.5, "b": 0.6}
    tree, sources = merge_candidates(candidates, lambda s, b: rates[s], 10, 0.0)
    # q: (5,) best of a, b = 0.6; (7,) 0.6; siblings sum to 1.2 -> 0.5 each; (5, 6) 0.5 * 0.5
    assert tree.tokens == (5, 7, 6) and tree.parents == (-1, -1, 0)
    assert tree.node_scores == pytest.approx((0.5, 0.5, 0.25))
    assert sources[(5,)] == {"a": 0, "b": 0} and sources[(7,)] == {"b": 0}


def test_merge_calibrates_agreeing_sources_as_their_own_evidence():
    candidates = [((5,), "a", 0), ((5,), "b", 1), ((5,), "c", 0), ((8,), "a", 0)]
    rates = {("a", 0): 0.2, ("b", 1): 0.3, ("c", 0): 0.1, ("agree", 5): 0.7}  # 3 sources, best 0.3 -> bin 5
    tree, sources = merge_candidates(candidates, lambda s, b: rates[(s, b)], 10, 0.0, agreement="agree")
    assert sources[(5,)] == {"a": 0, "b": 1, "c": 0, "agree": 5} and sources[(8,)] == {"a": 0}
    assert tree.tokens == (5, 8) and tree.node_scores == pytest.approx((0.7, 0.2))  # sum 0.9: not scaled


def test_chain_and_tree_candidates_literal():
    assert chain_candidates([5, 6], "s", lambda d: d) == [((5,), "s", 1), ((5, 6), "s", 2)]
    unscored = DraftTree((5, 6, 7), (-1, 0, -1))
    assert tree_candidates(unscored, "r") == [((5,), "r", 8), ((5, 6), "r", 9), ((7,), "r", 12)]
    scored = DraftTree((5, 6), (-1, 0), node_scores=(0.5, 0.25))  # conditional 0.5 and 0.5
    assert tree_candidates(scored, "s") == [((5,), "s", 4), ((5, 6), "s", 4)]
    assert retrieval_bin(1, 1) == 0 and retrieval_bin(8, 3) == 14 and retrieval_bin(40, 9) == 23


def test_merged_tree_contains_every_source_candidates():
    """prompt 1 2 3 4 1 2: the automaton matches "1 2" (continuation 3 4 1 2), the pool's
    document 2 3 9 matches "2" (continuation 3 9), recycling's prompt bigrams give 3 4 1 2,
    jacobi's pool n-gram (2 3 4 1) gives 3 4 1 plus its random window."""
    prompt = [1, 2, 3, 4, 1, 2]
    pool = CrossRequestPool(100)
    pool.add([2, 3, 9])
    drafter = _drafter(sources="sam,pool,recycling,jacobi", pool=pool)
    drafter.begin(_request(prompt))
    tree = drafter.propose(prompt, 4)
    got = _paths(tree)
    assert len(got) == len(set(got))  # shared prefixes are one node
    sam = {(3,), (3, 4), (3, 4, 1), (3, 4, 1, 2)}
    pool_paths = {(3,), (3, 9)}
    recycling = {(3,), (3, 4), (3, 4, 1), (3, 4, 1, 2)}
    jacobi_alone = build_drafter("jacobi")
    jacobi_alone.begin(_request(prompt))
    jacobi = set(_paths(jacobi_alone.propose(prompt, 4)))
    assert {(3,), (3, 4), (3, 4, 1)} <= jacobi
    assert sam | pool_paths | recycling | jacobi == set(got)


def test_each_source_alone_is_a_subset_of_the_merge():
    rng = random.Random(0)
    for trial in range(5):
        prompt = [rng.randrange(3, 12) for _ in range(40)]
        full = _drafter(sources="sam,suffix,recycling,jacobi,trie,prompt_lookup")
        full.begin(_request(prompt))
        merged = set(_paths(full.propose(prompt, 5)))
        for name in ("suffix", "recycling", "jacobi", "trie", "prompt_lookup"):
            alone = build_drafter(name)
            alone.begin(_request(prompt))
            tree = alone.propose(prompt, 5)
            assert set(_paths(tree and tree.truncated(5))) <= merged, (trial, name)  # the engine cuts at 5 too


# --- calibration -----------------------------------------------------------------------


def test_source_calibration_hand_computed():
    calibration = SourceCalibration({"a": (0.5, 0.2)}, weight=2.0, decay=0.5)
    calibration.observe("a", 0, True)
    calibration.observe("a", 0, True)
    assert calibration.rate("a", 0) == pytest.approx((2 + 0.5 * 2) / (2 + 2))
    calibration.step()  # counts halve
    calibration.observe("a", 0, False)
    assert calibration.rate("a", 0) == pytest.approx((1 + 1.0) / (2 + 2))
    assert calibration.rate("a", 1) == pytest.approx(0.2)
    assert calibration.totals["a"][0] == [2.0, 3.0]  # undecayed, for the store
    warm = SourceCalibration({"a": (0.5, 0.2)}, weight=2.0, history={"a": {1: (3.0, 4.0)}})
    assert warm.rate("a", 1) == pytest.approx((3 + 0.2 * 2) / (4 + 2))


def _verify_literal(drafter, prompt, accepted_paths, next_token):
    """Propose, then report the step with the given accepted path (no budget cut)."""
    tree = drafter.propose(prompt, 4)
    paths = _paths(tree)
    accepted = [paths.index(p) for p in accepted_paths]
    tokens = prompt + list(accepted_paths[-1] if accepted_paths else ()) + [next_token]
    scores = torch.zeros(len(tree) + 1, VOCAB)
    drafter.on_accept(VerifiedStep(tokens, tree, accepted, next_token, None, scores, len(prompt) - 1))
    return tree, paths


def test_calibration_per_source_hand_computed():
    """sam matched "1 2" (L = 2, length bucket 1: prior 0.4), the pool matched "2" (L = 1,
    bucket 0: prior 0.3); both propose 3 (agreement of 2, best 0.4: bin 1, prior 0.55).
    Accepted: 3, 3 4; rejected: 3 4 1 (sam) and 3 9 (pool)."""
    prompt = [1, 2, 3, 4, 1, 2]
    pool = CrossRequestPool(100)
    pool.add([2, 3, 9])
    drafter = _drafter(sources="sam,pool", pool=pool, prior_weight=2.0, decay=1.0)
    drafter.begin(_request(prompt))
    tree, paths = _verify_literal(drafter, prompt, [(3,), (3, 4)], 7)
    scores = dict(zip(paths, tree.node_scores))
    assert scores[(3,)] == pytest.approx(0.55)  # the agreement prior
    assert scores[(3, 9)] == pytest.approx(0.55 * 0.3)
    assert scores[(3, 4, 1, 2)] == pytest.approx(0.55 * 0.4**3)
    rate = drafter.calibration.rate
    # sam bins: L bucket 1 x depth buckets 0, 1, 2, 2 -> 4, 5, 6, 6
    assert rate("sam", 4) == pytest.approx((1 + 0.4 * 2) / (1 + 2))
    assert rate("sam", 5) == pytest.approx((1 + 0.4 * 2) / (1 + 2))
    assert rate("sam", 6) == pytest.approx((0 + 0.4 * 2) / (1 + 2))  # 3 4 1 rejected; 3 4 1 2 not counted
    assert rate("pool", 0) == pytest.approx((1 + 0.3 * 2) / (1 + 2))
    assert rate("pool", 1) == pytest.approx((0 + 0.3 * 2) / (1 + 2))
    assert rate("pool", 2) == pytest.approx(0.3)  # never observed: its prior (L bucket 0)
    assert rate("agree", 1) == pytest.approx((1 + 0.55 * 2) / (1 + 2))
    stats = drafter.stats()
    assert stats["sam"]["accepted"] == 2 and stats["pool"]["accepted"] == 1


def test_calibration_is_stored_per_model_and_warms_the_next_request(tmp_path):
    path = tmp_path / "calibration.json"
    prompt = [1, 2, 3, 4, 1, 2]
    first = _drafter(sources="sam", pool=None, calibration_cache=str(path), prior_weight=2.0, decay=1.0)
    first.begin(_request(prompt))
    _verify_literal(first, prompt, [(3,), (3, 4)], 7)
    first.stats()  # end of request: stored
    store = CalibrationStore(path)
    assert store.history("NoneType||V96")["sam"][4] == (1.0, 1.0)
    second = _drafter(sources="sam", pool=None, calibration_cache=str(path), prior_weight=2.0)
    second.begin(_request(prompt))
    assert second.calibration.rate("sam", 4) == pytest.approx((1 + 0.4 * 2) / (1 + 2))  # prior from history
    assert second.calibration.rate("sam", 0) == pytest.approx(0.3)
    path.write_text("not json")
    with pytest.raises(ValueError, match="not a composite calibration file"):
        CalibrationStore(path)


def test_default_calibration_file_sits_beside_the_skip_sets(tmp_path, monkeypatch):
    from hasten.drafters import _skip_search
    from hasten.drafters._composite_state import default_calibration_path

    monkeypatch.setattr(_skip_search, "default_skip_cache_path", lambda: tmp_path / "x" / "skip_sets.json")
    assert default_calibration_path() == tmp_path / "x" / "composite_calibration.json"


# --- pool ------------------------------------------------------------------------------


def test_pool_literal_eviction():
    pool = CrossRequestPool(max_tokens=8)
    pool.add([1, 2, 3])
    pool.add([4, 5, 6])
    assert list(pool.documents) == [[1, 2, 3], [4, 5, 6]] and pool.num_tokens == 8
    pool.add([7])  # over the bound: the oldest go until the pool is at most 3/4 full (6 tokens)
    assert list(pool.documents) == [[4, 5, 6], [7]] and pool.num_tokens == 6


def test_pool_memory_bound_holds():
    rng = random.Random(0)
    bound = 300
    pool = CrossRequestPool(max_tokens=bound)
    for _ in range(200):
        doc = [rng.randrange(50) for _ in range(rng.choice([1, 5, 40, 120, 700]))]
        pool.add(doc)
        assert pool.num_tokens <= bound
        assert pool.automaton.num_states <= 2 * bound
        assert pool.num_tokens == sum(len(d) + 1 for d in pool.documents)
        assert list(pool.documents)[-1] == doc[-(bound - 1) :]  # the newest output is always kept
    assert pool.dropped > 0


def test_pool_bytes_per_token_bound():
    """The documented bound: about 0.5 KB per pooled token; assert under 1 KB with slack."""
    rng = random.Random(1)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        pool = CrossRequestPool(max_tokens=20_000)
        for _ in range(400):
            pool.add([rng.randrange(2000) for _ in range(100)])
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert pool.num_tokens <= 20_000
    assert used / 20_000 < 1024, f"{used / 20_000:.0f} bytes per token"


def test_pool_save_and_load(tmp_path):
    path = tmp_path / "pool.json"
    pool = CrossRequestPool(50, path)
    pool.add([1, 2, 3])
    pool.add([4, 5])
    pool.save()
    again = CrossRequestPool(50, path)
    assert list(again.documents) == [[1, 2, 3], [4, 5]]
    assert again.automaton.tokens == pool.automaton.tokens
    path.write_text('{"format": 9}')
    with pytest.raises(ValueError, match="not a draft pool"):
        CrossRequestPool(50, path)


def test_pool_never_changes_outputs_and_helps_a_repeated_request(tiny_factory):
    model = tiny_factory("llama")
    prompt = [5, 17, 33, 8, 9, 40]
    plain = hasten.generate(model, prompt, max_new_tokens=24).sequences[0].tolist()
    junk = CrossRequestPool(500)
    rng = random.Random(0)
    for _ in range(20):
        junk.add([rng.randrange(3, VOCAB) for _ in range(20)])
    for pool in (junk, "process"):
        for _ in range(2):  # the second request finds the first one's output in the pool
            opts = {"pool": pool, "calibration_cache": None}
            result = hasten.generate(model, prompt, method="composite", method_options=opts, max_new_tokens=24)
            assert result.sequences[0].tolist() == plain
    assert result.stats.drafter["pool"]["accepted"] >= 10
    assert result.stats.drafter["pool_tokens"] == 2 * 25


def test_pool_file_persists_outputs_across_processes(tiny_factory, tmp_path):
    model = tiny_factory("llama")
    path = tmp_path / "pool.json"
    prompt = [5, 17, 33, 8, 9, 40]
    opts = {"pool": str(path), "calibration_cache": None}
    hasten.generate(model, prompt, method="composite", method_options=opts, max_new_tokens=12)
    assert path.is_file()
    clear_process_pools()  # a new process: the pool is read back from the file
    result = hasten.generate(model, prompt, method="composite", method_options=opts, max_new_tokens=12)
    assert result.stats.drafter["pool"]["accepted"] >= 5


# --- next-next-token retrieval ---------------------------------------------------------


def test_next_next_token_retrieval_literal():
    """Root 9 never occurred before: the runner-ups at the last verified row (6, then 7)
    are drafted as the token after 9, each followed by what followed it in the request."""
    prompt = [5, 6, 7, 8]
    drafter = _drafter(sources="sam,nnt", pool=None, nnt_candidates=2)
    drafter.begin(_request(prompt))
    assert drafter.propose(prompt, 4) is None  # no match, no runner-ups yet
    tokens = prompt + [9]
    scores = torch.full((1, VOCAB), -5.0)
    scores[0, 9], scores[0, 6], scores[0, 7] = 3.0, 2.0, 1.0
    drafter.on_accept(VerifiedStep(tokens, DraftTree.chain([]), [], 9, [9], scores, 3))
    got = set(_paths(drafter.propose(tokens, 4)))
    assert got == {(6,), (6, 7), (6, 7, 8), (6, 7, 8, 9), (7,), (7, 8), (7, 8, 9), (7, 8, 9, 8)}


def test_next_next_token_retrieval_is_off_when_the_root_matches():
    prompt = [5, 6, 7, 8, 6]
    drafter = _drafter(sources="nnt,sam", pool=None)
    drafter.begin(_request(prompt))
    scores = torch.zeros(1, VOCAB)
    scores[0, 6], scores[0, 30] = 3.0, 2.0
    drafter.on_accept(VerifiedStep(prompt, DraftTree.chain([]), [], 6, [6], scores, 3))
    got = set(_paths(drafter.propose(prompt, 4)))
    assert got == {(7,), (7, 8), (7, 8, 6), (7, 8, 6, 7)}  # only the automaton's match; no 30


# --- predicted outputs, losslessness, configuration ------------------------------------


def test_prediction_source_drafts_the_expected_output(tiny_factory):
    model = tiny_factory("qwen2")
    prompt = [40, 41, 42, 11]
    plain = hasten.generate(model, prompt, max_new_tokens=30, eos_token_id=[]).sequences[0].tolist()
    predicted = plain[len(prompt) :]
    predicted[12] = (predicted[12] + 1) % VOCAB  # one wrong token: the drafter re-aligns
    opts = {"sources": "", "prediction": predicted, "calibration_cache": None, "pool": None}
    result = hasten.generate(model, prompt, method="composite", method_options=opts, max_new_tokens=30, eos_token_id=[])
    assert result.sequences[0].tolist() == plain
    assert sum(result.stats.accepted) >= 20
    assert len(result.stats.committed) <= 10


def test_composite_greedy_equals_plain_without_a_budget(tiny_factory):
    model = tiny_factory("llama")
    rng = random.Random(3)
    for _ in range(4):
        prompt = [rng.randrange(3, 20) for _ in range(30)]
        plain = hasten.generate(model, prompt, max_new_tokens=20).sequences[0].tolist()
        out = hasten.generate(
            model, prompt, method="composite", method_options={"min_prob": 0.0}, max_new_tokens=20, draft_budget=None
        )
        assert out.sequences[0].tolist() == plain
        assert sum(out.stats.drafted) > 0


@pytest.mark.parametrize(
    "options,message",
    [
        ({"sources": "sam,nope"}, "unknown method"),
        ({"sources": "draft_model"}, "draft-free, model-free"),
        ({"sources": "layer_skip"}, "draft-free, model-free"),
        ({"sources": "composite"}, "own source"),
        ({"sources": "sam,sam"}, "duplicate"),
        ({"sources": ""}, "at least one source"),
        ({"sources": "prediction"}, "needs prediction"),
        ({"source_options": {"trie": {}}}, "not in use"),
        ({"max_nodes": 0}, "max_nodes"),
        ({"min_prob": 2.0}, "min_prob"),
        ({"pool": 3}, "pool must be"),
        ({"calibration_cache": 3}, "calibration_cache must be"),
    ],
)
def test_bad_configs_raise(options, message):
    with pytest.raises(ValueError, match=message):
        CompositeConfig(**options)


def test_sources_parse_from_a_string_and_options_reach_the_drafter():
    config = CompositeConfig(sources="sam, recycling", source_options={"recycling": {"max_nodes": 2}})
    assert config.sources == ("sam", "recycling")
    drafter = CompositeDrafter(config)
    assert drafter.subs["recycling"].config.max_nodes == 2


@pytest.mark.parametrize("seed", range(3))
def test_sampled_output_equals_plain_sampling(tiny_factory, seed):
    """Draft-free: position-keyed draws give plain sampling's tokens for the same seed."""
    model = tiny_factory("llama")
    prompt = [5, 6, 7, 8, 5, 6, 7, 8, 5, 6]
    kw = {"max_new_tokens": 24, "do_sample": True, "temperature": 0.7, "seed": seed, "eos_token_id": []}
    plain = hasten.generate(model, prompt, **kw).sequences
    opts = {"calibration_cache": None, "min_prob": 0.0}
    comp = hasten.generate(model, prompt, method="composite", method_options=opts, draft_budget=None, **kw)
    assert torch.equal(plain, comp.sequences)
    assert sum(comp.stats.drafted) > 0
