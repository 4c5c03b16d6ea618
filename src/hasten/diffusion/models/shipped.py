"""Loading shipped diffusion models: the registry, manifests, verified weight files (see
:mod:`hasten.diffusion.models` for the format)."""

from __future__ import annotations

import hashlib
import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from hasten.registry import Registry, UnknownKeyError

__all__ = [
    "MODELS",
    "MANIFEST_FORMAT",
    "WEIGHTS_DIR",
    "LoadedModel",
    "WeightsError",
    "available",
    "load",
    "load_tensors",
    "read_manifest",
    "register",
    "sha256_of",
    "verified_path",
    "write_manifest",
]

MANIFEST_FORMAT = "hasten.diffusion.models/1"
WEIGHTS_DIR = Path(__file__).parent / "weights"
BUILTIN_MODEL_MODULES = ("hasten.diffusion.models.digits", "hasten.diffusion.models.reach_policy")


class WeightsError(OSError):
    """A shipped weight file or manifest is missing, truncated or corrupted."""


@dataclass
class LoadedModel:
    """A loaded model.

    Attributes:
        name: the registry name.
        module: the torch module, in eval mode, on CPU.
        manifest: the parsed ``weights/<name>.json``.
        extra: loader-specific objects (e.g. an action normaliser); may be empty.
    """

    name: str
    module: torch.nn.Module
    manifest: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)


Loader = Callable[[], LoadedModel]
MODELS: Registry[Loader] = Registry("model", error=UnknownKeyError)
"""Every shipped diffusion model: name -> ``loader()``. Built-ins are imported by
:func:`_load_builtins` (a listed module that is absent is skipped, a broken one raises)."""
_builtins_loaded = False


def register(name: str, loader_fn: Loader) -> None:
    """Make ``load(name)`` call ``loader_fn()``; a later registration replaces an earlier one."""
    MODELS.register(name, loader_fn, replace=True)


def _load_builtins() -> None:
    global _builtins_loaded
    if _builtins_loaded:
        return
    _builtins_loaded = True
    for module in BUILTIN_MODEL_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name != module:  # the module exists but an import inside it failed: a real error
                raise


def available() -> tuple[str, ...]:
    """Names of every registered model, sorted."""
    _load_builtins()
    return MODELS.names()


def load(name: str) -> LoadedModel:
    """Load a registered model (offline; from the package's ``weights/`` folder).

    Raises:
        KeyError: no model of that name (the message lists the known ones).
        WeightsError: a weight file is missing, truncated or corrupted.
    """
    _load_builtins()
    return MODELS.get(name)()


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(name: str, weights_dir: Path | None = None) -> dict[str, Any]:
    """The parsed manifest ``<weights_dir>/<name>.json`` (default: the package's ``weights/``).

    Raises:
        WeightsError: the manifest is missing, not JSON, or lacks a required field.
    """
    path = Path(weights_dir or WEIGHTS_DIR) / f"{name}.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise WeightsError(f"{path}: manifest not found; the package was installed without its weights") from None
    except json.JSONDecodeError as err:
        raise WeightsError(f"{path}: not valid JSON ({err})") from None
    missing = [k for k in ("name", "format", "config", "files", "training") if k not in manifest]
    if missing or manifest.get("format") != MANIFEST_FORMAT:
        raise WeightsError(f"{path}: not a {MANIFEST_FORMAT} manifest (missing {missing or 'format'})")
    return manifest


def verified_path(manifest: dict[str, Any], file_name: str, weights_dir: Path | None = None) -> Path:
    """Path of ``file_name`` after checking its size and sha256 against ``manifest``.

    Raises:
        WeightsError: the file is not listed, missing, of the wrong size or digest; the
            message names the file and the training command that regenerates it.
    """
    path = Path(weights_dir or WEIGHTS_DIR) / file_name
    expected = manifest["files"].get(file_name)
    command = manifest["training"].get("command", "(see the manifest)")
    fix = f"reinstall hasten, or regenerate it with: {command}"
    if expected is None:
        raise WeightsError(f"{path}: not listed in the manifest of {manifest['name']!r}")
    if not path.is_file():
        raise WeightsError(f"{path}: weight file missing; {fix}")
    size = path.stat().st_size
    if size != expected["bytes"]:
        raise WeightsError(f"{path}: {size} bytes, expected {expected['bytes']} (truncated or replaced); {fix}")
    if sha256_of(path) != expected["sha256"]:
        raise WeightsError(f"{path}: sha256 does not match the manifest (corrupted); {fix}")
    return path


def load_tensors(manifest: dict[str, Any], file_name: str, weights_dir: Path | None = None) -> dict[str, torch.Tensor]:
    """The tensors of a verified safetensors weight file, on CPU, as stored (no dtype change).

    Raises:
        WeightsError: as :func:`verified_path`, or the file is not valid safetensors.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = verified_path(manifest, file_name, weights_dir)
    try:
        return load_file(str(path))
    except SafetensorError as err:
        raise WeightsError(f"{path}: not a valid safetensors file ({err})") from None


def write_manifest(manifest: dict[str, Any], weights_dir: Path | None = None) -> Path:
    """Write ``manifest`` to ``<weights_dir>/<name>.json``, filling ``format`` and each listed
    file's ``sha256`` and ``bytes`` from the files on disk (for training scripts).

    Raises:
        FileNotFoundError: a listed weight file does not exist.
    """
    weights_dir = Path(weights_dir or WEIGHTS_DIR)
    manifest = {**manifest, "format": MANIFEST_FORMAT}
    manifest["files"] = {
        file_name: {"sha256": sha256_of(weights_dir / file_name), "bytes": (weights_dir / file_name).stat().st_size}
        for file_name in manifest["files"]
    }
    path = weights_dir / f"{manifest['name']}.json"
    path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return path
