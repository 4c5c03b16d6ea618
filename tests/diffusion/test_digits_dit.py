"""The digits DiTs: shipped weights (offline, verified), training script, sampler, judge, grid."""

from __future__ import annotations

import importlib.util
import json
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("sklearn")

from hasten.diffusion import models  # noqa: E402
from hasten.diffusion.bench.plots import image_rows  # noqa: E402
from hasten.diffusion.models import (  # noqa: E402
    WEIGHTS_DIR,
    WeightsError,
    read_manifest,
    shipped,  # noqa: E402
)
from hasten.diffusion.models.digits import (  # noqa: E402
    ARCHITECTURES,
    NULL_CLASS,
    DigitClassifier,
    build_dit,
    digits_dataset,
    load_digits_dit,
    sample,
)

ROOT = Path(__file__).resolve().parents[2]


def _script(relative: str):
    spec = importlib.util.spec_from_file_location(Path(relative).stem, ROOT / relative)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def classifier():
    return DigitClassifier.fit()


@pytest.fixture
def offline(monkeypatch):
    """Any attempt to open a network connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


# ----- shipped weights -----


@pytest.mark.parametrize("name", ["digits-dit", "digits-dit-small"])
def test_shipped_models_load_offline(name, offline):
    loaded = models.load(name)
    manifest = read_manifest(name)
    assert type(loaded.module).__name__ == "DiTTransformer2DModel"
    assert not loaded.module.training
    assert all(not p.requires_grad and p.dtype == torch.float32 for p in loaded.module.parameters())
    assert sum(p.numel() for p in loaded.module.parameters()) == manifest["parameters"]
    assert "CC BY 4.0" in manifest["data"]["license"]
    assert "train_digits_dit.py" in manifest["training"]["command"]
    for file_name, info in manifest["files"].items():
        assert (WEIGHTS_DIR / file_name).stat().st_size == info["bytes"] < 10.5e6
    assert name in models.available()


def test_shipped_dit_draws_the_digits_it_is_asked_for(classifier):
    loaded = models.load("digits-dit")
    labels = torch.arange(10).repeat(2)
    images = sample(loaded.module, labels, steps=20, guidance=loaded.extra["guidance"], seed=0)
    overall, per_class = classifier.accuracy(images, labels)
    assert overall >= 0.8, per_class


def test_unknown_model_name_lists_the_known_ones():
    with pytest.raises(KeyError, match="digits-dit"):
        models.load("no-such-model")


def test_builtin_module_guard_skips_a_missing_module_but_not_a_broken_one(monkeypatch, tmp_path):
    (tmp_path / "hasten_test_broken_models.py").write_text("import hasten_test_no_such_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(shipped, "_builtins_loaded", False)
    monkeypatch.setattr(shipped, "BUILTIN_MODEL_MODULES", ("hasten_test_not_there",))
    assert "digits-dit" in models.available()  # the absent module is skipped
    monkeypatch.setattr(shipped, "_builtins_loaded", False)
    monkeypatch.setattr(shipped, "BUILTIN_MODEL_MODULES", ("hasten_test_broken_models",))
    with pytest.raises(ModuleNotFoundError, match="hasten_test_no_such_dependency"):
        models.available()  # present but failing inside: a real error, not hidden


def test_register_adds_a_loader(request):
    models.register("toy", lambda: models.LoadedModel("toy", torch.nn.Linear(1, 1), {}))
    request.addfinalizer(lambda: models.MODELS.unregister("toy"))
    assert models.load("toy").name == "toy"


# ----- training script and corrupted files -----


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    out = tmp_path_factory.mktemp("weights")
    train = _script("training/train_digits_dit.py")
    train.main(["--size", "tiny", "--steps", "3", "--batch", "4", "--out", str(out)])
    return out


def test_training_script_writes_loadable_reproducible_weights(tiny_weights, tmp_path):
    loaded = load_digits_dit("digits-dit-tiny", tiny_weights)
    manifest = json.loads((tiny_weights / "digits-dit-tiny.json").read_text())
    assert manifest["training"]["command"].startswith("python training/train_digits_dit.py --size tiny --steps 3")
    assert manifest["config"] == ARCHITECTURES["tiny"]
    assert sample(loaded.module, [1, 2], steps=2, seed=0).shape == (2, 1, 16, 16)
    _script("training/train_digits_dit.py").main(
        ["--size", "tiny", "--steps", "3", "--batch", "4", "--out", str(tmp_path)]
    )
    again = json.loads((tmp_path / "digits-dit-tiny.json").read_text())
    assert again["files"] == manifest["files"]  # same sha256: same seed, same weights


def _copy(tiny_weights: Path, tmp_path: Path) -> Path:
    for path in tiny_weights.iterdir():
        shutil.copy(path, tmp_path / path.name)
    return tmp_path / "digits-dit-tiny.safetensors"


def test_truncated_weight_file_is_refused_naming_file_and_command(tiny_weights, tmp_path):
    weights = _copy(tiny_weights, tmp_path)
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(WeightsError) as err:
        load_digits_dit("digits-dit-tiny", tmp_path)
    assert "digits-dit-tiny.safetensors" in str(err.value)
    assert "truncated" in str(err.value)
    assert "python training/train_digits_dit.py --size tiny" in str(err.value)


def test_flipped_byte_is_refused(tiny_weights, tmp_path):
    weights = _copy(tiny_weights, tmp_path)
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="sha256.*train_digits_dit.py"):
        load_digits_dit("digits-dit-tiny", tmp_path)


def test_missing_weight_file_and_broken_manifest_are_refused(tiny_weights, tmp_path):
    _copy(tiny_weights, tmp_path).unlink()
    with pytest.raises(WeightsError, match="missing"):
        load_digits_dit("digits-dit-tiny", tmp_path)
    (tmp_path / "digits-dit-tiny.json").write_text("{not json")
    with pytest.raises(WeightsError, match="not valid JSON"):
        load_digits_dit("digits-dit-tiny", tmp_path)
    with pytest.raises(WeightsError, match="manifest not found"):
        load_digits_dit("digits-dit-nothing", tmp_path)


# ----- sampler -----


@pytest.fixture(scope="module")
def tiny64():
    torch.manual_seed(0)
    return build_dit(ARCHITECTURES["tiny"]).double().eval()


def test_sampler_equals_separate_cond_and_null_calls(tiny64):
    labels, steps, guidance = torch.tensor([0, 4, 9]), 4, 3.0
    x = torch.randn((3, 1, 16, 16), generator=torch.Generator().manual_seed(7)).double()
    for i in range(steps):
        t = torch.full((3,), 1000.0 * (1 - i / steps), dtype=torch.float64)
        v_cond = tiny64(x, timestep=t, class_labels=labels).sample
        v_null = tiny64(x, timestep=t, class_labels=torch.full_like(labels, NULL_CLASS)).sample
        x = x - (v_null + guidance * (v_cond - v_null)) / steps
    got = sample(tiny64, labels, steps=steps, guidance=guidance, seed=7)
    torch.testing.assert_close(got, x.float().clamp(-1, 1), rtol=0, atol=1e-6)


def test_sampler_is_deterministic_per_seed(tiny64):
    a = sample(tiny64, [1, 2, 3], steps=3, seed=0)
    assert a.dtype == torch.float32 and a.shape == (3, 1, 16, 16)
    assert float(a.min()) >= -1 and float(a.max()) <= 1
    assert torch.equal(a, sample(tiny64, [1, 2, 3], steps=3, seed=0))
    assert not torch.equal(a, sample(tiny64, [1, 2, 3], steps=3, seed=1))


@pytest.mark.parametrize(
    "kwargs", [dict(class_labels=[10]), dict(class_labels=[-1]), dict(steps=0), dict(guidance=0.5)]
)
def test_sampler_rejects_bad_arguments(tiny64, kwargs):
    with pytest.raises(ValueError):
        sample(tiny64, **{"class_labels": [1], **kwargs})


# ----- judge and grid -----


def test_dataset_is_scaled_to_unit_range():
    images, labels = digits_dataset()
    assert images.shape == (1797, 1, 16, 16) and images.dtype == torch.float32
    assert float(images.min()) == -1.0 and float(images.max()) == 1.0
    assert sorted(set(labels.tolist())) == list(range(10))


def test_classifier_recognises_real_digits_and_not_noise(classifier):
    images, labels = digits_dataset()
    overall, per_class = classifier.accuracy(images[:500], labels[:500])
    assert overall > 0.95 and set(per_class) == set(range(10))
    assert classifier.holdout_accuracy > 0.95
    noise = torch.rand((200, 1, 16, 16), generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert classifier.accuracy(noise, torch.arange(200) % 10)[0] < 0.4


def test_image_rows_writes_a_png(tmp_path):
    rows = [("uncached", np.zeros((3, 1, 16, 16), np.float32)), ("static x", np.ones((2, 1, 16, 16), np.float32))]
    image_rows(rows, tmp_path / "grid.png")
    assert (tmp_path / "grid.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError):
        image_rows([], tmp_path / "empty.png")


def test_sample_grid_script_runs(tmp_path, capsys):
    results = _script("benchmarks/digits_samples.py").main(
        ["--models", "digits-dit-small", "--steps", "2", "--per-class", "1", "--out", str(tmp_path / "g.png")]
    )
    assert (tmp_path / "g.png").is_file()
    assert set(results) == {("digits-dit-small", models.load("digits-dit-small").extra["guidance"])}
    assert "accuracy" in capsys.readouterr().out
