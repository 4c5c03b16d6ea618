"""bac (Block-wise Adaptive Caching): contract suite, scheduler vs brute force, bubbling union, calibration, files."""

import itertools
import json

import numpy as np
import pytest
import torch

import hasten.diffusion as hd
from hasten.diffusion.methods.bac import BACConfig, load_schedule, save_schedule
from hasten.diffusion.methods.bac_calibration import (
    bubbling_union,
    build_schedule,
    calibrate,
    reuse_gains,
    schedule_objective,
    schedule_updates,
    schedule_updates_reference,
)

from .contract import STEPS, CacheContract
from .toys import TOY_SPEC, EvaluationCounter, euler, inputs, make_toy


class TestBACContract(CacheContract):
    exact_config = BACConfig.every_step(num_blocks=4, num_steps=STEPS)
    active_config = BACConfig(
        ((0, 1, 2, 5, 9, 14), (0, 3, 6, 9, 12, 15, 18), (0, 1, 4, 8, 16), tuple(range(0, STEPS, 2))), STEPS
    )

    def test_enabling_twice_raises(self):
        # as the contract's, but a schedule is per block: the nested denoiser (a block's MLP,
        # 3 children) gets a 3-block schedule so the refusal is about the existing hook
        model = make_toy()
        self.enable(model, self.active_config)
        with pytest.raises(ValueError, match="already enabled"):
            self.enable(model, self.exact_config)
        with pytest.raises(ValueError, match="already enabled"):
            hd.enable(model.blocks[1], BACConfig.every_step(3, STEPS), hd.DenoiserSpec((hd.BlockGroup("mlp"),)))


def objective_by_hand(similarity, steps):
    """The scheduler's objective written independently: each skipped step scores its similarity to the last update."""
    total = 0.0
    for t in range(len(similarity)):
        if t not in steps:
            total += similarity[max(c for c in steps if c < t), t]
    return total


# ----- Adaptive Caching Scheduler -----


@pytest.mark.parametrize("trial", range(40))
def test_scheduler_matches_brute_force_on_random_problems(trial):
    rng = np.random.default_rng(trial)
    s = int(rng.integers(1, 9))
    similarity = rng.uniform(-1, 1, size=(s, s))
    if trial % 2:
        similarity = (similarity + similarity.T) / 2
    for k in range(1, min(4, s) + 1):
        steps = schedule_updates(similarity, k)
        assert steps[0] == 0 and len(set(steps)) == k == len(steps) and list(steps) == sorted(steps)
        best = max(objective_by_hand(similarity, (0, *rest)) for rest in itertools.combinations(range(1, s), k - 1))
        assert objective_by_hand(similarity, steps) == pytest.approx(best, abs=1e-12)
        assert schedule_objective(similarity, steps) == pytest.approx(best, abs=1e-12)
        reference = schedule_updates_reference(similarity, k)
        assert objective_by_hand(similarity, reference) == pytest.approx(best, abs=1e-12)


def test_scheduler_on_a_literal_problem():
    similarity = np.array([[1.0, 0.9, 0.1], [0.9, 1.0, 0.2], [0.1, 0.2, 1.0]])
    assert schedule_updates(similarity, 2) == (0, 2)  # reuse step 0 at step 1 (0.9) beats (0, 1) (0.2)
    assert schedule_updates(similarity, 1) == (0,)
    assert schedule_updates(similarity, 3) == (0, 1, 2)
    # a block whose feature drifts at step 3: refreshes go where the similarity drops
    drift = np.ones((6, 6))
    drift[:3, 3:] = drift[3:, :3] = 0.0
    assert schedule_updates(drift, 2) == (0, 3)


def test_reuse_gains_are_sums_of_similarities_after_the_update():
    rng = np.random.default_rng(0)
    similarity = rng.uniform(size=(5, 5))
    gains = reuse_gains(similarity)
    assert gains.shape == (5, 6)
    for i in range(5):
        for j in range(6):
            assert gains[i, j] == pytest.approx(sum(similarity[i, t] for t in range(i + 1, j)))


def test_scheduler_rejects_bad_problems():
    with pytest.raises(ValueError, match="square"):
        schedule_updates(np.ones((2, 3)), 1)
    with pytest.raises(ValueError, match="num_updates"):
        schedule_updates(np.ones((3, 3)), 4)
    with pytest.raises(ValueError, match="num_updates"):
        schedule_updates(np.ones((3, 3)), 0)


# ----- Bubbling Union -----


def test_bubbling_union_on_literal_inputs():
    steps = [(0,), (0, 2), (0,), (0, 3)]
    ffn = [False, True, False, True]
    errors = [5.0, 1.0, 4.0, 0.0]
    assert bubbling_union(steps, errors, ffn, 0) == ((0,), (0, 2), (0,), (0, 3))
    # block 0 has the largest error: it also refreshes whenever FFN block 1 or 3 does
    assert bubbling_union(steps, errors, ffn, 1) == ((0, 2, 3), (0, 2), (0,), (0, 3))
    # block 2 is next: only FFN block 3 is downstream of it
    assert bubbling_union(steps, errors, ffn, 2) == ((0, 2, 3), (0, 2), (0, 3), (0, 3))
    # an FFN block can be upstream too; the last block has nothing downstream
    assert bubbling_union(steps, [0.0, 9.0, 0.0, 8.0], ffn, 2) == ((0,), (0, 2, 3), (0,), (0, 3))
    # attention blocks downstream are not unioned in
    assert bubbling_union([(0,), (0, 1), (0, 4)], [1.0, 0.0, 0.0], [False, False, True], 1) == ((0, 4), (0, 1), (0, 4))


def test_bubbling_union_breaks_error_ties_by_call_order_and_validates():
    steps = [(0,), (0,), (0, 1)]
    assert bubbling_union(steps, [1.0, 1.0, 0.0], [False, False, True], 1) == ((0, 1), (0,), (0, 1))
    with pytest.raises(ValueError, match="schedules"):
        bubbling_union(steps, [1.0], [False, False, True], 1)
    with pytest.raises(ValueError, match="num_upstream"):
        bubbling_union(steps, [1.0, 1.0, 0.0], [False, False, True], -1)


# ----- config and policy -----


def test_config_validation():
    with pytest.raises(ValueError, match="start with step 0"):
        BACConfig(((1, 2),), 4)
    with pytest.raises(ValueError, match="increase"):
        BACConfig(((0, 2, 2),), 4)
    with pytest.raises(ValueError, match="increase"):
        BACConfig(((0, 4),), 4)
    with pytest.raises(ValueError, match="one entry per block"):
        BACConfig((), 4)
    with pytest.raises(ValueError, match="num_steps"):
        BACConfig(((0,),), 0)
    with pytest.raises(ValueError, match="the denoiser 4"):
        hd.enable(make_toy(), BACConfig(((0,),), 3), TOY_SPEC)
    assert BACConfig(((0, 2), (0,)), 4).skipped_fraction == pytest.approx(5 / 8)


def test_each_block_computes_exactly_at_its_update_steps():
    model = make_toy(depth=4)
    noise, cond, _ = inputs()
    schedule = ((0, 5), (0, 1, 2, 3, 4, 5, 6, 7, 8, 9), (0, 9), (0, 2, 4, 6))
    counter = EvaluationCounter(list(model.blocks), "mlp.0")
    handle = hd.enable(model, BACConfig(schedule, 10), TOY_SPEC)
    euler(model, noise, cond, 12)  # steps 10 and 11 are beyond the schedule: computed
    assert counter.counts == [4, 12, 4, 6]
    per_step = handle.summary().per_step
    assert [c.computed for c in per_step] == [4, 1, 2, 1, 2, 2, 2, 1, 1, 2, 4, 4]


# ----- calibration -----


def test_calibration_measures_cosine_similarity_and_caching_error():
    model = make_toy(depth=3)
    noise, cond, _ = inputs(batch=2)
    residuals = {i: [] for i in range(3)}
    hooks = [
        b.register_forward_hook(lambda m, args, out, i=i: residuals[i].append((out - args[0]).flatten(1)))
        for i, b in enumerate(model.blocks)
    ]
    statistics = calibrate(model, lambda: [euler(model, noise, cond, 5), euler(model, noise * 2, cond, 5)], 5, TOY_SPEC)
    for hook in hooks:
        hook.remove()
    assert statistics.samples == 4 and statistics.similarity.shape == (3, 5, 5) and statistics.errors.shape == (3,)
    x = torch.stack(residuals[1]).reshape(2, 5, 2, -1).transpose(1, 2).reshape(4, 5, -1)  # (run*batch, step, F)
    expected = torch.nn.functional.cosine_similarity(x[:, 1], x[:, 4], dim=-1).mean()
    assert statistics.similarity[1, 1, 4] == pytest.approx(float(expected), rel=1e-9)
    assert np.allclose(np.diagonal(statistics.similarity, axis1=1, axis2=2), 1.0)
    pairs = [(x[:, t] - x[:, u]).abs().mean(-1) for t in range(5) for u in range(5)]
    assert statistics.errors[1] == pytest.approx(float(torch.stack(pairs).mean()), rel=1e-9)
    assert all(not b._forward_hooks for b in model.blocks)


def test_calibration_refuses_partial_runs_and_enabled_caches():
    model = make_toy(depth=3)
    noise, cond, _ = inputs()
    with pytest.raises(ValueError, match="whole runs"):
        calibrate(model, lambda: euler(model, noise, cond, 4), 5, TOY_SPEC)
    assert all(not b._forward_hooks for b in model.blocks)
    hd.enable(model, hd.StaticCacheConfig(), TOY_SPEC)
    with pytest.raises(ValueError, match="disable"):
        calibrate(model, lambda: euler(model, noise, cond, 5), 5, TOY_SPEC)


def test_build_schedule_uses_the_budget_then_the_union():
    model = make_toy(depth=4)
    noise, cond, _ = inputs(batch=2)
    statistics = calibrate(model, lambda: euler(model, noise, cond, 10), 10, TOY_SPEC)
    ffn = [False, True, False, True]
    plain = build_schedule(statistics, 4, ffn, 0)
    assert [len(s) for s in plain.update_steps] == [4, 4, 4, 4]
    assert plain.update_steps[2] == schedule_updates(statistics.similarity[2], 4)
    bubbled = build_schedule(statistics, 4, ffn, 4)
    assert bubbled.update_steps[0] == tuple(
        sorted({*plain.update_steps[0], *plain.update_steps[1], *plain.update_steps[3]})
    )
    assert bubbled.update_steps[3] == plain.update_steps[3]


# ----- files -----


def test_schedule_save_load_round_trip(tmp_path):
    config = BACConfig(((0, 3, 7), (0,), tuple(range(10))), 10)
    path = save_schedule(config, tmp_path / "bac_schedule_toy.json", budget=3, block_names=["a", "b", "c"])
    assert load_schedule(path) == config
    document = json.loads(path.read_text())
    assert document["metadata"] == {"budget": 3, "block_names": ["a", "b", "c"]}
    (tmp_path / "bad.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ValueError, match="not a"):
        load_schedule(tmp_path / "bad.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ValueError, match="JSON"):
        load_schedule(tmp_path / "broken.json")
    with pytest.raises(FileNotFoundError):
        load_schedule(tmp_path / "missing.json")
