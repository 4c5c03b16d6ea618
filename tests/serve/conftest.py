"""Fixtures of the server tests (helpers in serve_live.py)."""

import pytest
import torch

from .serve_live import char_tokenizer, tiny_serve_model


@pytest.fixture(scope="module")
def tiny_setup():
    torch.manual_seed(0)
    return tiny_serve_model(), char_tokenizer()
