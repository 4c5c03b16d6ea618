"""Block outputs as features: flatten/unflatten, residual detection, rebuilding."""

import collections

import torch

from hasten.diffusion.features import (
    apply_residual,
    flatten,
    layout_sources,
    output_feature,
    pass_through,
    residual_feature,
    residual_inputs,
    unflatten,
)


def test_flatten_unflatten_roundtrip_with_nesting_and_constants():
    a, b, c = torch.ones(1), torch.zeros(2), torch.full((3,), 2.0)
    tensors, layout = flatten((a, (b, [c]), None, "tag"))
    assert [t.shape for t in tensors] == [(1,), (2,), (3,)]
    rebuilt = unflatten(layout, [t + 1 for t in tensors])
    assert isinstance(rebuilt, tuple) and isinstance(rebuilt[1][1], list)
    assert rebuilt[0].item() == 2.0 and rebuilt[2] is None and rebuilt[3] == "tag"
    assert unflatten(flatten(a)[1], [b]) is b
    Pair = collections.namedtuple("Pair", "x y")
    assert unflatten(flatten(Pair(a, None))[1], [b]) == Pair(b, None)


def test_flux_like_dual_stream_output_is_residual():
    h, e = torch.arange(12.0).reshape(1, 4, 3), -torch.arange(6.0).reshape(1, 2, 3)  # exact arithmetic
    inputs = {"hidden_states": h, "encoder_hidden_states": e}
    out = (e + 1, h + 2)
    sources = residual_inputs(out, inputs, ("encoder_hidden_states", "hidden_states"))
    assert sources[0] is e and sources[1] is h
    feature = residual_feature(out, sources)
    assert torch.equal(feature[0], torch.ones_like(e)) and torch.equal(feature[1], torch.full_like(h, 2.0))
    layout = flatten(out)[1]
    new_e, new_h = apply_residual(layout, (e * 0, h * 0), feature)
    assert torch.equal(new_e, torch.ones_like(e)) and torch.equal(new_h, torch.full_like(h, 2.0))
    same_e, same_h = pass_through(layout, layout_sources(layout, inputs, ("encoder_hidden_states", "hidden_states")))
    assert same_e is e and same_h is h


def test_sd3_last_block_returning_none_keeps_the_none():
    h, e = torch.randn(1, 4, 3), torch.randn(1, 2, 3)
    out = (None, h + 1)
    names = ("encoder_hidden_states", "hidden_states")
    sources = residual_inputs(out, {"hidden_states": h, "encoder_hidden_states": e}, names)
    assert len(sources) == 1 and sources[0] is h
    rebuilt = apply_residual(flatten(out)[1], sources, residual_feature(out, sources))
    assert rebuilt[0] is None and torch.allclose(rebuilt[1], h + 1)


def test_blocks_that_change_shape_or_return_skips_have_no_residual():
    h = torch.randn(1, 8, 4, 4)
    down = (torch.randn(1, 8, 2, 2), (torch.randn(1, 8, 4, 4),))
    assert residual_inputs(down, {"hidden_states": h}, ("hidden_states", None)) is None
    assert residual_inputs(torch.randn(1, 16, 4, 4), {"hidden_states": h}, ("hidden_states",)) is None
    assert residual_inputs(h.half(), {"hidden_states": h}, ("hidden_states",)) is None
    assert residual_inputs(h + 1, {}, ("hidden_states",)) is None


def test_output_feature_is_a_detached_copy():
    out = (torch.ones(2, requires_grad=True) * 1, (torch.zeros(1),))
    feature = output_feature(out)
    out[1][0].add_(5)
    assert feature[1].item() == 0.0 and not feature[0].requires_grad
