"""Importing this module registers every built-in drafter (one import per method)."""

from . import draft_model, early_exit, hierarchical, jacobi, layer_skip, prompt_lookup, recycling, suffix, trie  # noqa: F401  # noqa: F401  # noqa: F401
