"""Bad input: one clear error each."""

from __future__ import annotations

import pytest

import hasten.arimage as ha
from hasten.arimage.methods.continuous_sd import ContinuousSDConfig
from hasten.arimage.methods.disa import DiSAConfig
from hasten.arimage.methods.gsd import GSDConfig
from hasten.arimage.methods.lantern import LanternConfig
from hasten.arimage.methods.sjd import SJDConfig


@pytest.mark.parametrize("config", [SJDConfig, GSDConfig, LanternConfig])
@pytest.mark.parametrize("window", [0, -3, 1.5])
def test_window_below_one(config, window):
    with pytest.raises(ValueError, match="window must be an int >= 1"):
        config(window=window)


def test_window_zero_through_generate(tiny_ar):
    with pytest.raises(ValueError, match="window must be an int >= 1"):
        ha.generate(tiny_ar, [0], "sjd", window=0)


def test_top_k_larger_than_vocabulary(tiny_ar):
    with pytest.raises(ValueError, match="top_k=5 is larger than the vocabulary \\(4 tokens\\)"):
        ha.generate(tiny_ar, [0], "sjd", top_k=5)
    ha.generate(tiny_ar, [0], "sjd", top_k=4)  # the whole vocabulary is fine


@pytest.mark.parametrize("label", [3, -1, 99])
def test_unknown_class_label(tiny_ar, label):
    with pytest.raises(ValueError, match=f"unknown class label {label}: the model has classes 0..2"):
        ha.generate(tiny_ar, [0, label], "reference")


def test_other_fields():
    with pytest.raises(ValueError, match="init"):
        SJDConfig(init="diagonal")
    with pytest.raises(ValueError, match="delta"):
        LanternConfig(delta=1.5)
    with pytest.raises(ValueError, match="group_size"):
        GSDConfig(group_size=-1)
    with pytest.raises(ValueError, match="end_steps"):
        DiSAConfig(start_steps=5, end_steps=6)
    with pytest.raises(ValueError, match="schedule"):
        DiSAConfig(schedule="exponential")
    with pytest.raises(ValueError, match="switch"):
        DiSAConfig(schedule="two_stage", switch=1.5)
    with pytest.raises(ValueError, match="gamma"):
        ContinuousSDConfig(gamma=0)


def test_settings_errors(tiny_ar):
    with pytest.raises(ValueError, match="cfg_scale"):
        ha.generate(tiny_ar, [0], "sjd", cfg_scale=0.5)
    with pytest.raises(ValueError, match="roles"):
        ha.generate(tiny_ar, [0], "sjd", cfg_roles=("uncond", "uncond"))
    with pytest.raises(TypeError, match="SJDConfig"):
        ha.generate(tiny_ar, [0], "sjd", config=GSDConfig())
    with pytest.raises(ValueError, match="needs a draft"):
        from .conftest import tiny_continuous

        ha.generate(tiny_continuous(draft_seed=None), [0], "continuous_sd", head_steps=2)
