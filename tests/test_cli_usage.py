"""Usage errors are one line with exit status 2; --version, `hasten models`, --compare (issue 22)."""

import sys

import pytest
import torch

import hasten
from hasten import cli, models


def _run(monkeypatch, capsys, *argv):
    monkeypatch.setattr(sys, "argv", ["hasten", *argv])
    try:
        cli.main()
        code = 0
    except SystemExit as exit_:
        code = exit_.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


def test_version(monkeypatch, capsys):
    code, out, _ = _run(monkeypatch, capsys, "--version")
    assert code == 0 and out.strip() == f"hasten {hasten.__version__}"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["generate", "hi", "--bogus"], "No such option: --bogus"),
        (["no-such-command"], "No such command"),
        (["generate", "hi", "--max-new-tokens", "0"], "--max-new-tokens"),
        (["generate", "hi", "--max-new-tokens", "many"], "--max-new-tokens"),
        (["generate", "--version"], "No such option: --version"),
        (["bench", "--no-such-flag"], "No such option"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(monkeypatch, capsys, argv, message):
    code, _, err = _run(monkeypatch, capsys, *argv)
    assert code == 2
    assert err.startswith("hasten: error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_missing_model_file_is_one_line(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(models, "hub_reachable", lambda timeout=3.0: False)
    code, _, err = _run(monkeypatch, capsys, "generate", "hi", "--model", str(tmp_path / "x.gguf"))
    assert code == 2 and "no GGUF file" in err and err.count("\n") == 1


def test_models_lists_the_builtin_names(monkeypatch, capsys):
    code, out, _ = _run(monkeypatch, capsys, "models")
    assert code == 0
    for name in models.BUILTIN_MODELS:
        assert name in out


def test_format_comparison():
    from hasten.compare import format_comparison

    line = format_comparison("prompt_lookup", 20.0, 50.0, True)
    assert "plain 20.0 tok/s" in line and "prompt_lookup 50.0 tok/s" in line
    assert "identical tokens: yes" in line and "speedup 2.50x" in line
    assert "identical tokens: NO" in format_comparison("x", 1.0, 1.0, False)


def test_compare_runs_plain_decoding_with_the_same_settings(tiny_factory):
    from hasten.compare import compare_line

    model = tiny_factory("llama")
    prompt = torch.tensor([[5, 9, 17, 5, 9, 17, 5, 9]])
    settings = {"max_new_tokens": 12, "eos_token_id": []}
    result = hasten.generate(model, prompt, method="prompt_lookup", **settings)
    assert "identical tokens: yes" in compare_line(model, prompt, result, settings)
    result.sequences[0, -1] += 1  # negative control: a different output is reported
    assert "identical tokens: NO" in compare_line(model, prompt, result, settings)


class _Tokenizer:
    def __call__(self, text, return_tensors=None):
        return {"input_ids": torch.tensor([[5, 9, 17, 5, 9, 17, 5, 9]])}

    def decode(self, ids, skip_special_tokens=False):
        return " ".join(str(i) for i in ids)


def test_generate_compare_prints_the_comparison(monkeypatch, capsys, tiny_factory):
    model = tiny_factory("llama")
    model.generation_config.eos_token_id = None
    monkeypatch.setattr(hasten, "load_model", lambda name, dtype="float32": (model, _Tokenizer()))
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "hasten",
            "generate",
            "hi",
            "--method",
            "prompt_lookup",
            "--compare",
            "--max-new-tokens",
            "8",
        ],
    )
    cli.main()
    err = capsys.readouterr().err
    assert "compare: plain" in err and "identical tokens: yes" in err and "speedup" in err
