"""Importing this module registers every built-in drafter (one import per method)."""

from . import draft_model, prompt_lookup  # noqa: F401
from . import early_exit, hierarchical, layer_skip  # noqa: F401
from . import jacobi, recycling, suffix, trie  # noqa: F401
