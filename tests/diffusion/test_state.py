"""Run-boundary detection and lane assignment, without any model."""

import torch

from hasten.diffusion.state import MAX_LANES, RunTracker, tensor_signature, timestep_continues, timestep_value


class Memo:
    def __init__(self):
        self.resets = 0

    def reset(self):
        self.resets += 1


SIG = ((0, 0, (1, 4), torch.float32, torch.device("cpu")),)
OTHER_SIG = ((0, 0, (2, 4), torch.float32, torch.device("cpu")),)


def test_timestep_continues():
    assert timestep_continues(None, 0, 999.0)
    assert timestep_continues(500.0, 0, 480.0)
    assert not timestep_continues(999.0, 0, 999.0)
    assert timestep_continues(500.0, -1, 480.0)
    assert not timestep_continues(20.0, -1, 999.0)
    assert timestep_continues(0.2, 1, 0.4)
    assert not timestep_continues(0.9, 1, 0.0)
    assert timestep_continues(0.5, -1, None)


def test_timestep_value():
    assert timestep_value(torch.tensor([981, 981])) == 981.0
    assert timestep_value(torch.tensor([[0.0, 0.5], [0.5, 0.25]])) == 0.5
    assert timestep_value(0.5) == 0.5
    assert timestep_value(None) is None


def test_tensor_signature_sees_shapes_in_args_kwargs_and_tuples():
    a, b = torch.zeros(1, 2), torch.zeros(3, dtype=torch.float64)
    sig = tensor_signature((a, (b, None)), {"t": torch.zeros(1), "n": 3})
    assert [entry[2] for entry in sig] == [(1, 2), (3,), (1,)]
    assert tensor_signature((a,), {}) != tensor_signature((torch.zeros(1, 3),), {})


def steps_of(tracker, calls):
    """Drive begin_call with (branch, timestep, step_index, signature) tuples; return (lane key, step) pairs."""
    out = []
    for branch, timestep, step_index, sig in calls:
        lane = tracker.begin_call(branch, timestep, step_index, sig)
        out.append((lane.key, lane.step))
    return out


def test_decreasing_timesteps_then_a_restart():
    tracker = RunTracker(Memo)
    calls = [(None, t, None, SIG) for t in (999.0, 666.0, 333.0, 999.0, 500.0)]
    assert steps_of(tracker, calls) == [("call0", 0), ("call0", 1), ("call0", 2), ("call0", 0), ("call0", 1)]


def test_increasing_timesteps_are_a_run_too():
    tracker = RunTracker(Memo)
    calls = [(None, t, None, SIG) for t in (0.0, 0.25, 0.5, 0.0)]
    assert [step for _, step in steps_of(tracker, calls)] == [0, 1, 2, 0]


def test_calls_at_the_same_timestep_get_separate_lanes():
    tracker = RunTracker(Memo)
    calls = [(None, t, None, SIG) for t in (999.0, 999.0, 500.0, 500.0, 1.0, 1.0)]
    assert steps_of(tracker, calls) == [
        ("call0", 0),
        ("call1", 0),
        ("call0", 1),
        ("call1", 1),
        ("call0", 2),
        ("call1", 2),
    ]


def test_named_branches_and_step_indices():
    tracker = RunTracker(Memo)
    calls = [
        ("cond", 1.0, 0, SIG),
        ("uncond", 1.0, 0, SIG),
        ("cond", 0.5, 1, SIG),
        ("uncond", 0.5, 1, SIG),
        ("cond", 1.0, 0, SIG),  # step_index went back: new run for "cond"
    ]
    assert steps_of(tracker, calls) == [("cond", 0), ("uncond", 0), ("cond", 1), ("uncond", 1), ("cond", 0)]


def test_shape_change_and_dirty_lane_restart():
    tracker = RunTracker(Memo)
    assert steps_of(tracker, [(None, 9.0, None, SIG), (None, 8.0, None, SIG), (None, 7.0, None, OTHER_SIG)]) == [
        ("call0", 0),
        ("call0", 1),
        ("call0", 0),
    ]
    lane = tracker.begin_call(None, 6.0, None, OTHER_SIG)
    assert lane.step == 1
    lane.dirty = True
    resets = lane.policy_state.resets
    assert tracker.begin_call(None, 5.0, None, OTHER_SIG).step == 0
    assert lane.policy_state.resets == resets + 1


def test_explicit_run_ignores_timesteps_but_not_shapes():
    tracker = RunTracker(Memo)
    tracker.explicit_run = True
    calls = [(None, t, None, SIG) for t in (5.0, 9.0, 1.0)] + [(None, 0.0, None, OTHER_SIG)]
    assert [step for _, step in steps_of(tracker, calls)] == [0, 1, 2, 0]


def test_reset_forgets_lanes():
    tracker = RunTracker(Memo)
    steps_of(tracker, [(None, 9.0, None, SIG), (None, 8.0, None, SIG)])
    tracker.reset()
    assert tracker.lanes() == ()
    assert tracker.begin_call(None, 7.0, None, SIG).step == 0


def test_lanes_are_bounded_least_recently_used_first():
    tracker = RunTracker(Memo)
    for _ in range(3 * MAX_LANES):  # a 1-step sampler called again and again: every call at t=999
        lane = tracker.begin_call(None, 999.0, None, SIG)
        assert lane.step == 0
    assert len(tracker.lanes()) == MAX_LANES
    tracker.begin_call("cond", 1.0, None, SIG)
    assert tracker.lanes()[-1].key == "cond" and len(tracker.lanes()) == MAX_LANES
