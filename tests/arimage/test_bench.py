"""``hasten bench-arimage`` end to end on the shipped digits-ar model, a few images."""

from __future__ import annotations

import json

import pytest
import torch

from hasten.arimage.bench import ArimageBenchOptions, run_bench, settings_for


def _options(out, **kw) -> ArimageBenchOptions:
    base = dict(models=("digits-ar",), images=4, continuous_images=4, timing_images=1, repeats=1)
    base.update(kw)
    return ArimageBenchOptions(out, **base)


def test_methods_filter_records_and_resume(tmp_path):
    torch.set_num_threads(1)
    records = run_bench(_options(tmp_path, methods=("sjd",)), progress=lambda *_: None)
    sjd_settings = [s.label for s in settings_for("digits-ar", False) if s.method == "sjd"]
    assert [r["setting"] for r in records] == sjd_settings  # only the asked method, every setting
    for r in records:
        assert "error" not in r, r
        assert r["method"] == "sjd" and r["speedup"] > 0 and r["images"] == 4
        assert r["forward_reduction"] >= 1.0  # a Jacobi window never takes more forwards than tokens
        assert 0 <= r["accuracy"] <= 1 and r["fid"] >= 0 and "token_min_p" in r
    assert (tmp_path / "report.md").read_text().count("| sjd |") == len(sjd_settings)
    lines = (tmp_path / "records.jsonl").read_text().splitlines()
    # resuming with the same filter measures nothing new
    again = run_bench(_options(tmp_path, methods=("sjd",), resume=True), progress=lambda *_: None)
    assert len(again) == len(records) and (tmp_path / "records.jsonl").read_text().splitlines() == lines
    assert json.loads((tmp_path / "meta.json").read_text())["protocol"]["images"] == 4


def test_bad_bench_options(tmp_path):
    with pytest.raises(ValueError, match="not measured"):
        _options(tmp_path, methods=("gsdx",))
    with pytest.raises(ValueError, match="not measured"):
        _options(tmp_path, methods=("disa",))  # a continuous-model method on a discrete model
    run_bench(_options(tmp_path, methods=("lantern",), quick=True), progress=lambda *_: None)
    with pytest.raises(ValueError, match="--resume"):
        run_bench(_options(tmp_path, images=5, resume=True, quick=True), progress=lambda *_: None)
