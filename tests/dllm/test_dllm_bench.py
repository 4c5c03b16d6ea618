"""bench-dllm harness and CLI: records, the lossless control, resume, refusal to overwrite."""

from __future__ import annotations

import json

import pytest

from hasten.dllm.bench import SETTINGS, DLLMBenchOptions, run_bench

FIELDS = {
    "method",
    "setting",
    "gen_length",
    "speedup",
    "forwards_per_token",
    "accuracy",
    "reference_accuracy",
    "agreement",
}


def small(out, **kw):
    base = dict(gen_lengths=(32,), tasks=("arithmetic",), n_prompts=2, settings=("control fast_dllm t1.0 none",))
    return DLLMBenchOptions.make(out, **{**base, **kw})


def test_control_agrees_with_reference_and_resume_skips(tmp_path):
    records = run_bench(small(tmp_path), progress=lambda s: None)
    (rec,) = records
    assert FIELDS <= rec.keys()
    assert rec["agreement"] == 1.0  # threshold 1, no cache == the reference sampler
    assert rec["accuracy"] == rec["reference_accuracy"]
    assert rec["forwards_per_token"] == 1.0  # one token per forward, hand count: 32 forwards for 32 tokens
    for name in ("report.md", "pareto.png", "canvas.png"):
        assert (tmp_path / name).stat().st_size > 0
    with pytest.raises(ValueError, match="--resume"):
        run_bench(small(tmp_path), progress=lambda s: None)
    again = run_bench(small(tmp_path, resume=True), progress=lambda s: None)
    assert len(again) == 1 and len((tmp_path / "records.jsonl").read_text().splitlines()) == 1


def test_fast_method_uses_fewer_forwards(tmp_path):
    opts = small(tmp_path, settings=("fast_dllm t0.9 dual",))
    (rec,) = run_bench(opts, progress=lambda s: None)
    assert rec["forwards_per_token"] <= 1.0 and 0.0 <= rec["agreement"] <= 1.0
    json.dumps(rec)


def test_bad_options():
    with pytest.raises(ValueError, match="unknown settings"):
        DLLMBenchOptions.make("x", settings=("nope",))
    with pytest.raises(ValueError, match="multiple"):
        DLLMBenchOptions.make("x", gen_lengths=(33,))
    assert "ar_guided smollm2-135m" in SETTINGS


def test_cli_generate(capsys):
    from typer.testing import CliRunner

    from hasten.cli import app

    result = CliRunner().invoke(app, ["dllm", "generate", "--gen-length", "32", "--method", "fast_dllm", "Question: x"])
    assert result.exit_code == 0, result.output
    assert "forwards" in result.output


def test_resume_runs_only_the_missing_settings_of_a_group(tmp_path):
    run_bench(small(tmp_path), progress=lambda s: None)
    both = ("control fast_dllm t1.0 none", "fast_dllm t0.9 dual")
    lines: list[str] = []
    records = run_bench(small(tmp_path, resume=True, settings=both), progress=lines.append)
    assert sorted(r["setting"] for r in records) == sorted(both)
    assert len(lines) == 1 and lines[0].startswith("arithmetic G=32 fast_dllm t0.9 dual")
    assert len((tmp_path / "records.jsonl").read_text().splitlines()) == 2
