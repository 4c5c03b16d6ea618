"""The cache-policy protocol and the registry from config type to policy class.

A *policy* is one caching/forecasting method. For each block of each denoiser call it
decides an :class:`Action`; the hooks carry it out. A policy owns no tensors itself: its
per-lane (per-run, per-CFG-branch) tensors live in the state object it creates with
:meth:`CachePolicy.new_state`, which the hooks reset whenever a run starts over.

Call sequence for one denoiser call (one denoising step of one lane)::

    begin_step(state, step)
    for each block i, in call order:
        action = decide(state, step, i)
        COMPUTE  -> run the block; if observes(i): on_compute(state, step, i, feature)
        REUSE / FORECAST -> approximate(state, step, i) gives the feature (None: compute instead)
        BYPASS   -> the block's hidden states pass through unchanged (compute if it has none)

``step`` is the denoising *step index* within the current run of this lane (0, 1, ...),
not the timestep value. Adding a method = one file with a frozen config dataclass, one
:class:`CachePolicy` subclass and one :func:`register_policy` line.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, ClassVar, Protocol

from hasten.diffusion.features import Feature
from hasten.registry import Registry


class Action(enum.Enum):
    """What happens to one block in one denoiser call."""

    COMPUTE = "computed"  # run the block (a cache refresh step for that block)
    REUSE = "reused"  # rebuild the output from a stored feature (a reuse step)
    FORECAST = "forecast"  # rebuild the output from a feature extrapolated over steps (a forecast step)
    BYPASS = "bypassed"  # skip the block, hidden states unchanged: a later block's output is forecast


class FeatureKind(enum.Enum):
    """Which feature a policy wants for a block; see :mod:`hasten.diffusion.features`."""

    RESIDUAL = "residual"  # output - input; falls back to OUTPUT where the block has no residual
    OUTPUT = "output"


class PolicyState(Protocol):
    """Per-lane state of a policy; ``reset()`` forgets everything (a new run)."""

    def reset(self) -> None: ...


class CachePolicy:
    """Base class of cache methods. Subclasses set ``name`` and override the hooks they need.

    The defaults compute every block and observe nothing, so a subclass that overrides
    nothing is exactly the uncached model.
    """

    name: ClassVar[str] = "none"
    # False: torch.compile cannot trace this policy's calls; they run eagerly (hasten.diffusion.compiling).
    traceable: ClassVar[bool] = True

    def __init__(self, num_blocks: int) -> None:
        if num_blocks < 1:
            raise ValueError(f"num_blocks must be >= 1, got {num_blocks}")
        self.num_blocks = num_blocks

    @classmethod
    def contract_configs(cls, num_blocks: int, num_steps: int) -> tuple[Any, Any] | None:
        """The configs the cache contract suite runs this method with on a toy denoiser of
        ``num_blocks`` blocks over ``num_steps`` steps: (a config that reuses nothing, so the
        output must equal the uncached model's bitwise; a config that does skip blocks). None:
        the method's test module writes its own contract class instead."""
        return None

    def new_state(self) -> PolicyState:
        """A fresh per-lane state."""
        return _NoState()

    def feature_kind(self, block: int) -> FeatureKind:
        """The feature this policy stores for ``block`` (default: residual)."""
        return FeatureKind.RESIDUAL

    def observes(self, block: int) -> bool:
        """Whether :meth:`on_compute` wants ``block``'s feature (computing it costs a subtraction)."""
        return False

    def begin_step(self, state: Any, step: int) -> None:
        """Called once at the start of each denoiser call of the lane."""

    def decide(self, state: Any, step: int, block: int) -> Action:
        """The action for ``block`` at denoising step index ``step``."""
        return Action.COMPUTE

    def on_compute(self, state: Any, step: int, block: int, feature: Feature) -> float | None:
        """Record a computed block's feature. May be called for any block at any step.

        Returns:
            A measured residual diff (relative L1, a fraction) to show in the summary, or None.
        """
        return None

    def approximate(self, state: Any, step: int, block: int) -> Feature | None:
        """The feature for a REUSE/FORECAST decision; None when unavailable (the block is then computed)."""
        return None


class _NoState:
    def reset(self) -> None:
        """Nothing to forget."""


POLICIES: Registry[Callable[[Any, int], CachePolicy]] = Registry("cache method", ("hasten.diffusion.methods.*",))
"""Every diffusion cache method: name -> ``factory(config, num_blocks)``, also found by config type."""


def register_policy(config_type: type, factory: Callable[[Any, int], CachePolicy], name: str | None = None) -> None:
    """Register ``factory(config, num_blocks)`` as the policy for configs of ``config_type``.

    ``name`` defaults to ``factory.name`` (a :class:`CachePolicy` subclass's name), else the
    config type's name; it is the method's name in ``hasten methods`` and the benches.

    Raises:
        ValueError: ``config_type`` (or the name) is already registered.
    """
    name = name or getattr(factory, "name", "") or config_type.__name__
    POLICIES.register(name, factory, key_type=config_type)


def policy_names() -> tuple[str, ...]:
    """Every registered diffusion cache method name, sorted."""
    return POLICIES.names()


def config_type_of(name: str) -> type:
    """The config dataclass registered for cache method ``name``.

    Raises:
        UnknownNameError: no such method.
    """
    return POLICIES.key_type(name)


def build_policy(config: Any, num_blocks: int) -> CachePolicy:
    """The policy for ``config`` on a denoiser with ``num_blocks`` blocks.

    Raises:
        TypeError: no policy is registered for ``type(config)``.
        ValueError: the config does not fit the denoiser (e.g. more probe blocks than blocks).
    """
    return POLICIES.for_config(config)(config, num_blocks)


class FeatureStore:
    """Per-lane storage of the latest feature of each block; ``reset()`` empties it."""

    def __init__(self) -> None:
        self.features: dict[int, Feature] = {}

    def reset(self) -> None:
        self.features.clear()
