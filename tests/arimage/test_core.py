"""The pure core on hand-computed inputs."""

from __future__ import annotations

import pytest
import torch

from hasten.arimage.core import CFGRows, DecodeSettings, gsd_accept_mass, lantern_accept_mass, neighbour_order


def test_cfg_rows_by_role():
    out = torch.tensor([[0.0], [2.0]])
    assert CFGRows(("uncond", "cond")).combine(out, 3.0).tolist() == [6.0]  # 0 + 3 * (2 - 0)
    assert CFGRows(("cond", "uncond")).combine(out, 3.0).tolist() == [-4.0]  # 2 + 3 * (0 - 2)
    assert CFGRows(("cond",)).combine(out[:1], 3.0).tolist() == [0.0]
    assert CFGRows(("cond", "uncond")).class_ids(4, 10).tolist() == [4, 10]
    with pytest.raises(ValueError, match="roles"):
        CFGRows(("uncond",))
    with pytest.raises(ValueError, match="roles"):
        CFGRows(("cond", "cond"))


def test_settings_validate():
    with pytest.raises(ValueError, match="cfg_scale"):
        DecodeSettings(cfg_scale=0.5)
    with pytest.raises(ValueError, match="temperature"):
        DecodeSettings(temperature=0)
    with pytest.raises(ValueError, match="top_p"):
        DecodeSettings(top_p=0)


def test_neighbour_order():
    order = neighbour_order(torch.tensor([[0.0], [1.0], [3.0], [1.5]]))
    assert order[0].tolist() == [0, 1, 3, 2]
    assert order[2].tolist() == [2, 3, 1, 0]


def test_lantern_mass_hand_computed():
    order = torch.tensor([[0, 1, 2], [1, 0, 2], [2, 1, 0]])
    target = torch.tensor([[0.1, 0.5, 0.4]], dtype=torch.float64)
    draft = torch.tensor([0])
    assert lantern_accept_mass(draft, target, order, 2, 0.45).tolist() == [pytest.approx(0.1)]
    assert lantern_accept_mass(draft, target, order, 2, 0.5).tolist() == [pytest.approx(0.6)]
    assert lantern_accept_mass(draft, target, order, 2, 1.0).tolist() == [pytest.approx(1.0)]
    assert lantern_accept_mass(draft, target, order, 1, 1.0).tolist() == [pytest.approx(0.6)]
    assert lantern_accept_mass(draft, target, order, 2, 0.0).tolist() == [pytest.approx(0.1)]


def test_gsd_mass_hand_computed():
    order = torch.tensor([[0, 1, 2], [1, 0, 2], [2, 1, 0]])
    target = torch.tensor([[0.25, 0.35, 0.4]], dtype=torch.float64)
    draft_probs = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)
    num, den = gsd_accept_mass(torch.tensor([0]), draft_probs, target, order, group_size=2, neighbours=1)
    assert (num.item(), den.item()) == (pytest.approx(0.6), pytest.approx(1.0))
    # token 1 is not in the top 1 of the target (2 is): no group
    num, den = gsd_accept_mass(torch.tensor([0]), draft_probs, target, order, group_size=1, neighbours=1)
    assert (num.item(), den.item()) == (pytest.approx(0.25), pytest.approx(1.0))
    # with two neighbours, token 2 (top 1) joins the group
    num, den = gsd_accept_mass(torch.tensor([0]), draft_probs, target, order, group_size=1, neighbours=2)
    assert (num.item(), den.item()) == (pytest.approx(0.65), pytest.approx(1.0))
    num, den = gsd_accept_mass(torch.tensor([0]), draft_probs, target, order, group_size=1, neighbours=0)
    assert (num.item(), den.item()) == (pytest.approx(0.25), pytest.approx(1.0))
    num, den = gsd_accept_mass(torch.tensor([0]), draft_probs, target, order, group_size=0, neighbours=2)
    assert (num.item(), den.item()) == (pytest.approx(0.25), pytest.approx(1.0))
