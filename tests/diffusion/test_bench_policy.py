"""The reach-policy bench-diffusion suite, end to end on a tiny random policy."""

import numpy as np
import pytest

import hasten.diffusion as hd
from hasten.diffusion import models
from hasten.diffusion.bench import UNCACHED, DiffusionSuite, available_suites
from hasten.diffusion.bench.reach_policy import DEFAULT_BAC, OPEN_LOOP_STEPS, PolicyRun, ReachPolicySuite, pack, unpack
from hasten.diffusion.hooks import HookRegistry
from hasten.diffusion.models.reach_env import MAX_STEPS

from .policy_toys import TINY, tiny_policy


@pytest.fixture(scope="module")
def suite():
    return ReachPolicySuite(tiny_policy(), episodes=3, calibration_seeds=np.arange(2) + 50_000)


def test_the_suite_is_registered_and_keeps_the_protocol(suite):
    assert "reach-policy" in available_suites()
    assert isinstance(suite, DiffusionSuite)
    assert "4 blocks (2 attention + 2 FFN)" in suite.describe()


def test_settings_cover_the_methods_and_quick_is_smaller(suite):
    full, quick = suite.settings(quick=False), suite.settings(quick=True)
    assert {s.method for s in full} == {"bac", "static", "first_block", "taylorseer"}
    assert len(quick) < len(full)
    labels = [(s.method, s.label) for s in full]
    assert len(set(labels)) == len(labels)
    for setting in full:
        if setting.method == "bac":
            assert len(setting.config.update_steps) == 2 * TINY.depth
            assert setting.config.num_steps == TINY.sample_steps


def test_runs_are_deterministic_leave_the_model_clean_and_score_against_uncached(suite):
    reference = suite.run(UNCACHED, None, seed=0)
    assert reference.skipped_fraction == 0 and reference.seconds > 0
    assert suite.run(UNCACHED, None, seed=0).output.tobytes() == reference.output.tobytes()
    scores = suite.fidelity(reference, reference)
    run = unpack(reference.output, TINY.horizon)
    assert scores["action_mse"] == 0 and scores["success_rate"] == run.success.mean()
    for setting in suite.settings(quick=False):
        output = suite.run(setting.method, setting.config, seed=0)
        assert output.output.shape == reference.output.shape
        scores = suite.fidelity(reference, output)
        assert set(scores) == set(suite.metric_names) and all(np.isfinite(v) for v in scores.values())
        if setting.method in ("bac", "static", "taylorseer"):  # fixed schedules: skipping is certain
            assert output.skipped_fraction > 0 and scores["action_mse"] > 0
        denoiser = suite.policy.denoiser
        assert all(HookRegistry.find(m) is None for m in [denoiser, *denoiser.blocks])
    assert suite.run(UNCACHED, None, seed=1).output.tobytes() != reference.output.tobytes()


def test_unknown_method_raises_and_leaves_no_hook(suite):
    with pytest.raises(KeyError, match="offers"):
        suite.run("tstitch", hd.StaticCacheConfig(), seed=0)
    assert HookRegistry.find(suite.policy.denoiser) is None


def test_pack_unpack_round_trip():
    rng = np.random.default_rng(0)
    e, h = 3, 8
    run = PolicyRun(
        np.array([True, False, True]),
        np.array([1, 0, -1]),
        rng.uniform(size=(e, 2)),
        rng.uniform(size=(e, 2)),
        rng.uniform(size=(e, len(OPEN_LOOP_STEPS), h, 2)),
        rng.uniform(size=(e, MAX_STEPS, 2)),
    )
    back = unpack(pack(run), h)
    assert back.success.tolist() == run.success.tolist() and back.side.tolist() == run.side.tolist()
    for name in ("start", "goal", "chunks", "actions"):
        np.testing.assert_allclose(getattr(back, name), getattr(run, name), rtol=1e-6)


def test_render_draws_a_png(suite, tmp_path):
    pytest.importorskip("matplotlib")
    reference = suite.run(UNCACHED, None, seed=0)
    assert suite.render([("uncached", reference), ("again", reference)], tmp_path / "reach.png")
    assert (tmp_path / "reach.png").read_bytes()[:4] == b"\x89PNG"


def test_the_shipped_schedule_is_what_calibration_on_the_shipped_weights_gives():
    loaded = models.load("reach-policy")
    suite = ReachPolicySuite(loaded.extra["policy"])
    shipped = loaded.extra["bac_config"]
    assert suite.bac_config(*DEFAULT_BAC) == shipped
    assert all(len(steps) >= DEFAULT_BAC[0] for steps in shipped.update_steps)
