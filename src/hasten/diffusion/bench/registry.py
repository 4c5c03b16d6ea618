"""Suite registry of ``hasten bench-diffusion``: model name -> suite factory.

Built-in suites live in modules listed in :data:`BUILTIN_SUITE_MODULES`; each registers
itself on import with :func:`register_suite`. They are imported the first time a suite is
looked up, and a listed module that is not installed (``ModuleNotFoundError`` for that
exact module) is skipped, so the harness works with any subset of them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from hasten.diffusion.bench.suite import DiffusionSuite
from hasten.registry import Registry, UnknownKeyError

__all__ = ["register_suite", "get_suite", "available_suites", "BUILTIN_SUITE_MODULES", "SUITES"]

SuiteFactory = Callable[[bool], DiffusionSuite]

BUILTIN_SUITE_MODULES = ("hasten.diffusion.bench.digits", "hasten.diffusion.bench.reach_policy")

SUITES: Registry[SuiteFactory] = Registry("bench-diffusion model", error=UnknownKeyError)
"""Every bench-diffusion suite: name -> ``factory(quick)``. Built-ins are imported by
:func:`_load_builtins` (a listed module that is absent is skipped, a broken one raises)."""
_loaded = False


def register_suite(name: str, factory: SuiteFactory) -> None:
    """Make ``factory(quick)`` the suite for ``--models name``; a later call replaces it."""
    SUITES.register(name, factory, replace=True)


def _load_builtins() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in BUILTIN_SUITE_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name != module:  # the module exists but one of its imports is missing: a real error
                raise


def available_suites() -> tuple[str, ...]:
    """Names of every registered suite, sorted."""
    _load_builtins()
    return SUITES.names()


def get_suite(name: str, quick: bool = False) -> DiffusionSuite:
    """Build the suite registered as ``name``.

    Raises:
        KeyError (:class:`~hasten.registry.UnknownKeyError`): no suite of that name (the message lists the known ones).
    """
    _load_builtins()
    return SUITES.get(name)(quick)
