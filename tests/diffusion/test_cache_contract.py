"""Every registered diffusion cache method runs the cache contract (:mod:`.contract`), automatically.

A method whose test module writes its own :class:`~.contract.CacheContract` subclass (the
built-ins do, with method-specific extras) is covered by it. Every other registered method
gets a generated ``Test<Name>Contract`` class here, built from its policy's
``contract_configs(num_blocks, num_steps)``; a registered method with neither fails
:func:`test_every_registered_method_runs_the_contract`. The test-only example
``example_every_other`` (``tests/method_examples/example_cache.py``, one file, registered
by the test session) is enrolled this way.
"""

from __future__ import annotations

import pytest

import hasten.diffusion as hd
from hasten.diffusion.policy import POLICIES, policy_names

from .contract import STEPS, CacheContract
from .test_contract_enrolment import covered_by_written_contracts

TOY_BLOCKS = 4  # make_toy()'s depth


def contract_class(name: str) -> type[CacheContract] | None:
    """The generated contract class for registered method ``name``, or None when its policy
    declares no ``contract_configs``."""
    configs = getattr(POLICIES.get(name), "contract_configs", lambda blocks, steps: None)(TOY_BLOCKS, STEPS)
    if configs is None:
        return None

    class Enrolled(CacheContract):
        exact_config, active_config = configs

    title = "".join(part.capitalize() for part in name.split("_"))
    Enrolled.__name__ = Enrolled.__qualname__ = f"Test{title}Contract"
    return Enrolled


WRITTEN = covered_by_written_contracts()
GENERATED = {name: contract_class(name) for name in policy_names() if name not in WRITTEN}
for _cls in GENERATED.values():
    if _cls is not None:
        globals()[_cls.__name__] = _cls


@pytest.mark.parametrize("name", policy_names())
def test_every_registered_method_runs_the_contract(name):
    assert name in WRITTEN or GENERATED.get(name) is not None, (
        f"cache method {name!r} is registered but runs no cache contract: give its policy "
        "contract_configs(num_blocks, num_steps) or write a CacheContract subclass"
    )


def test_the_example_method_is_enrolled():
    assert "example_every_other" in policy_names() and "example_every_other" not in WRITTEN
    assert "TestExampleEveryOtherContract" in globals()


def test_a_broken_method_fails_the_generated_contract(monkeypatch):
    """Negative control: an example whose reuse-nothing config still reuses stale residuals
    fails the generated contract's exactness check."""
    from method_examples.example_cache import EveryOtherCache

    broken = contract_class("example_every_other")
    monkeypatch.setattr(EveryOtherCache, "observes", lambda self, block: True)
    monkeypatch.setattr(
        EveryOtherCache, "decide", lambda self, state, step, block: hd.Action.REUSE if step % 2 else hd.Action.COMPUTE
    )
    with pytest.raises(AssertionError):
        broken().test_exact_config_matches_uncached_euler_loop()
