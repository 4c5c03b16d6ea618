"""One registry helper for every family: drafters, diffusion policies, denoiser specs,
shipped models, bench suites, dLLM and AR-image methods.

A :class:`Registry` maps a *name* to an *entry* (any object: a method spec, a factory, a
suite). Entries may also be found by a *key type* (e.g. a config dataclass), so
``registry.for_config(cfg)`` replaces ``isinstance`` chains at call sites. Built-in entries
live in modules listed when the registry is made; they are imported the first time the
registry is read (lazy, so importing a family does not import every method), and a listed
module whose own import is missing is skipped only when the registry is created with
``optional_modules=True`` (e.g. bench suites that need an extra).

Example::

    >>> reg = Registry("widget")
    >>> reg.register("a", 1)
    1
    >>> reg.get("a"), reg.names()
    (1, ('a',))
    >>> reg.get("b")
    Traceback (most recent call last):
    ...
    hasten.registry.UnknownNameError: unknown widget 'b'; known: a
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

__all__ = ["Registry", "UnknownNameError", "UnknownKeyError"]

T = TypeVar("T")


class UnknownNameError(ValueError):
    """A name (or config type) that nothing registered; the message lists the known names."""


class UnknownKeyError(UnknownNameError, KeyError):
    """An unknown name where callers historically caught ``KeyError`` (suites, shipped models)."""

    def __str__(self) -> str:
        return ValueError.__str__(self)


class Registry(Generic[T]):
    """Name -> entry, with optional lookup by key type and lazy built-in modules.

    Args:
        kind: what the entries are, for messages ("method", "diffusion method", "suite").
        builtin_modules: dotted module names imported on first read; each registers its
            entries on import. ``"package.*"`` stands for every public submodule of
            ``package`` (names not starting with ``_``, in name order), so a built-in method
            is one new file in that package and nothing else.
        optional_modules: skip a listed module when importing it fails because one of
            *its* dependencies is missing (``ModuleNotFoundError`` naming another module);
            a missing listed module itself is still an error.
        error: the exception type raised for unknown names (a subclass of
            :class:`UnknownNameError` keeps old ``except`` clauses working).
    """

    def __init__(
        self,
        kind: str,
        builtin_modules: Iterable[str] = (),
        *,
        optional_modules: bool = False,
        error: type[UnknownNameError] = UnknownNameError,
    ) -> None:
        self.kind = kind
        self._modules = tuple(builtin_modules)
        self._optional = optional_modules
        self._error = error
        self._entries: dict[str, T] = {}
        self._by_type: dict[type, str] = {}
        self._loaded = not self._modules

    def register(self, name: str, entry: T, *, key_type: type | None = None, replace: bool = False) -> T:
        """Add ``entry`` under ``name`` (and under ``key_type`` if given); returns ``entry``.

        Re-registering the same entry (a module imported twice) is a no-op.

        Raises:
            ValueError: ``name`` or ``key_type`` is taken by a different entry and
                ``replace`` is False.
        """
        old = self._entries.get(name)
        if old is not None and old is not entry and old != entry and not replace:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        if key_type is not None:
            taken = self._by_type.get(key_type)
            if taken is not None and taken != name and not replace:
                raise ValueError(f"{key_type.__name__} is already registered as {self.kind} {taken!r}")
            self._by_type[key_type] = name
        self._entries[name] = entry
        return entry

    def unregister(self, name: str) -> None:
        """Remove ``name`` (tests that register a throw-away entry clean up with this)."""
        self._entries.pop(name, None)
        for key, value in list(self._by_type.items()):
            if value == name:
                del self._by_type[key]

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for module in _expand(self._modules):
            try:
                importlib.import_module(module)
            except ModuleNotFoundError as err:
                if not self._optional or err.name == module or module.startswith(f"{err.name}."):
                    raise

    def get(self, name: str) -> T:
        """The entry registered as ``name``.

        Raises:
            UnknownNameError (or the registry's ``error`` type): no such name; the message
                lists the known ones.
        """
        self._load()
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries)) or "none"
            raise self._error(f"unknown {self.kind} {name!r}; known: {known}") from None

    def for_config(self, config: object) -> T:
        """The entry registered with ``key_type=type(config)``.

        Raises:
            TypeError: no entry for that type (the message lists the known types).
        """
        self._load()
        name = self._by_type.get(type(config))
        if name is None:
            known = ", ".join(sorted(t.__name__ for t in self._by_type)) or "none"
            raise TypeError(f"no {self.kind} for {type(config).__name__}; known configs: {known}")
        return self._entries[name]

    def name_of(self, config_type: type) -> str | None:
        """The name registered for ``config_type``, or None."""
        self._load()
        return self._by_type.get(config_type)

    def key_type(self, name: str) -> type | None:
        """The key type ``name`` was registered with, or None.

        Raises:
            UnknownNameError (or the registry's ``error`` type): no such name.
        """
        self.get(name)
        return next((t for t, n in self._by_type.items() if n == name), None)

    def names(self) -> tuple[str, ...]:
        """Every registered name, sorted."""
        self._load()
        return tuple(sorted(self._entries))

    def items(self) -> Iterator[tuple[str, T]]:
        """(name, entry) pairs, sorted by name."""
        self._load()
        return iter(sorted(self._entries.items()))

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries

    def __len__(self) -> int:
        self._load()
        return len(self._entries)


def _expand(modules: Iterable[str]) -> list[str]:
    """``"pkg.*"`` -> every public submodule of ``pkg`` (sorted); other names as given."""
    out: list[str] = []
    for module in modules:
        if not module.endswith(".*"):
            out.append(module)
            continue
        package = importlib.import_module(module[:-2])
        names = sorted(info.name for info in pkgutil.iter_modules(package.__path__) if not info.name.startswith("_"))
        out += [f"{package.__name__}.{name}" for name in names]
    return out
