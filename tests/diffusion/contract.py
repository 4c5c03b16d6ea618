"""The cache contract every diffusion cache method inherits.

A method's test module subclasses :class:`CacheContract` and sets:

* ``exact_config``: a config that reuses nothing (threshold 0 / interval 1); the output
  must be bitwise identical to the uncached model.
* ``active_config``: a config that does skip block evaluations on the toy denoiser within
  20 steps; used to check state handling where a wrong reuse would show.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

import pytest
import torch

import hasten.diffusion as hd

from .toys import TOY_SPEC, EvaluationCounter, MiniPipeline, euler, euler_cfg, inputs, make_toy

STEPS = 20


class CacheContract:
    exact_config: ClassVar[Any]
    active_config: ClassVar[Any]

    def enable(self, model: torch.nn.Module, config: Any) -> hd.CacheHandle:
        return hd.enable(model, config, TOY_SPEC)

    # --- reuse-nothing equals uncached ---

    def test_exact_config_matches_uncached_euler_loop(self):
        model = make_toy()
        noise, cond, _ = inputs()
        reference = euler(model, noise, cond, STEPS)
        handle = self.enable(model, self.exact_config)
        assert torch.equal(euler(model, noise, cond, STEPS), reference)
        assert handle.summary().totals.skipped == 0
        assert handle.summary().totals.computed == STEPS * len(model.blocks)

    def test_exact_config_matches_uncached_batched_cfg(self):
        model = make_toy()
        noise, cond, uncond = inputs(batch=2)
        for mode in ("uncond_first", "cond_first", "separate", "context"):
            reference = euler_cfg(model, noise, cond, uncond, 8, mode)
            handle = self.enable(model, self.exact_config)
            assert torch.equal(euler_cfg(model, noise, cond, uncond, 8, mode), reference), mode
            hd.disable(model)
            assert handle.summary().totals.skipped == 0

    # --- enable / disable / enable ---

    def test_disable_restores_the_exact_original_forward(self):
        model = make_toy()
        noise, cond, _ = inputs()
        reference = euler(copy.deepcopy(model), noise, cond, STEPS)
        modules = [model, *model.blocks]
        attributes = [set(vars(m)) for m in modules]
        class_forwards = [type(m).forward for m in modules]
        self.enable(model, self.active_config)
        euler(model, noise, cond, STEPS)
        hd.disable(model)
        for module, names, class_forward in zip(modules, attributes, class_forwards):
            assert set(vars(module)) == names
            assert "forward" not in vars(module) and "cache_context" not in vars(module)
            assert module.forward.__func__ is class_forward is type(module).forward
        assert torch.equal(euler(model, noise, cond, STEPS), reference)

    def test_enabling_twice_raises(self):
        model = make_toy()
        self.enable(model, self.active_config)
        with pytest.raises(ValueError, match="already enabled"):
            self.enable(model, self.exact_config)
        with pytest.raises(ValueError, match="already enabled"):
            hd.enable(model.blocks[1], self.exact_config, hd.DenoiserSpec((hd.BlockGroup("mlp"),)))

    def test_disable_without_enable_raises(self):
        with pytest.raises(ValueError, match="not enabled"):
            hd.disable(make_toy())

    def test_enable_disable_enable_gives_the_same_output(self):
        model = make_toy()
        noise, cond, _ = inputs()
        self.enable(model, self.active_config)
        first = euler(model, noise, cond, STEPS)
        hd.disable(model)
        self.enable(model, self.active_config)
        assert torch.equal(euler(model, noise, cond, STEPS), first)

    # --- state resets between runs ---

    def test_runs_a_b_a_give_a_fresh_output(self):
        model = make_toy()
        noise_a, cond_a, _ = inputs(batch=1, size=8, seed=1)
        noise_b, cond_b, _ = inputs(batch=2, size=12, seed=2)
        handle = self.enable(model, self.active_config)
        fresh = euler(model, noise_a, cond_a, STEPS)
        assert handle.summary().totals.skipped > 0
        euler(model, noise_b, cond_b, 8)
        again = euler(model, noise_a, cond_a, STEPS)
        and_again = euler(model, noise_a, cond_a, STEPS)  # same shapes: only the timesteps restart
        assert torch.equal(again, fresh)
        assert torch.equal(and_again, fresh)
        assert handle.summary().runs == 4

    def test_explicit_run_context(self):
        model = make_toy()
        noise, cond, _ = inputs()
        handle = self.enable(model, self.active_config)
        fresh = euler(model, noise, cond, STEPS)
        with handle.run():
            assert torch.equal(euler(model, noise, cond, STEPS), fresh)
        with handle.run(), pytest.raises(RuntimeError, match="nest"), handle.run():
            pass

    # --- CFG branches ---

    def test_batched_cfg_either_order_makes_the_same_decisions(self):
        model = make_toy()
        noise, cond, uncond = inputs(batch=2)
        handle = self.enable(model, self.active_config)
        uncond_first = euler_cfg(model, noise, cond, uncond, STEPS, "uncond_first")
        counts_uncond_first = handle.summary().per_step
        handle.reset_stats()
        cond_first = euler_cfg(model, noise, cond, uncond, STEPS, "cond_first")
        assert handle.summary().per_step == counts_uncond_first
        assert handle.summary().totals.skipped > 0
        torch.testing.assert_close(cond_first, uncond_first, rtol=1e-12, atol=1e-12)

    @pytest.mark.parametrize("mode", ["separate", "context"])
    def test_separate_branch_calls_keep_separate_state(self, mode):
        model = make_toy()
        noise, cond, uncond = inputs(batch=1)
        handle = self.enable(model, self.active_config)
        shared = euler_cfg(model, noise, cond, uncond, STEPS, mode)
        assert handle.summary().totals.skipped > 0
        hd.disable(model)
        cond_model, uncond_model = copy.deepcopy(model), copy.deepcopy(model)
        self.enable(cond_model, self.active_config)
        self.enable(uncond_model, self.active_config)
        separate = euler_cfg((cond_model, uncond_model), noise, cond, uncond, STEPS, mode)
        assert torch.equal(shared, separate)

    def test_user_named_branches(self):
        model = make_toy()
        noise, cond, uncond = inputs(batch=1)
        handle = self.enable(model, self.active_config)
        expected = euler_cfg(model, noise, cond, uncond, STEPS, "separate")
        handle.reset()

        class Named(torch.nn.Module):  # routes each call through handle.branch()
            def __init__(self, name):
                super().__init__()
                self.name = name

            def forward(self, *args):
                with handle.branch(self.name):
                    return model(*args)

        got = euler_cfg((Named("c"), Named("u")), noise, cond, uncond, STEPS, "separate")
        assert torch.equal(got, expected)

    # --- shapes that change ---

    def test_first_call_with_a_longer_sequence_resets_instead_of_crashing(self):
        noise, cond, _ = inputs()
        reference = euler(make_toy(first_call_extra_tokens=3), noise, cond, STEPS)
        exact_model = make_toy(first_call_extra_tokens=3)
        self.enable(exact_model, self.exact_config)
        assert torch.equal(euler(exact_model, noise, cond, STEPS), reference)
        model = make_toy(first_call_extra_tokens=3)
        handle = self.enable(model, self.active_config)
        out = euler(model, noise, cond, STEPS)
        assert out.shape == noise.shape and torch.isfinite(out).all()
        assert handle.summary().runs == 2  # the lane restarted after the shape change
        assert handle.summary().totals.skipped > 0

    # --- pipelines and loops ---

    def test_pipeline_that_never_calls_cache_context(self):
        model = make_toy()
        noise, cond, _ = inputs()
        reference = MiniPipeline(model)(noise, cond, STEPS)
        handle = self.enable(model, self.exact_config)
        assert torch.equal(MiniPipeline(model)(noise, cond, STEPS), reference)
        hd.disable(model)
        handle = self.enable(model, self.active_config)
        first = MiniPipeline(model)(noise, cond, STEPS)
        second = MiniPipeline(model)(noise, cond, STEPS)
        assert torch.equal(first, second)
        assert handle.summary().totals.skipped > 0
        assert handle.summary().runs == 2

    # --- work actually skipped, and counted right ---

    def test_skipped_block_evaluations_match_the_summary(self):
        model = make_toy()
        noise, cond, _ = inputs()
        counter = EvaluationCounter(list(model.blocks), "mlp.0")
        handle = self.enable(model, self.active_config)
        euler(model, noise, cond, STEPS)
        counter.close()
        summary = handle.summary()
        assert [c.computed for c in summary.per_block] == counter.counts
        assert sum(counter.counts) < STEPS * len(model.blocks)
        assert summary.totals.total == STEPS * len(model.blocks)
        assert sum(c.computed for c in summary.per_step) == sum(counter.counts)
        assert summary.calls == STEPS and len(summary.per_step) == STEPS
