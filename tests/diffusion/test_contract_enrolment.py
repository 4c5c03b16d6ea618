"""Which registered diffusion cache methods a hand-written contract class covers.

The drafter side enrols every registered method in ``tests/test_exactness.py`` by name; a
cache method needs two configs (reuse-nothing and active): its policy declares them
(``contract_configs``, then ``test_cache_contract.py`` generates its contract class) or its
test module subclasses :class:`~tests.diffusion.contract.CacheContract` (the built-ins, which
add method-specific checks). ``test_cache_contract.py`` fails for a registered method with
neither, so a new method cannot ship without the contract.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

from hasten.diffusion.policy import POLICIES, policy_names

from .contract import CacheContract


def _contract_classes() -> list[type]:
    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if info.name.startswith("test_") and info.name not in (Path(__file__).stem, "test_cache_contract"):
            importlib.import_module(f"{__package__}.{info.name}")
    found, todo = [], list(CacheContract.__subclasses__())
    while todo:
        cls = todo.pop()
        if not cls.__module__.endswith("test_cache_contract"):  # generated, not hand-written
            found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


def covered_by_written_contracts() -> set[str]:
    """Registered methods that a hand-written CacheContract subclass tests."""
    names = set()
    for cls in _contract_classes():
        for attr in ("exact_config", "active_config"):
            config = getattr(cls, attr, None)
            if config is not None and POLICIES.name_of(type(config)) is not None:
                names.add(POLICIES.name_of(type(config)))
    return names


def test_an_unenrolled_method_is_caught():
    """Negative control: a method registered without a contract is reported."""
    from dataclasses import dataclass

    from hasten.diffusion.methods.static import StaticCache
    from hasten.diffusion.policy import register_policy

    @dataclass(frozen=True)
    class LonelyConfig:
        interval: int = 2

    register_policy(LonelyConfig, StaticCache, name="lonely_test_method")
    try:
        assert "lonely_test_method" in policy_names()
        assert "lonely_test_method" not in covered_by_written_contracts()
    finally:
        POLICIES.unregister("lonely_test_method")
    assert "lonely_test_method" not in policy_names()


def test_the_digits_suite_runs_every_registered_cache_method():
    from method_examples import EXAMPLE_PREFIX

    from hasten.diffusion.bench.digits import BACKENDS

    assert {n for n in policy_names() if not n.startswith(EXAMPLE_PREFIX)} <= set(BACKENDS)
    assert "bac" in BACKENDS  # the hand-written list this replaced missed it
