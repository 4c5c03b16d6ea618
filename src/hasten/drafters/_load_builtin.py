"""Importing this module registers every built-in drafter (one import per method)."""

from . import draft_model, prompt_lookup  # noqa: F401
