"""KV cache rollback and tree-path compaction against a plain forward over the kept tokens."""

import torch

from hasten import kv


def _cache_for(model, tokens):
    cache = kv.new_cache(model)
    model(input_ids=torch.tensor([tokens]), use_cache=True, **{kv.cache_kwarg(model): cache})
    return cache


def _assert_same(a, b):
    assert kv.cache_length(a) == kv.cache_length(b)
    for la, lb in zip(a.layers, b.layers):
        assert torch.allclose(la.keys, lb.keys, atol=1e-12) and torch.allclose(la.values, lb.values, atol=1e-12)


def test_rollback_equals_shorter_prefill(tiny_model):
    tokens = list(range(5, 25))
    cache = _cache_for(tiny_model, tokens)
    kv.rollback(cache, 12)
    _assert_same(cache, _cache_for(tiny_model, tokens[:12]))


def test_compaction_of_non_contiguous_tree_path(tiny_model):
    """Verify a tree, keep a path that skips siblings, compare with a plain forward."""
    from hasten.targets import TransformersTarget
    from hasten.tree import DraftTree

    committed = [3, 9, 14, 15, 26, 40]
    tree = DraftTree((50, 51, 52, 53, 54), (-1, -1, 1, 1, 3))  # path: node1 -> node3 -> node4
    target = TransformersTarget(tiny_model)
    cache = _cache_for(tiny_model, committed[:-1])
    start = kv.cache_length(cache)
    positions, mask = target.tree_inputs(start, tree)
    with torch.inference_mode():
        target.forward(cache, [committed[-1], *tree.tokens], position_ids=positions, mask=mask)
    kv.keep_rows(cache, start, [0, 2, 4, 5])
    _assert_same(cache, _cache_for(tiny_model, committed + [51, 53, 54]))


def test_tree_logits_equal_sequential_logits(tiny_model):
    """Every tree row scores exactly what a plain forward over its root path scores."""
    from hasten.targets import TransformersTarget
    from hasten.tree import DraftTree

    committed = [7, 8, 9, 10]
    tree = DraftTree((20, 21, 22, 23), (-1, 0, -1, 2))
    target = TransformersTarget(tiny_model)
    cache = _cache_for(tiny_model, committed[:-1])
    positions, mask = target.tree_inputs(kv.cache_length(cache), tree)
    with torch.inference_mode():
        logits = target.forward(cache, [committed[-1], *tree.tokens], position_ids=positions, mask=mask)
        paths = [[], [20], [20, 21], [22], [22, 23]]
        for row, path in enumerate(paths):
            ref = tiny_model(input_ids=torch.tensor([committed + path])).logits[0, -1]
            assert torch.allclose(logits[row], ref, atol=1e-10), f"row {row}"


def test_preallocated_cache_matches_dynamic(tiny_model):
    """Preallocated layers: same logits, same rollback and compaction results as the
    dynamic cache, including growth past the initial capacity."""
    from hasten.targets import TransformersTarget
    from hasten.tree import DraftTree

    tokens = [(7 * i) % 90 + 3 for i in range(300)]  # > 256: forces a capacity doubling
    dynamic, static = kv.new_cache(tiny_model), kv.new_cache(tiny_model, preallocate=True)
    assert any(isinstance(layer, kv.PreallocatedLayer) for layer in static.layers)
    kw = kv.cache_kwarg(tiny_model)
    with torch.inference_mode():
        for cache in (dynamic, static):
            tiny_model(input_ids=torch.tensor([tokens]), use_cache=True, **{kw: cache})
            kv.rollback(cache, 280)
        _assert_same(dynamic, static)
        target = TransformersTarget(tiny_model)
        tree = DraftTree((50, 51, 52, 53, 54), (-1, -1, 1, 1, 3))
        outs = []
        for cache in (dynamic, static):
            positions, mask = target.tree_inputs(kv.cache_length(cache), tree)
            outs.append(target.forward(cache, [tokens[280], *tree.tokens], position_ids=positions, mask=mask))
            kv.keep_rows(cache, 280, [0, 2, 4, 5])
        assert torch.equal(outs[0], outs[1])
        _assert_same(dynamic, static)
        _assert_same(static, _cache_for(tiny_model, tokens[:281] + [51, 53, 54]))
