"""Capability flags on :class:`hasten.drafters.MethodSpec` replace field-name and method-name
sniffing in the bench, the CLI and the llama.cpp backend."""

import sys
from dataclasses import dataclass

import pytest

from hasten import cli
from hasten.backends.llamacpp import LlamaCppTarget
from hasten.bench.plan import run_method_options
from hasten.drafters import METHODS, MethodSpec, UnknownMethodError, get_method, list_methods, register
from hasten.drafters.prompt_lookup import PromptLookupDrafter


def test_flags_of_the_builtin_methods():
    assert get_method("draft_model").needs_draft_model and not get_method("draft_model").model_free
    for name in ("layer_skip", "early_exit"):
        assert get_method(name).uses_skip_cache and get_method(name).needs_torch_target
    assert get_method("hierarchical").needs_torch_target
    assert get_method("draft_model").proposes_distributions
    for name in ("prompt_lookup", "suffix", "trie", "jacobi", "recycling", "composite"):
        spec = get_method(name)
        assert spec.model_free and not spec.uses_skip_cache and not spec.needs_draft_model, name


def test_llamacpp_runs_exactly_the_model_free_methods():
    expected = [n for n in list_methods() if n not in ("draft_model", "layer_skip", "early_exit", "hierarchical")]
    assert LlamaCppTarget.supported_methods() == expected


def test_bench_points_only_skip_cache_methods_at_the_run_folder(tmp_path):
    merged = run_method_options(["layer_skip", "prompt_lookup", "early_exit@bf16", "ar"], {}, tmp_path)
    assert set(merged) == {"layer_skip", "early_exit"}
    assert merged["layer_skip"]["skip_cache"] == str(tmp_path / "skip_sets.json")


def test_a_method_registered_with_flags_is_read_by_the_flag_not_its_name(tmp_path):
    @dataclass(frozen=True)
    class CachedLookupConfig:
        skip_cache: str | None = None

    register(MethodSpec("cached_lookup_test", CachedLookupConfig, PromptLookupDrafter, "test", uses_skip_cache=True))
    try:
        assert "cached_lookup_test" in list_methods()
        assert "cached_lookup_test" in run_method_options(["cached_lookup_test"], {}, tmp_path)
    finally:
        METHODS.unregister("cached_lookup_test")
    with pytest.raises(UnknownMethodError, match="unknown method 'cached_lookup_test'"):
        get_method("cached_lookup_test")


def test_draft_model_option_for_a_method_without_one_fails_early(monkeypatch, capsys):
    monkeypatch.setattr(
        sys, "argv", ["hasten", "generate", "hi", "--method", "prompt_lookup", "--draft-model", "self:2"]
    )
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    assert exit_.value.code == 2 and "takes no draft model" in capsys.readouterr().err


def test_methods_lists_draft_and_diffusion_methods():
    from typer.testing import CliRunner

    out = CliRunner().invoke(cli.app, ["methods"]).output
    for name in ("prompt_lookup", "draft_model", "bac", "static", "first_block", "taylorseer"):
        assert f"\n{name} " in out or out.startswith(f"{name} "), name
    assert "diffusion cache methods" in out
