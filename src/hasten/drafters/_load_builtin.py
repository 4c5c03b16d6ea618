"""Importing this module registers every built-in drafter (one import per method)."""

from . import (  # noqa: F401
    composite,
    draft_model,
    early_exit,
    hierarchical,
    jacobi,
    layer_skip,
    prompt_lookup,
    recycling,
    suffix,
    trie,
)
