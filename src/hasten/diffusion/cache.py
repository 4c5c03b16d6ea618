"""enable / disable and the cache handle that owns one denoiser's hooks and state.

:func:`enable` installs one named hook (``"hasten.diffusion"``) on the denoiser (to see
each call: its lane, step index and run boundaries) and on each of its blocks (to carry out
the policy's action). :func:`disable` removes them, leaving ``forward`` exactly as before.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any

import torch

from hasten.diffusion.blocks import BlockRef, DenoiserSpec, builtin_spec, forward_parameters, resolve_blocks
from hasten.diffusion.compiling import call_policy
from hasten.diffusion.features import (
    apply_residual,
    flatten,
    layout_sources,
    output_feature,
    pass_through,
    residual_feature,
    residual_inputs,
    unflatten,
)
from hasten.diffusion.hooks import HookRegistry
from hasten.diffusion.policy import Action, CachePolicy, FeatureKind, build_policy
from hasten.diffusion.state import BlockRecord, Lane, RunTracker, tensor_signature, timestep_value
from hasten.diffusion.summary import CacheStats, CacheSummary

HOOK_NAME = "hasten.diffusion"


class CacheHandle:
    """The cache installed on one denoiser: its policy, lanes, counters and hooks.

    Created by :func:`enable`; not meant to be constructed directly.

    Attributes:
        module: the denoiser.
        config: the method config it was enabled with.
        policy: the :class:`~hasten.diffusion.policy.CachePolicy` built from ``config``.
        blocks: the denoiser's blocks in call order.
    """

    def __init__(
        self, module: torch.nn.Module, config: Any, spec: DenoiserSpec, blocks: list[BlockRef], policy: CachePolicy
    ) -> None:
        self.module = module
        self.config = config
        self.spec = spec
        self.policy = policy
        self.blocks: tuple[BlockRef, ...] = tuple(blocks)
        self._parameters = forward_parameters(module)
        self._kinds = tuple(policy.feature_kind(i) for i in range(len(self.blocks)))
        self._observes = tuple(policy.observes(i) for i in range(len(self.blocks)))
        self._tracker = RunTracker(policy.new_state)
        self._stats = CacheStats(len(self.blocks))
        self._active: Lane | None = None
        self._user_branch: str | None = None
        self._pipeline_context: tuple[str, int | None] | None = None
        self._installed = False

    # ----- public -----

    def summary(self) -> CacheSummary:
        """Block evaluations computed/reused/forecast/bypassed per step and per block, and the
        residual diffs the method measured, since :func:`enable` or :meth:`reset_stats`."""
        return self._stats.snapshot(self.policy.name, tuple(b.name for b in self.blocks))

    def reset(self) -> None:
        """Forget all cached features; the next call of every lane starts a new run."""
        self._tracker.reset()

    def reset_stats(self) -> None:
        """Zero the counters behind :meth:`summary`."""
        self._stats.reset()

    @contextlib.contextmanager
    def run(self) -> Iterator[CacheHandle]:
        """Declare one sampling run: state is reset on entry and exit, and inside it only a
        change of input shapes starts over (not the timestep sequence).

        Use it for loops whose timesteps are not monotonic (restart samplers) or for
        denoisers without a timestep argument.

        Raises:
            RuntimeError: runs are nested.
        """
        if self._tracker.explicit_run:
            raise RuntimeError("CacheHandle.run() contexts do not nest")
        self._tracker.reset()
        self._tracker.explicit_run = True
        try:
            yield self
        finally:
            self._tracker.explicit_run = False
            self._tracker.reset()

    @contextlib.contextmanager
    def branch(self, name: str) -> Iterator[CacheHandle]:
        """Name the CFG branch (lane) of the denoiser calls made inside, e.g. ``"cond"``/``"uncond"``.

        Only needed for hand-written loops whose branches are not told apart by the call
        order at each timestep; takes precedence over diffusers' ``cache_context`` names.
        """
        previous, self._user_branch = self._user_branch, name
        try:
            yield self
        finally:
            self._user_branch = previous

    def remove(self) -> None:
        """Uninstall every hook and drop all state (what :func:`disable` calls).

        Raises:
            RuntimeError: another library re-wrapped a hooked method after :func:`enable`;
                nothing is removed then.
        """
        if not self._installed:
            return
        registries = [HookRegistry.find(m) for m in self._hooked_modules()]
        for registry in registries:
            registry.check_removable(HOOK_NAME)
        for registry in registries:
            registry.remove(HOOK_NAME)
        self._installed = False
        self._tracker.reset()

    # ----- installation -----

    def _hooked_modules(self) -> list[torch.nn.Module]:
        return [self.module] + [b.module for b in self.blocks]

    def _install(self) -> None:
        modules = self._hooked_modules()
        if len({id(m) for m in modules}) != len(modules):
            raise ValueError("the spec lists a module twice (the denoiser itself or a block)")
        for m in modules:
            registry = HookRegistry.find(m)
            if registry is not None and HOOK_NAME in registry.names():
                raise ValueError(f"hasten.diffusion is already enabled on {type(m).__name__}; disable it first")
        root: dict[str, Callable[..., Any]] = {"forward": self._denoiser_forward}
        if callable(getattr(self.module, "cache_context", None)):
            root["cache_context"] = self._cache_context
        HookRegistry.of(self.module).add(HOOK_NAME, self, root)
        for index, block in enumerate(self.blocks):
            wrapper = functools.partial(self._block_forward, index)
            HookRegistry.of(block.module).add(HOOK_NAME, self, {"forward": wrapper})
        self._installed = True

    # ----- the wrappers -----

    @contextlib.contextmanager
    def _cache_context(self, call_next: Callable[..., Any], name: str, **kwargs: Any) -> Iterator[None]:
        previous, self._pipeline_context = self._pipeline_context, (name, kwargs.get("step_index"))
        try:
            with call_next(name, **kwargs):
                yield
        finally:
            self._pipeline_context = previous

    def _denoiser_forward(self, call_next: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self._active is not None:  # re-entrant call from inside the denoiser: not a step of its own
            return call_next(*args, **kwargs)
        branch, step_index = self._user_branch, None
        if self._pipeline_context is not None:
            branch = branch if branch is not None else self._pipeline_context[0]
            step_index = self._pipeline_context[1]
        lane = self._tracker.begin_call(
            branch, timestep_value(self._timestep(args, kwargs)), step_index, tensor_signature(args, kwargs)
        )
        self._stats.calls += 1
        self._stats.runs += int(lane.step == 0)
        call_policy(self.policy, self.policy.begin_step, lane.policy_state, lane.step)
        self._active = lane
        try:
            return call_next(*args, **kwargs)
        finally:
            self._active = None

    def _timestep(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        name = self.spec.timestep_arg
        if name is None:
            return None
        if name in kwargs:
            return kwargs[name]
        position = self._parameters.index(name) if name in self._parameters else len(args)
        return args[position] if position < len(args) else None

    def _block_forward(self, index: int, call_next: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        lane = self._active
        if lane is None:  # called outside a denoiser call: plain block
            return call_next(*args, **kwargs)
        signature = tensor_signature(args, kwargs)
        if lane.block_signatures.setdefault(index, signature) != signature:
            lane.dirty = True  # feature shapes changed mid-run: compute, and restart at the next call
        action = (
            Action.COMPUTE
            if lane.dirty
            else call_policy(self.policy, self.policy.decide, lane.policy_state, lane.step, index)
        )
        if action is not Action.COMPUTE:
            output = self._approximate(lane, index, action, args, kwargs)
            if output is not None:
                self._stats.record(lane.step, index, action)
                return output
        output = call_next(*args, **kwargs)
        self._stats.record(lane.step, index, Action.COMPUTE)
        if not lane.dirty:
            self._observe(lane, index, args, kwargs, output)
        return output

    # ----- feature plumbing -----

    def _kind(self, index: int, has_residual: bool) -> FeatureKind:
        wants_residual = self._kinds[index] is FeatureKind.RESIDUAL
        return FeatureKind.RESIDUAL if has_residual and wants_residual else FeatureKind.OUTPUT

    def _observe(self, lane: Lane, index: int, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
        record = lane.records.get(index)
        if record is not None and not self._observes[index]:
            return
        block = self.blocks[index]
        sources = residual_inputs(output, block.named_inputs(args, kwargs), block.outputs)
        if record is None:
            record = lane.records[index] = BlockRecord(flatten(output)[1], sources is not None)
        if not self._observes[index]:
            return
        if self._kind(index, record.has_residual) is FeatureKind.RESIDUAL and sources is not None:
            feature = residual_feature(output, sources)
        else:
            feature = output_feature(output)
        measured = call_policy(self.policy, self.policy.on_compute, lane.policy_state, lane.step, index, feature)
        if measured is not None:
            self._stats.residual_diffs.append(measured)

    def _approximate(
        self, lane: Lane, index: int, action: Action, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any | None:
        """The block's output rebuilt without running it, or None if that is not possible."""
        record = lane.records.get(index)
        if record is None:
            return None
        block = self.blocks[index]
        sources = layout_sources(record.layout, block.named_inputs(args, kwargs), block.outputs)
        if action is Action.BYPASS:
            return pass_through(record.layout, sources) if record.has_residual and sources is not None else None
        feature = call_policy(self.policy, self.policy.approximate, lane.policy_state, lane.step, index)
        if feature is None:
            return None
        if self._kind(index, record.has_residual) is FeatureKind.RESIDUAL:
            return apply_residual(record.layout, sources, feature) if sources is not None else None
        return unflatten(record.layout, [t.clone() for t in feature])


def enable(module: torch.nn.Module, config: Any, spec: DenoiserSpec | None = None) -> CacheHandle:
    """Install a training-free cache on a denoiser (a diffusion transformer, a UNet, any module).

    Args:
        module: the denoiser, e.g. ``pipe.transformer`` or ``pipe.unet``; any ``nn.Module``
            whose blocks ``spec`` describes.
        config: a method config: :class:`StaticCacheConfig`, :class:`DeltaDiTConfig`,
            :class:`FirstBlockCacheConfig`, :class:`TaylorSeerConfig`, :class:`CGTaylorConfig`
            or any config registered with :func:`register_policy`.
        spec: where the blocks are; None uses the built-in spec for ``module``'s class.

    Returns:
        The :class:`CacheHandle` (``summary()``, ``reset()``, ``run()``, ``branch()``).

    Raises:
        ValueError: no spec is known for the module, the spec does not match it, the
            config does not fit the block count, or the module already has a hasten cache.
        TypeError: ``config`` is not a registered method config.
    """
    spec = spec if spec is not None else builtin_spec(module)
    if spec is None:
        raise ValueError(
            f"no built-in block metadata for {type(module).__name__}; pass spec=DenoiserSpec(groups=(BlockGroup(...),))"
        )
    blocks = resolve_blocks(module, spec)
    handle = CacheHandle(module, config, spec, blocks, build_policy(config, len(blocks)))
    handle._install()
    return handle


def handle_of(module: torch.nn.Module) -> CacheHandle | None:
    """The cache handle enabled on ``module`` (the denoiser passed to :func:`enable`), or None."""
    registry = HookRegistry.find(module)
    owner = registry.owner(HOOK_NAME) if registry is not None else None
    return owner if isinstance(owner, CacheHandle) and owner.module is module else None


def disable(module: torch.nn.Module) -> None:
    """Remove the cache from ``module``; its ``forward`` and its blocks' are exactly as before :func:`enable`.

    Raises:
        ValueError: ``module`` has no hasten cache (pass the module given to :func:`enable`).
        RuntimeError: another library re-wrapped a hooked method afterwards (see :meth:`CacheHandle.remove`).
    """
    handle = handle_of(module)
    if handle is None:
        raise ValueError(f"hasten.diffusion is not enabled on this {type(module).__name__}")
    handle.remove()
