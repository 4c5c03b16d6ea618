"""The summary a handle reports."""

import pytest

from hasten.diffusion.policy import Action
from hasten.diffusion.summary import CacheStats


def test_counts_fractions_and_percentiles():
    stats = CacheStats(num_blocks=2)
    for step, actions in enumerate([(Action.COMPUTE, Action.COMPUTE), (Action.COMPUTE, Action.REUSE)]):
        for block, action in enumerate(actions):
            stats.record(step, block, action)
    stats.residual_diffs += [0.1, 0.2, 0.3, 0.4, 0.5]
    stats.calls, stats.runs = 2, 1
    summary = stats.snapshot("static", ("a", "b"))
    assert summary.totals.computed == 3 and summary.totals.reused == 1
    assert summary.skipped_fraction == 0.25
    assert [c.computed for c in summary.per_step] == [2, 1]
    assert [c.skipped for c in summary.per_block] == [0, 1]
    assert summary.percentiles() == pytest.approx({25: 0.2, 50: 0.3, 75: 0.4, 95: 0.48})
    text = str(summary)
    assert "25.0% skipped" in text and "P50 0.3000" in text and "static" in text


def test_empty_summary():
    summary = CacheStats(num_blocks=1).snapshot("taylorseer", ("a",))
    assert summary.skipped_fraction == 0.0 and summary.percentiles() == {}
    assert "not measured" in str(summary)
