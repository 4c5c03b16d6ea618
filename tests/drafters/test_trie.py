"""Token trie: insertion, streaming windows, eviction, retrieval, persistence, isolation."""

import random

import pytest

import hasten
from hasten.drafters.trie import TokenTrie, TrieConfig, TrieDrafter, TrieFeeder, retrieve

from .recording import drafts_of, record


def occurrences(stream, path):
    """Brute force: how many times ``path`` occurs in ``stream``."""
    n = len(path)
    return sum(1 for i in range(len(stream) - n + 1) if stream[i : i + n] == list(path))


def all_paths(trie):
    out, stack = {}, [((), trie.root)]
    while stack:
        path, node = stack.pop()
        for token, child in node[2].items():
            out[path + (token,)] = child[0]
            stack.append((path + (token,), child))
    return out


def test_insert_counts_prefixes():
    trie = TokenTrie()
    trie.insert([5, 6])
    trie.insert([5, 7])
    assert trie.count([5]) == 2 and trie.count([5, 6]) == 1 and trie.count([5, 7]) == 1
    assert trie.count([6]) == 0 and trie.find([5, 9]) is None
    assert trie.size == 3


def test_feeder_counts_equal_brute_force_occurrences():
    rng = random.Random(0)
    stream = [rng.randrange(4) for _ in range(200)]
    trie = TokenTrie()
    feeder = TrieFeeder(trie, depth=3)
    for i in range(0, len(stream), 7):  # fed in uneven pieces
        feeder.feed(stream[i : i + 7])
    paths = all_paths(trie)
    assert paths  # something was inserted
    assert max(len(p) for p in paths) == 3
    for path, count in paths.items():
        assert count == occurrences(stream, path), path
    assert trie.size == len(paths)


def test_feeder_literal():
    trie = TokenTrie()
    TrieFeeder(trie, depth=2).feed([1, 2, 1, 2])
    assert all_paths(trie) == {(1,): 2, (1, 2): 2, (2,): 2, (2, 1): 1}


def test_eviction_bounds_size_and_keeps_frequent_paths_connected():
    trie = TokenTrie(capacity=50)
    feeder = TrieFeeder(trie, depth=4)
    rng = random.Random(1)
    for _ in range(30):
        feeder.feed([1, 2, 3, 4])  # frequent
        feeder.feed([rng.randrange(10, 1000) for _ in range(5)])  # mostly unique noise
    assert trie.size <= 50
    assert trie.evicted > 0
    assert trie.count([1, 2, 3, 4]) >= 20  # the frequent path survived every eviction
    paths = all_paths(trie)
    assert len(paths) == trie.size  # size bookkeeping matches the actual node count
    for path in paths:  # counts never grow down a path
        if len(path) > 1:
            assert paths[path] <= paths[path[:-1]]


def test_eviction_prefers_old_over_recent_at_equal_count():
    trie = TokenTrie(capacity=4)
    trie.insert([1])
    trie.insert([2])
    trie.insert([3])
    trie.insert([4])
    trie.insert([5])  # over capacity: keep 3 -> the two oldest count-1 nodes go
    assert trie.size == 3
    assert [t for t in (1, 2, 3, 4, 5) if trie.find([t])] == [3, 4, 5]


def test_best_paths_literal():
    trie = TokenTrie()
    for seq in ([1, 2, 3], [1, 2, 4], [1, 5]):
        trie.insert(seq)
    found = trie.best_paths(trie.find([1]), max_nodes=8, max_depth=6, min_prob=0.0)
    assert found == pytest.approx({(2,): 2 / 3, (2, 3): 1 / 3, (2, 4): 1 / 3, (5,): 1 / 3})
    smoothed = trie.best_paths(trie.find([1]), max_nodes=8, max_depth=6, min_prob=0.0, pseudo_count=1.0)
    assert smoothed == pytest.approx({(2,): 2 / 4, (2, 3): 1 / 4, (2, 4): 1 / 4, (5,): 1 / 4})
    assert list(found)[0] == (2,)
    assert trie.best_paths(trie.find([1]), max_nodes=2, max_depth=6, min_prob=0.0).keys() == {(2,), (2, 3)}
    assert trie.best_paths(trie.find([1]), max_nodes=8, max_depth=1, min_prob=0.0).keys() == {(2,), (5,)}
    assert trie.best_paths(trie.find([1]), max_nodes=8, max_depth=6, min_prob=0.5).keys() == {(2,)}


def test_retrieve_longest_context_then_shorter_discounted():
    trie = TokenTrie()
    TrieFeeder(trie, depth=8).feed([1, 2, 3, 9, 2, 4])
    scores = retrieve(trie, [7, 1, 2], TrieConfig(pseudo_count=0.0))
    assert scores == pytest.approx({(3,): 1.0, (3, 9): 1.0, (3, 9, 2): 1.0, (3, 9, 2, 4): 1.0, (4,): 0.25})
    only_longest = retrieve(trie, [7, 1, 2], TrieConfig(shorter_match_weight=0.0))
    assert (4,) not in only_longest
    # one pseudo-occurrence: [1, 2] seen once -> 1/2; [2] seen twice -> (4,) at 0.5 * 1/3
    smoothed = retrieve(trie, [7, 1, 2], TrieConfig(pseudo_count=1.0))
    assert smoothed == pytest.approx({(3,): 0.5, (3, 9): 0.5, (3, 9, 2): 0.5, (3, 9, 2, 4): 0.5, (4,): 1 / 6})


def test_save_load_round_trip_gives_same_drafts(tmp_path):
    rng = random.Random(2)
    trie = TokenTrie(capacity=500)
    feeder = TrieFeeder(trie, depth=6)
    for _ in range(40):
        feeder.feed([rng.randrange(30) for _ in range(20)])
    path = tmp_path / "trie.bin"
    trie.save(path)
    loaded = TokenTrie.load(path)
    assert all_paths(loaded) == all_paths(trie)
    assert loaded.size == trie.size and loaded.capacity == trie.capacity
    config = TrieConfig(max_nodes=10, min_prob=0.0)
    for _ in range(50):
        context = [rng.randrange(30) for _ in range(5)]
        assert retrieve(loaded, context, config) == retrieve(trie, context, config)
        assert list(retrieve(loaded, context, config)) == list(retrieve(trie, context, config))


def test_load_rejects_other_files(tmp_path):
    bad = tmp_path / "bad"
    bad.write_bytes(b"not a trie")
    with pytest.raises(ValueError):
        TokenTrie.load(bad)
    with pytest.raises(OSError):
        TokenTrie.load(tmp_path / "missing")


def test_config_validation():
    with pytest.raises(ValueError):
        TrieConfig(max_depth=8, branch_length=8)
    with pytest.raises(ValueError):
        TrieConfig(min_prob=1.5)
    with pytest.raises(ValueError):
        TrieConfig(trie=TokenTrie(), path="x")
    with pytest.raises(ValueError):
        TokenTrie(capacity=0)


def test_default_drafter_forgets_between_requests(tiny_factory):
    model = tiny_factory("llama")
    a, b = [5, 6, 7, 8, 5, 6, 7, 8, 5, 6], [9, 10, 5, 6, 11, 9, 10]
    drafter = TrieDrafter()
    hasten.generate(model, a, method=record(drafter), max_new_tokens=12)
    reused = drafts_of(model, b, drafter)
    fresh = drafts_of(model, b, TrieDrafter())
    assert reused == fresh


def test_shared_trie_learns_across_requests_without_changing_output(tiny_factory, tmp_path):
    model = tiny_factory("llama")
    a, b = [20, 21, 22, 23, 24], [30, 20, 21, 22]
    shared = TokenTrie()
    config = TrieConfig(trie=shared)
    out_a = hasten.generate(model, a, max_new_tokens=20).sequences[0].tolist()
    assert hasten.generate(model, a, method=TrieDrafter(config), max_new_tokens=20).sequences[0].tolist() == out_a
    assert shared.size > 0  # request A's output was learned
    plain_b = hasten.generate(model, b, max_new_tokens=20).sequences[0].tolist()
    fresh = drafts_of(model, b, TrieDrafter())
    trained = drafts_of(model, b, TrieDrafter(config))
    assert trained != fresh  # A changed B's drafts ...
    result = hasten.generate(model, b, method=TrieDrafter(TrieConfig(trie=shared, learn=False)), max_new_tokens=20)
    assert result.sequences[0].tolist() == plain_b  # ... never B's output
    shared.save(tmp_path / "t")
    reloaded = drafts_of(model, b, TrieDrafter(TrieConfig(path=str(tmp_path / "t"), learn=False)))
    original = drafts_of(model, b, TrieDrafter(TrieConfig(trie=shared, learn=False)))
    assert reloaded == original and reloaded != fresh


def test_corpus_warm_up(tiny_factory, tmp_path):
    from hasten.datastore import Datastore

    model = tiny_factory("llama")
    prompt = [40, 41, 42]
    reference = hasten.generate(model, prompt, max_new_tokens=16).sequences[0].tolist()
    Datastore.from_sequences([reference, [1, 2, 3]]).save(tmp_path / "store")
    drafter = TrieDrafter(TrieConfig(corpus=str(tmp_path / "store"), learn=False))
    assert drafter.shared.count(reference[:3]) == 1
    result = hasten.generate(model, prompt, method=drafter, max_new_tokens=16)
    assert result.sequences[0].tolist() == reference
    assert sum(result.stats.accepted) >= 10  # the corpus held the exact continuation
