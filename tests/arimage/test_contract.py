"""Every registered method enrols here automatically (a contract each must keep)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import hasten.arimage as ha
from hasten.arimage.methods import METHODS

from .conftest import tiny_continuous, tiny_discrete

LABELS = [0, 2, 1]


def model_for(kind: str):
    return tiny_discrete() if kind == "discrete" else tiny_continuous()


def quick_config(spec):
    """The default config, with head steps cut down so the contract runs fast."""
    fields = {f.name for f in dataclasses.fields(spec.config_type)}
    small = {name: 3 for name in ("head_steps", "start_steps") if name in fields}
    return spec.config_type(**small)


@pytest.mark.parametrize("name", METHODS.names())
def test_method_contract(name):
    spec = METHODS.get(name)
    assert spec.name == name and spec.paper and spec.kinds
    assert dataclasses.is_dataclass(spec.config_type) and spec.config_type.__dataclass_params__.frozen
    assert METHODS.for_config(spec.config_type()) is spec
    for kind in spec.kinds:
        model = model_for(kind)
        images, stats = ha.generate(model, LABELS, name, seed=4, config=quick_config(spec))
        again, _ = ha.generate(model, LABELS, name, seed=4, config=quick_config(spec))
        other, _ = ha.generate(model, LABELS, name, seed=5, config=quick_config(spec))
        assert torch.equal(images, again)  # seeded
        assert not torch.equal(images, other)
        assert images.shape[0] == len(LABELS) and torch.isfinite(images).all()
        assert stats.method == name and len(stats.per_image) == len(LABELS)
        for s in stats.per_image:
            assert s.tokens == model.seq_len
            assert 1 <= s.forwards <= model.seq_len
            assert sum(s.accepted_per_forward) == model.seq_len and len(s.accepted_per_forward) == s.forwards
            assert 0 <= s.accepted <= s.drafted
    for kind in {"discrete", "continuous"} - set(spec.kinds):
        with pytest.raises(ValueError, match="runs on"):
            ha.generate(model_for(kind), LABELS, name, config=quick_config(spec))


def test_unknown_method_lists_the_known_ones(tiny_ar):
    with pytest.raises(ValueError, match="known: .*sjd"):
        ha.generate(tiny_ar, LABELS, "nope")


def test_continuous_sd_with_a_twin_draft_accepts_everything():
    twin = tiny_continuous(seed=0, draft_seed=0)
    _, stats = ha.generate(twin, LABELS, "continuous_sd", seed=1, head_steps=4, gamma=3)
    assert stats.acceptance_rate > 0.99
    _, other = ha.generate(
        tiny_continuous(seed=0, draft_seed=7), LABELS, "continuous_sd", seed=1, head_steps=4, gamma=3
    )
    assert other.acceptance_rate < 0.9  # a different draft is rejected sometimes


def test_disa_without_annealing_is_the_reference(tiny_mar):
    ref, ref_stats = ha.generate(tiny_mar, LABELS, "reference", seed=3, head_steps=6)
    same, _ = ha.generate(tiny_mar, LABELS, "disa", seed=3, start_steps=6, end_steps=6)
    fewer, stats = ha.generate(tiny_mar, LABELS, "disa", seed=3, start_steps=6, end_steps=1)
    assert torch.equal(ref, same) and not torch.equal(ref, fewer)
    head = sum(s.head_calls for s in stats.per_image)
    assert head < sum(s.head_calls for s in ref_stats.per_image)
    assert head == len(LABELS) * (6 + 5 + 4 + 3 + 2 + 1)  # linear anneal 6 -> 1 over 6 tokens


def test_disa_two_stage_keeps_full_steps_for_the_first_share(tiny_mar):
    ref, _ = ha.generate(tiny_mar, LABELS, "disa", seed=3, start_steps=6, end_steps=6)
    whole, _ = ha.generate(
        tiny_mar, LABELS, "disa", seed=3, start_steps=6, end_steps=1, schedule="two_stage", switch=1.0
    )
    assert torch.equal(ref, whole)  # every token keeps start_steps: the reference draw for draw
    _, stats = ha.generate(
        tiny_mar, LABELS, "disa", seed=3, start_steps=6, end_steps=2, schedule="two_stage", switch=0.3
    )
    # ceil(0.3 * 6) = 2 tokens at 6 steps, then 4 tokens at 2 steps
    assert sum(s.head_calls for s in stats.per_image) == len(LABELS) * (6 + 6 + 2 + 2 + 2 + 2)


@pytest.mark.parametrize(
    "schedule, switch, expected",
    [
        ("linear", 0.25, [25, 20, 15, 10, 5]),
        ("cosine", 0.25, [25, 22, 15, 8, 5]),  # 5 + 20 * (1 + cos(pi * i / 4)) / 2
        ("two_stage", 0.4, [25, 25, 5, 5, 5]),
        ("two_stage", 0.0, [5, 5, 5, 5, 5]),
    ],
)
def test_anneal_schedules(schedule, switch, expected):
    from hasten.arimage.mar import annealed_steps

    assert [annealed_steps(i, 5, 25, 5, schedule, switch) for i in range(5)] == expected
