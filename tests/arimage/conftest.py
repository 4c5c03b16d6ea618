"""Tiny float64 AR image models (exact numerics: a mismatch is a logic bug)."""

from __future__ import annotations

import pytest
import torch

from hasten.arimage.adapters import ContinuousAdapter, DiscreteAdapter
from hasten.arimage.models.digits_ar import ARCHITECTURES, DigitsAR

GRID = (2, 3)  # 6 tokens, vocabulary 4, classes 0-2 (+ null 3)


def tiny_discrete(seed: int = 0, sharpness: float = 4.0, grid: tuple[int, int] = GRID) -> DiscreteAdapter:
    """A random float64 DigitsAR whose output head is scaled so its distributions are peaked
    (flat ones would hide a wrong acceptance rule)."""
    torch.manual_seed(seed)
    module = DigitsAR(**dict(ARCHITECTURES["tiny"], seq_len=grid[0] * grid[1])).double().eval().requires_grad_(False)
    module.head.weight.mul_(sharpness)
    module.class_emb.weight.mul_(3.0)
    codebook = torch.arange(module.vocab_size, dtype=torch.float64).unsqueeze(1)
    return DiscreteAdapter(module, grid, codebook, lambda t: t.double().view(-1, 1, *grid), "tiny-ar")


@pytest.fixture
def tiny_ar() -> DiscreteAdapter:
    return tiny_discrete()


def tiny_continuous(seed: int = 0, draft_seed: int | None = 1) -> "ContinuousAdapter":
    """A random float64 DigitsMAR (6 tokens of 4 values) with a draft of the same size
    (``draft_seed`` None: no draft; equal to ``seed``: the draft is the target's twin)."""
    from hasten.arimage.models.digits_mar import ARCHITECTURES as MAR
    from hasten.arimage.models.digits_mar import TOKEN_DIM, DigitsMAR

    def build(s: int) -> DigitsMAR:
        torch.manual_seed(s)
        return DigitsMAR(**MAR["tiny"]).double().eval().requires_grad_(False)

    draft = None
    if draft_seed is not None:
        draft = ContinuousAdapter(build(draft_seed), lambda t: t, TOKEN_DIM, "tiny-mar-draft")
    return ContinuousAdapter(build(seed), lambda t: t.double().view(-1, 1, 6, 4), TOKEN_DIM, "tiny-mar", None, draft)


@pytest.fixture
def tiny_mar():
    return tiny_continuous()
