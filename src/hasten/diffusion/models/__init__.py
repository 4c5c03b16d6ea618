"""Trained models shipped with hasten, for measuring diffusion acceleration on real weights.

    from hasten.diffusion import models
    loaded = models.load("digits-dit")        # offline: weights ship inside the package
    loaded.module                             # the torch module (eval mode, float32)
    loaded.manifest["training"]["command"]    # how the weights were made

Built in: ``"digits-dit"`` and ``"digits-dit-small"`` (:mod:`.digits`, class-conditional
flow-matching DiTs on scikit-learn's 8x8 handwritten digits, data licence CC BY 4.0),
and ``"reach-policy"`` when :mod:`.reach_policy` is present. Modules in
:data:`BUILTIN_MODEL_MODULES` register their models on first lookup; a listed module that
does not exist is skipped.

Weights and manifest format (one manifest per model, so models never share a file):

    weights/<name>.json          the manifest (UTF-8 JSON object)
    weights/<file>.safetensors   the tensors it lists

Manifest fields:

* ``name`` (str): the model name, equal to the file stem.
* ``format`` (str): :data:`MANIFEST_FORMAT`.
* ``architecture`` (str): what the loader builds, e.g. ``"DiTTransformer2DModel"``.
* ``config`` (object): the architecture's constructor arguments.
* ``files`` (object): ``{file name: {"sha256": hex digest, "bytes": size}}`` for every
  weight file in ``weights/``; checked before loading.
* ``training`` (object): at least ``command`` (the exact command that regenerates the
  files, run from the repository root) and ``seconds`` (wall time it took); also seed,
  steps, machine, and whatever else the training script records.
* ``data`` (object): ``name``, ``source``, ``license`` of the training data.
* ``extra`` (object, optional): model-specific facts the sampler needs (image size,
  number of classes, the null class for CFG, default guidance, ...).

A weight file whose size or sha256 differs from the manifest raises
:class:`WeightsError`, naming the file and the training command that regenerates it.
"""

from .shipped import (  # the loader lives in .shipped; this package is its public face
    MANIFEST_FORMAT,
    MODELS,
    WEIGHTS_DIR,
    LoadedModel,
    WeightsError,
    available,
    load,
    load_tensors,
    read_manifest,
    register,
    sha256_of,
    verified_path,
    write_manifest,
)

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
