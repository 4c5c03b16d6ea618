"""The declared target seam: both targets implement :class:`hasten.targets.Target`, one
resolver picks them, one eos normaliser, and the tree mask builder is a pure function."""

import torch

from hasten.backends.llamacpp import LlamaCppTarget as ReExported
from hasten.masks import tree_attention_inputs
from hasten.targets import (
    LlamaCppTarget,
    Target,
    TransformersTarget,
    is_backend_model,
    normalize_eos,
    resolve_target,
)


def test_resolve_target_picks_the_transformers_target(tiny_model):
    target = resolve_target(tiny_model)
    assert type(target) is TransformersTarget and isinstance(target, Target)
    assert not is_backend_model(tiny_model)


def test_a_backend_model_brings_its_own_target():
    class Fake:
        def engine_target(self):
            return "own"

    assert is_backend_model(Fake()) and resolve_target(Fake()) == "own"
    assert ReExported is LlamaCppTarget
    for name in (
        "forward",
        "verify_forward",
        "new_cache",
        "cache_length",
        "rollback",
        "keep_rows",
        "cost_curve",
        "max_nodes",
        "eos_ids",
    ):
        assert callable(getattr(LlamaCppTarget, name)), name


def test_normalize_eos():
    assert normalize_eos(5) == {5} and normalize_eos((1, 2)) == {1, 2}
    assert normalize_eos(None, default=[3]) == {3} and normalize_eos(None) == set()


def test_tree_mask_by_hand():
    # root after 2 cached tokens, two children of the root (a branch): parents (-1, -1)
    pos, mask = tree_attention_inputs(2, (-1, -1), (None, None), None, torch.float64)
    assert pos.tolist() == [[2, 3, 3]]
    visible = (mask[0, 0] == 0).int().tolist()
    assert visible == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 0], [1, 1, 1, 0, 1]]
    # sliding window 2 over 4 cached tokens, a chain of one node: keys are cut to positions 3, 4, 5
    # (window - 1 cached + root + node); the root (pos 4) sees 3, 4; the node (pos 5) sees 4, 5
    _, windowed = tree_attention_inputs(4, (-1,), (2,), None, torch.float64)
    assert (windowed[0, 0] == 0).int().tolist() == [[1, 1, 0], [0, 1, 1]]
