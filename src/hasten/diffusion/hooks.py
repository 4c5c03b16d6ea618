"""Per-instance, reversible interception of a module's methods: the hook registry.

A :class:`HookRegistry` belongs to one ``nn.Module`` instance. Each named hook adds a
*wrapper* around one or more of that instance's methods (``forward``, and on diffusers
models ``cache_context``). A wrapper is called as ``wrapper(call_next, *args, **kwargs)``
and decides whether and how to call ``call_next`` (the method as it was before the hook).

The interception is an instance attribute that shadows the class method, so:

* classes (``torch.nn.Module``, diffusers, transformers) are never modified;
* other instances of the same class are untouched;
* removing the last hook deletes the instance attribute (or puts back whatever instance
  attribute was there before, e.g. another library's wrapper), after which
  ``module.forward`` is again the class's own bound method.

The registry is reached from the module through its interceptors, so hasten keeps no
global table of hooked modules and sets no other attribute on the user's model.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import torch

Wrapper = Callable[..., Any]


class _Absent:
    """Marks "no instance attribute was there before the hook". One object for the whole
    process, also across ``copy.deepcopy`` and pickling, so a deep copy of a hooked module
    restores its copy's ``forward`` as the original would."""

    def __copy__(self) -> _Absent:
        return self

    def __deepcopy__(self, memo: dict) -> _Absent:
        return self

    def __reduce__(self) -> str:
        return "_ABSENT"

    def __repr__(self) -> str:
        return "<absent>"


_ABSENT = _Absent()


class _Interceptor:
    """The callable that shadows one method of one module instance.

    Wrappers run outermost-last-added: the newest hook sees the call first.
    """

    def __init__(self, registry: HookRegistry, method: str, inner: Callable[..., Any], saved: Any) -> None:
        self.registry = registry
        self.method = method
        self.inner = inner  # the callable in place before the first hook (bound method or another wrapper)
        self.saved = saved  # the instance attribute to put back on removal, or _ABSENT
        self.wrappers: dict[str, Wrapper] = {}

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        call = self.inner
        for wrapper in self.wrappers.values():
            call = functools.partial(wrapper, call)
        return call(*args, **kwargs)


class HookRegistry:
    """The named hooks installed on one module instance.

    Use :meth:`of` to get (or lazily create) the registry of a module and :meth:`find` to
    look one up without creating it.
    """

    def __init__(self, module: torch.nn.Module) -> None:
        self._module = module
        self._interceptors: dict[str, _Interceptor] = {}
        self._owners: dict[str, object] = {}

    @staticmethod
    def find(module: torch.nn.Module) -> HookRegistry | None:
        """The registry whose interceptors are installed on ``module``, or None."""
        for value in vars(module).values():
            if isinstance(value, _Interceptor):
                return value.registry
        return None

    @classmethod
    def of(cls, module: torch.nn.Module) -> HookRegistry:
        """The registry of ``module``; a new, empty one when it has none yet."""
        return cls.find(module) or cls(module)

    def names(self) -> tuple[str, ...]:
        """Names of the installed hooks, oldest first."""
        return tuple(self._owners)

    def owner(self, name: str) -> object | None:
        """The object that installed hook ``name`` (e.g. a cache handle), or None."""
        return self._owners.get(name)

    def add(self, name: str, owner: object, wrappers: Mapping[str, Wrapper]) -> None:
        """Install hook ``name``: ``wrappers`` maps method names to ``wrapper(call_next, *args, **kwargs)``.

        Raises:
            ValueError: ``name`` is already installed, or a method does not exist on the module.
        """
        if name in self._owners:
            raise ValueError(f"hook {name!r} is already installed on {type(self._module).__name__}")
        for method in wrappers:
            if not callable(getattr(self._module, method, None)):
                raise ValueError(f"{type(self._module).__name__} has no method {method!r} to hook")
        for method, wrapper in wrappers.items():
            self._interceptor(method).wrappers[name] = wrapper
        self._owners[name] = owner

    def remove(self, name: str) -> None:
        """Remove hook ``name``; when a method loses its last wrapper its interception is undone.

        Raises:
            KeyError: ``name`` is not installed.
            RuntimeError: another library replaced an intercepted method after this hook was
                installed, so restoring it would drop that library's wrapper. Remove theirs first.
        """
        self.check_removable(name)
        emptied = [i for i in self._interceptors.values() if set(i.wrappers) == {name}]
        for interceptor in self._interceptors.values():
            interceptor.wrappers.pop(name, None)
        for interceptor in emptied:
            self._restore(interceptor)
        del self._owners[name]

    def check_removable(self, name: str) -> None:
        """Raise what :meth:`remove` would raise, without changing anything."""
        if name not in self._owners:
            raise KeyError(f"hook {name!r} is not installed on {type(self._module).__name__}")
        for interceptor in self._interceptors.values():
            if set(interceptor.wrappers) == {name} and vars(self._module).get(interceptor.method) is not interceptor:
                raise RuntimeError(
                    f"{type(self._module).__name__}.{interceptor.method} was replaced after hasten hooked it; "
                    "remove the later wrapper first"
                )

    def _interceptor(self, method: str) -> _Interceptor:
        if method not in self._interceptors:
            saved = vars(self._module).get(method, _ABSENT)
            interceptor = _Interceptor(self, method, getattr(self._module, method), saved)
            setattr(self._module, method, interceptor)
            self._interceptors[method] = interceptor
        return self._interceptors[method]

    def _restore(self, interceptor: _Interceptor) -> None:
        if interceptor.saved is _ABSENT:
            delattr(self._module, interceptor.method)
        else:
            setattr(self._module, interceptor.method, interceptor.saved)
        del self._interceptors[interceptor.method]
