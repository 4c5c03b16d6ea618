"""Regression tests for issue 22 (adversarial cases): recurrent / hybrid caches, left padding,
short learned-position contexts, the cost-curve cache. Tiny float64 models, offline."""

from __future__ import annotations

import json
import logging
import time
import warnings

import pytest
import torch
import transformers

import hasten
from hasten import cost, kv
from hasten.targets import resolve_target as _make_target

# --- 1. recurrent and hybrid models -------------------------------------------------------

# Tiny configs of recurrent / hybrid architectures (transformers 5.24+ config classes).
RECURRENT = {
    "mamba": (
        "MambaConfig",
        "MambaForCausalLM",
        {
            "hidden_size": 16,
            "state_size": 4,
            "num_hidden_layers": 2,
            "expand": 2,
            "conv_kernel": 4,
        },
    ),
    "mamba2": (
        "Mamba2Config",
        "Mamba2ForCausalLM",
        {
            "hidden_size": 16,
            "state_size": 4,
            "num_hidden_layers": 2,
            "expand": 2,
            "conv_kernel": 4,
            "num_heads": 4,
            "head_dim": 8,
            "n_groups": 1,
        },
    ),
    "jamba": (
        "JambaConfig",
        "JambaForCausalLM",
        {
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "attn_layer_period": 2,
            "attn_layer_offset": 1,
            "expert_layer_period": 2,
            "expert_layer_offset": 1,
            "num_experts": 2,
            "mamba_d_state": 4,
            "mamba_d_conv": 4,
            "mamba_expand": 2,
        },
    ),
    "zamba2": (
        "Zamba2Config",
        "Zamba2ForCausalLM",
        {
            "hidden_size": 16,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "mamba_d_state": 4,
            "mamba_headdim": 8,
            "mamba_ngroups": 1,
            "n_mamba_heads": 4,
            "intermediate_size": 32,
            "layers_block_type": ["mamba", "hybrid"],
            "use_mem_rope": False,
        },
    ),
    "bamba": (
        "BambaConfig",
        "BambaForCausalLM",
        {
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "mamba_n_heads": 4,
            "mamba_d_head": 8,
            "mamba_n_groups": 1,
            "mamba_d_state": 4,
            "attn_layer_indices": [1],
        },
    ),
    "falcon_h1": (
        "FalconH1Config",
        "FalconH1ForCausalLM",
        {
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "mamba_n_heads": 4,
            "mamba_d_head": 8,
            "mamba_n_groups": 1,
            "mamba_d_ssm": 32,
            "mamba_d_state": 4,
        },
    ),
    "lfm2": (
        "Lfm2Config",
        "Lfm2ForCausalLM",
        {
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "full_attn_idxs": [1],
        },
    ),
    "qwen3_next": (
        "Qwen3NextConfig",
        "Qwen3NextForCausalLM",
        {
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": 8,
            "linear_num_value_heads": 2,
            "linear_num_key_heads": 2,
            "linear_key_head_dim": 8,
            "linear_value_head_dim": 8,
            "num_experts": 2,
            "num_experts_per_tok": 1,
            "moe_intermediate_size": 16,
            "shared_expert_intermediate_size": 16,
            "layer_types": ["linear_attention", "full_attention"],
        },
    ),
    "recurrent_gemma": (
        "RecurrentGemmaConfig",
        "RecurrentGemmaForCausalLM",
        {
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": 8,
            "lru_width": 16,
            "attention_window_size": 16,
            "block_types": ["recurrent", "attention"],
        },
    ),
}
PROMPT = [
    5,
    9,
    17,
    5,
    9,
    17,
    5,
    9,
    40,
    41,
    5,
    9,
    17,
]  # repeats: prompt_lookup and suffix draft


def _recurrent(name: str) -> torch.nn.Module:
    config_name, model_name, kwargs = RECURRENT[name]
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        config = getattr(transformers, config_name)(vocab_size=64, **kwargs)
        return getattr(transformers, model_name)(config).double().eval()


@pytest.mark.parametrize("name", sorted(RECURRENT))
def test_recurrent_and_hybrid_models_are_refused_before_generating(name):
    """Their cache carries SSM / conv / linear-attention state that kv.rollback never trims:
    every method (and plain decoding, wrong on some of them) is refused with one error."""
    model = _recurrent(name)
    streamed = []
    for method in (None, "prompt_lookup", "suffix"):
        with pytest.raises(ValueError, match="recurrent / convolution / linear-attention"):
            hasten.generate(model, PROMPT, method=method, max_new_tokens=8, streamer=streamed.append)
    assert streamed == []  # refused before any token
    from hasten.cache_probe import UnsupportedCacheError, recurrent_layers

    assert recurrent_layers(transformers.DynamicCache(config=model.config))  # the structural check sees them
    with pytest.raises(UnsupportedCacheError):
        hasten.generate(model, PROMPT, method="trie", max_new_tokens=8)


def test_rollback_probe_catches_a_cache_that_does_not_roll_back(tiny_factory, monkeypatch):
    """The behavioural probe, not a version check: an attention model whose rollback is broken
    (here: a no-op, as an API change could make it) is refused for speculation, while plain
    decoding (no rollback) stays allowed and correct."""
    from hasten.cache_probe import UnsupportedCacheError, check_cache, probe_rollback

    model = tiny_factory("llama", seed=3)
    target = _make_target(model)
    assert probe_rollback(target) is None  # positive control: the real rollback passes
    assert "reports 2 tokens" in probe_rollback(_WithRollback(target, lambda cache, length: None))

    def keep_last(cache, length):  # right length, wrong tokens: what a changed cache layout could do
        for layer in cache.layers:
            layer.keys, layer.values = (
                layer.keys[..., -length:, :],
                layer.values[..., -length:, :],
            )

    monkeypatch.setattr(kv, "rollback", keep_last)
    target = _make_target(model)
    assert "differ" in probe_rollback(target)
    with pytest.raises(UnsupportedCacheError, match="does not behave"):
        check_cache(target, speculative=True)
    check_cache(target, speculative=False)
    plain = hasten.generate(model, PROMPT, max_new_tokens=10, eos_token_id=[])
    expected = model.generate(torch.tensor([PROMPT]), max_new_tokens=10, min_new_tokens=10, do_sample=False)
    assert plain.sequences.tolist() == expected.tolist()


class _WithRollback:
    def __init__(self, target, rollback):
        self._target, self.rollback = target, rollback

    def __getattr__(self, name):
        return getattr(self._target, name)

    def __setattr__(self, name, value):
        if name in ("_target", "rollback"):
            object.__setattr__(self, name, value)
        else:
            setattr(self._target, name, value)


@pytest.mark.parametrize("kv_cache", ["dynamic", "static"])
def test_attention_models_pass_the_probe(tiny_factory, kv_cache):
    from hasten.cache_probe import probe_rollback

    for kind in ("llama", "gemma3", "gpt2"):
        target = _make_target(tiny_factory(kind))
        assert probe_rollback(target, static=kv_cache == "static") is None, kind
        assert target.forwards == 0  # the probe's forwards are not counted as generation


# --- 2. left-padded batch-1 input ---------------------------------------------------------


@pytest.mark.parametrize("method", [None, "prompt_lookup", "suffix", "trie"])
def test_left_padded_prompt_matches_model_generate_with_the_same_mask(tiny_factory, method):
    model = tiny_factory("llama", seed=1)
    pads = 3
    ids = torch.tensor([[0] * pads + PROMPT])
    mask = torch.tensor([[0] * pads + [1] * len(PROMPT)])
    expected = model.generate(
        input_ids=ids,
        attention_mask=mask,
        max_new_tokens=16,
        min_new_tokens=16,
        do_sample=False,
        pad_token_id=0,
    )
    unpadded = model.generate(torch.tensor([PROMPT]), max_new_tokens=16, min_new_tokens=16, do_sample=False)
    assert expected[0, pads:].tolist() == unpadded[0].tolist()  # what "honouring the mask" means
    as_dict = hasten.generate(
        model,
        {"input_ids": ids, "attention_mask": mask},
        method=method,
        max_new_tokens=16,
        eos_token_id=[],
    )
    assert as_dict.sequences.tolist() == expected.tolist()
    as_kwarg = hasten.generate(
        model,
        ids,
        attention_mask=mask,
        method=method,
        max_new_tokens=16,
        eos_token_id=[],
    )
    assert as_kwarg.sequences.tolist() == expected.tolist()
    assert as_dict.stats.prompt_tokens == len(PROMPT)


def test_masks_that_are_not_left_padding_are_refused(tiny_factory):
    model = tiny_factory("llama")
    ids = torch.tensor([PROMPT])
    right = torch.ones_like(ids)
    right[0, -2:] = 0
    with pytest.raises(ValueError, match="right padding"):
        hasten.generate(model, ids, attention_mask=right, max_new_tokens=4)
    with pytest.raises(ValueError, match="positions"):
        hasten.generate(model, ids, attention_mask=torch.ones(1, 3), max_new_tokens=4)
    with pytest.raises(ValueError, match="empty prompt"):
        hasten.generate(model, ids, attention_mask=torch.zeros_like(ids), max_new_tokens=4)


# --- 3. short learned-position contexts ---------------------------------------------------


@pytest.mark.parametrize("n_positions", [8, 24, 32])
def test_short_learned_position_context_runs_every_method_with_auto_budget(tiny_factory, n_positions):
    """GPT-2 has a learned position table of n_positions rows: the cost probe must only
    measure forwards that fit in it (it crashed with IndexError for n_positions <= 32)."""
    torch.manual_seed(0)
    model = (
        transformers.GPT2LMHeadModel(
            transformers.GPT2Config(
                vocab_size=64,
                n_embd=16,
                n_layer=2,
                n_head=2,
                n_positions=n_positions,
                bos_token_id=1,
                eos_token_id=2,
            )
        )
        .double()
        .eval()
    )
    prompt = [5, 9, 5, 9, 5][: n_positions // 2]
    new = n_positions - len(prompt) - 1
    expected = model.generate(torch.tensor([prompt]), max_new_tokens=new, min_new_tokens=new, do_sample=False)
    for method in ("prompt_lookup", "suffix"):
        result = hasten.generate(
            model,
            prompt,
            method=method,
            max_new_tokens=new,
            eos_token_id=[],
            draft_budget="auto",
        )
        assert result.sequences.tolist() == expected.tolist(), method


# --- friction 1: the cost-curve cache -----------------------------------------------------


def test_tests_never_touch_the_users_cost_cache():
    from platformdirs import user_cache_dir

    assert not str(cost.default_cost_cache_path()).startswith(user_cache_dir("hasten"))


def _write_entry(path, model, seconds, measured_at):
    key = cost._fingerprint(model, 256)
    path.write_text(
        json.dumps(
            {
                key: {
                    "sizes": list(cost.DEFAULT_SIZES),
                    "seconds": seconds,
                    "measured_at": measured_at,
                }
            }
        )
    )


@pytest.mark.parametrize(
    "case, measured",
    [("fresh", False), ("implausible", True), ("stale", True), ("no timestamp", True)],
)
def test_cached_cost_curve_is_remeasured_when_implausible_or_stale(
    tiny_factory, tmp_path, monkeypatch, caplog, case, measured
):
    model = tiny_factory("llama")
    path = tmp_path / "cost.json"
    good = [0.01 * (1 + 0.1 * s) for s in cost.DEFAULT_SIZES]
    seconds = [0.05] + [0.001] * (len(good) - 1) if case == "implausible" else good
    _write_entry(path, model, seconds, time.time() - (40 * 86400 if case == "stale" else 0))
    if case == "no timestamp":
        table = json.loads(path.read_text())
        next(iter(table.values())).pop("measured_at")
        path.write_text(json.dumps(table))
    calls = []
    new_curve = cost.CostCurve(cost.DEFAULT_SIZES, tuple(2 * t for t in good))
    monkeypatch.setattr(cost, "measure_forward_cost", lambda *a, **k: calls.append(1) or new_curve)
    with caplog.at_level(logging.WARNING, logger="hasten.cost"):
        curve = cost.load_or_measure(model, cache_file=path)
    assert bool(calls) == measured
    assert ("measuring the forward cost" in caplog.text) == measured
    assert curve.seconds == (new_curve.seconds if measured else tuple(good))


def test_implausible_reason():
    assert cost.implausible_reason(cost.CostCurve((1, 2, 3), (0.05, 0.06, 0.07))) is None
    assert "size 3" in cost.implausible_reason(cost.CostCurve((1, 2, 3), (0.05, 0.06, 0.01)))
    assert cost.implausible_reason(cost.CostCurve((1, 2), (0.0, 0.01))) is not None


# --- friction 7: bench says when timings are unreliable -----------------------------------


def test_bench_timing_warnings(tiny_factory, monkeypatch):
    import os

    from hasten.bench import reliability

    model = tiny_factory("llama")
    now = cost.measure_forward_cost(model, (1, 8), 64, 3)
    fast_cached = cost.CostCurve((1, 8), tuple(t / 10 for t in now.seconds))  # cached on a 10x faster machine
    assert "differ from the cached cost curve" in reliability.cost_drift_warning(model, fast_cached)
    monkeypatch.setattr(os, "getloadavg", lambda: (4.0 * (os.cpu_count() or 1) + 1, 0.0, 0.0))
    assert "load average" in reliability.load_warning()
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert reliability.load_warning() is None
    assert reliability.timing_warnings() == []
