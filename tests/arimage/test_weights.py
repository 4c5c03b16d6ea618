"""The shipped weights load, verify, and a damaged file names its training command."""

from __future__ import annotations

import shutil

import pytest
import torch

import hasten.arimage as ha
from hasten.arimage.models import WEIGHTS_DIR
from hasten.arimage.models.digits_ar import DigitsAR
from hasten.arimage.models.shipped import load_module
from hasten.diffusion.models import WeightsError


@pytest.mark.parametrize("name", ["digits-ar", "digits-mar", "digits-mar-small"])
def test_shipped_weights_load(name):
    model = ha.load(name)
    assert model.manifest["training"]["command"].startswith("python training/train_digits_")
    assert model.seq_len == 64 and model.num_classes == 10
    if name == "digits-mar":
        assert model.draft is not None and model.draft.name == "digits-mar-small"


def test_digits_ar_generates_digits():
    model = ha.load("digits-ar")
    images, stats = ha.generate(model, [0, 1], "sjd", cfg_scale=3.0, top_k=8, seed=0)
    assert images.shape == (2, 1, 16, 16) and stats.forwards < 2 * 64


def test_corrupted_and_missing_weights_name_the_training_command(tmp_path):
    for f in WEIGHTS_DIR.glob("digits-ar.*"):
        shutil.copy(f, tmp_path / f.name)
    data = bytearray((tmp_path / "digits-ar.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (tmp_path / "digits-ar.safetensors").write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="sha256 does not match.*python training/train_digits_ar.py"):
        load_module("digits-ar", DigitsAR, tmp_path)
    (tmp_path / "digits-ar.safetensors").unlink()
    with pytest.raises(WeightsError, match="missing.*python training/train_digits_ar.py"):
        load_module("digits-ar", DigitsAR, tmp_path)
    (tmp_path / "digits-ar.json").unlink()
    with pytest.raises(WeightsError, match="python training/train_digits_ar.py"):
        load_module("digits-ar", DigitsAR, tmp_path)
    assert torch.__version__
