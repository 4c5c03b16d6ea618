"""`hasten` (the console entry point) turns bad input into one error line and exit status 2."""

import sys

import pytest

from hasten import cli
from hasten.backends import llamacpp


def _run(monkeypatch, capsys, *argv):
    monkeypatch.setattr(sys, "argv", ["hasten", *argv])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    return exit_.value.code, capsys.readouterr().err


def test_requantize_gguf_errors_are_one_line(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # as on a machine without the optional package
    monkeypatch.setattr(llamacpp, "_BACKEND_READY", False)
    src = tmp_path / "model.gguf"
    src.write_bytes(b"GGUF")
    code, err = _run(monkeypatch, capsys, "requantize-gguf", str(tmp_path / "out.gguf"), "--model", str(src))
    assert code == 2 and err.startswith("hasten: error: llama-cpp-python is not installed")
    assert "Traceback" not in err
    code, err = _run(
        monkeypatch, capsys, "requantize-gguf", str(tmp_path / "out.gguf"), "--model", str(src), "--type", "q2_z"
    )
    assert code == 2 and "unknown GGUF type 'q2_z'" in err
    code, err = _run(
        monkeypatch, capsys, "requantize-gguf", str(tmp_path / "out.gguf"), "--model", str(tmp_path / "missing.gguf")
    )
    assert code == 2 and "no GGUF file" in err
    assert not (tmp_path / "out.gguf").exists()


def test_unknown_method_fails_before_loading_a_model(monkeypatch, capsys):
    code, err = _run(monkeypatch, capsys, "generate", "hi", "--method", "no_such_method")
    assert code == 2 and "unknown method 'no_such_method'" in err
    code, err = _run(monkeypatch, capsys, "generate", "hi", "--draft-model", "self:2")  # no --method
    assert code == 2 and "--draft-model needs --method" in err


def test_set_values_are_typed_and_none_clears_a_field():
    assert cli.parse_options("layer_skip", ["max_draft=3", "confidence_threshold=0.25", "skip_cache=none"]) == {
        "max_draft": 3,
        "confidence_threshold": 0.25,
        "skip_cache": None,
    }
    assert cli.parse_options("early_exit", ["skip_cache=/tmp/sets.json"]) == {"skip_cache": "/tmp/sets.json"}
    with pytest.raises(ValueError, match="max_draft: 'x' is not a valid int"):
        cli.parse_options("layer_skip", ["max_draft=x"])
    with pytest.raises(ValueError, match="expected FIELD=VALUE"):
        cli.parse_options("layer_skip", ["nonsense=1"])


def test_set_values_follow_the_annotation_when_the_default_is_none_or_a_tuple():
    assert cli.parse_options("early_exit", ["exit_layer=8"]) == {"exit_layer": 8}
    assert cli.parse_options("early_exit", ["exit_layer=none"]) == {"exit_layer": None}
    assert cli.parse_options("hierarchical", ["min_context=100"]) == {"min_context": 100}
    assert cli.parse_options("layer_skip", ["skip_set=6,7"]) == {"skip_set": (6, 7)}
    assert cli.parse_options("recycling", ["widths=4,2,1", "rank_prior=0.5,0.25"]) == {
        "widths": (4, 2, 1),
        "rank_prior": (0.5, 0.25),
    }
    assert cli.parse_options("trie", ["path=none", "learn=no"]) == {"path": None, "learn": False}
    with pytest.raises(ValueError, match="exit_layer: 'eight'"):
        cli.parse_options("early_exit", ["exit_layer=eight"])
    with pytest.raises(ValueError, match="widths: '4,x'"):
        cli.parse_options("recycling", ["widths=4,x"])
