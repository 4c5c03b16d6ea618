"""Policies under ``torch.compile``: run the ones dynamo cannot trace outside the graph, with a warning.

``torch.compile(denoiser)`` of a hooked denoiser traces hasten's hooks along with the blocks.
Policies whose decisions trace (``CachePolicy.traceable = True``: ``static``, ``delta_dit``,
``taylorseer``, ``cg_taylor``, ``bac``) compile with the blocks; their data-dependent
steps become graph breaks. A policy that sets ``traceable = False`` (``first_block``: its
reuse decision compares a measured residual diff with the threshold, on block indices that
dynamo turns symbolic) has each policy call run eagerly through
:func:`torch.compiler.disable` (a graph break per call; the blocks themselves still
compile), and a :class:`hasten.compile.CompileFallbackWarning` says so, as
:func:`hasten.compile_model` does on the LLM side. Outputs are those of the eager cache.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch

from hasten.compile import CompileFallbackWarning

__all__ = ["call_policy"]


def call_policy(policy: Any, method: Callable[..., Any], *args: Any) -> Any:
    """``method(*args)`` (a bound method of ``policy``), outside any graph being compiled
    when ``policy.traceable`` is False; a plain call otherwise."""
    if getattr(policy, "traceable", True) or not torch.compiler.is_compiling():
        return method(*args)
    return _eager_call(policy.name, method, *args)


@torch.compiler.disable
def _eager_call(name: str, method: Callable[..., Any], *args: Any) -> Any:
    warnings.warn(
        f"hasten.diffusion: the {name!r} cache's decisions cannot be traced by torch.compile; they run "
        "eagerly (a graph break per block call), the blocks stay compiled",
        CompileFallbackWarning,
        stacklevel=2,
    )
    return method(*args)
