"""Draw-for-draw identities: window 1 is the reference sampler, CFG rows are read by role,
relaxation 0 is SJD, and the relaxed acceptance rule equals the LLM side's exact rule."""

from __future__ import annotations

import pytest
import torch

import hasten.arimage as ha
from hasten.arimage.core import relaxed_speculative_accept
from hasten.verify import speculative_sample_accept

LABELS = [0, 1, 2, 1, 0, 2]
SAMPLING = [dict(cfg_scale=3.0), dict(cfg_scale=1.0, top_k=2), dict(cfg_scale=2.0, top_p=0.8, temperature=0.7)]


@pytest.mark.parametrize("sampling", SAMPLING)
def test_window_one_is_the_reference_sampler(tiny_ar, sampling):
    ref, _ = ha.generate(tiny_ar, LABELS, "reference", seed=5, **sampling)
    for init in ("random", "spatial"):
        sjd, stats = ha.generate(tiny_ar, LABELS, "sjd", seed=5, window=1, init=init, **sampling)
        assert torch.equal(ref, sjd)
        assert stats.forwards == len(LABELS) * tiny_ar.seq_len


def test_larger_windows_differ_from_reference_and_take_fewer_forwards(tiny_ar):
    ref, ref_stats = ha.generate(tiny_ar, LABELS * 4, "reference", seed=5)
    sjd, stats = ha.generate(tiny_ar, LABELS * 4, "sjd", seed=5, window=4)
    assert not torch.equal(ref, sjd)  # different random streams: the control for the test above
    assert stats.forwards < ref_stats.forwards


@pytest.mark.parametrize(
    "method,options",
    [("reference", {}), ("sjd", dict(window=4)), ("gsd", dict(window=3)), ("lantern", dict(window=5, init="random"))],
)
def test_cfg_row_order_does_not_matter(tiny_ar, method, options):
    a, _ = ha.generate(tiny_ar, LABELS, method, seed=2, cfg_scale=2.5, cfg_roles=("cond", "uncond"), **options)
    b, _ = ha.generate(tiny_ar, LABELS, method, seed=2, cfg_scale=2.5, cfg_roles=("uncond", "cond"), **options)
    assert torch.equal(a, b)


def test_cfg_changes_the_output(tiny_ar):
    a, _ = ha.generate(tiny_ar, LABELS, "reference", seed=2, cfg_scale=1.0)
    b, _ = ha.generate(tiny_ar, LABELS, "reference", seed=2, cfg_scale=4.0)
    assert not torch.equal(a, b)


@pytest.mark.parametrize("window,init", [(3, "random"), (6, "spatial")])
def test_relaxation_zero_is_sjd(tiny_ar, window, init):
    sjd, sjd_stats = ha.generate(tiny_ar, LABELS * 2, "sjd", seed=9, window=window, init=init, top_k=3)
    gsd, _ = ha.generate(tiny_ar, LABELS * 2, "gsd", seed=9, window=window, init=init, top_k=3, group_size=0)
    lantern, _ = ha.generate(tiny_ar, LABELS * 2, "lantern", seed=9, window=window, init=init, top_k=3, delta=0.0)
    assert torch.equal(sjd, gsd) and torch.equal(sjd, lantern)
    relaxed, stats = ha.generate(
        tiny_ar, LABELS * 2, "lantern", seed=9, window=window, init=init, top_k=3, delta=0.5, k=3
    )
    assert stats.acceptance_rate > sjd_stats.acceptance_rate  # the relaxation does something


def test_relaxed_rule_with_exact_masses_is_the_llm_rule_draw_for_draw():
    gen = torch.Generator().manual_seed(0)
    for trial in range(200):
        k, vocab = trial % 5, 6
        draft_probs = torch.rand(k, vocab, generator=gen, dtype=torch.float64).softmax(-1)
        target_probs = (3 * torch.rand(k + 1, vocab, generator=gen, dtype=torch.float64)).softmax(-1)
        drafts = torch.multinomial(draft_probs, 1, generator=gen).flatten() if k else torch.zeros(0, dtype=torch.long)
        rows = torch.arange(k)
        g1, g2 = torch.Generator().manual_seed(trial), torch.Generator().manual_seed(trial)
        expected = speculative_sample_accept(drafts, draft_probs, target_probs, g1)
        got = relaxed_speculative_accept(
            drafts, draft_probs, target_probs, target_probs[rows, drafts], draft_probs[rows, drafts], g2
        )
        assert got == expected
