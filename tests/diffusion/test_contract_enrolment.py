"""Every registered diffusion cache method is enrolled in the cache contract suite.

The drafter side enrols every registered method in ``tests/test_exactness.py`` by name; a
cache method needs two configs (reuse-nothing and active), so its test module subclasses
:class:`~tests.diffusion.contract.CacheContract`. This test reads the registry and fails
for a registered method that no contract subclass covers, so a new method cannot ship
without the contract.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import pytest

from hasten.diffusion.policy import POLICIES, policy_names

from .contract import CacheContract


def _contract_classes() -> list[type]:
    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if info.name.startswith("test_") and info.name != Path(__file__).stem:
            importlib.import_module(f"{__package__}.{info.name}")
    found, todo = [], list(CacheContract.__subclasses__())
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


def _covered() -> set[str]:
    names = set()
    for cls in _contract_classes():
        for attr in ("exact_config", "active_config"):
            config = getattr(cls, attr, None)
            if config is not None and POLICIES.name_of(type(config)) is not None:
                names.add(POLICIES.name_of(type(config)))
    return names


@pytest.mark.parametrize("name", policy_names())
def test_registered_cache_method_has_a_contract(name):
    assert name in _covered(), f"cache method {name!r} is registered but no CacheContract subclass tests it"


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
        assert "lonely_test_method" not in _covered()
    finally:
        POLICIES.unregister("lonely_test_method")
    assert "lonely_test_method" not in policy_names()


def test_the_digits_suite_runs_every_registered_cache_method():
    from hasten.diffusion.bench.digits import BACKENDS

    assert set(policy_names()) <= set(BACKENDS)
    assert "bac" in BACKENDS  # the hand-written list this replaced missed it
