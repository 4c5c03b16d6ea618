"""The one-file example methods (tests/method_examples) are registered and enrolled.

The LLM exactness suite parametrizes over ``hasten.list_methods()``, so registering
``example_last_token`` is all it takes for ``test_exactness.py`` to run it; this file checks
that enrolment and that the example actually drafts (a drafter that never proposes would
pass exactness vacuously).
"""

from __future__ import annotations

import torch
from conftest import exactness_prompts

import hasten


def test_example_drafter_is_registered_and_enrolled_in_the_exactness_suite():
    from test_exactness import method_cases

    assert "example_last_token" in hasten.list_methods()
    assert "example_last_token" in {case.values[0] for case in method_cases()}


def test_example_drafter_drafts_and_is_token_identical(tiny_factory):
    model = tiny_factory("llama")
    prompt = exactness_prompts(count=1)[0]
    ids = torch.tensor([prompt * 3])  # repeats: the 1-gram lookup finds matches
    plain = hasten.generate(model, ids, max_new_tokens=24)
    drafted = hasten.generate(model, ids, method="example_last_token", max_new_tokens=24)
    assert drafted.sequences.tolist() == plain.sequences.tolist()
    assert sum(drafted.stats.drafted) > 0
