"""llama.cpp backend: hasten's decode loop and model-free drafters on llama.cpp kernels.

A GGUF model is run through ``llama-cpp-python``'s low-level API (``llama_decode`` on a
``llama_batch`` with per-token positions, sequence ids and output flags), so the same
draft -> verify -> accept loop as :func:`hasten.generate` runs on llama.cpp's quantized
CPU kernels. The reference is plain decoding *on this backend* (``hasten.generate(model)``
with ``method=None``, one token per ``llama_decode`` as llama.cpp's own generation does).
Unlike fp32 torch, llama.cpp's quantized kernels round a row differently depending on the
other rows decoded with it (up to ~0.8 logits on SmolLM2 Q4_1), so a verification forward
is not bit-identical to one-token decoding and the output can flip where plain decoding's
top-2 logits nearly tie; the acceptance logic itself is exact (the bench audit reports
each flip with its margin; measured flips were all at margins below 0.3).

**Tree verification without a custom mask.** llama.cpp's KV cache masks attention by
*sequence id*: a batch token attends to the cached cells that carry its (first) sequence
id at positions not after its own. So every leaf of the draft tree gets its own sequence
id, the committed prefix is shared with all of them (``llama_memory_seq_cp`` only adds
ids to cells), and each node is tagged with the sequences of the leaves below it: node i
then sees exactly the prefix, its ancestors and itself, which is the tree mask. After
the acceptance rule, the other sequences are removed (``llama_memory_seq_rm``) and the
accepted leaf's sequence is cut after the accepted path; its id becomes the committed
sequence. The KV cache must be unified across sequences (``kv_unified``), and a tree has
at most ``max_sequences - 1`` leaves (nodes past that are dropped before verification).

Drafters that run parts of the target model (``layer_skip``, ``early_exit``,
``hierarchical``, ``self:k``) need a transformers model and are refused here.

Install: ``CMAKE_ARGS="-DGGML_NATIVE=OFF ..." pip install llama-cpp-python`` (see
docs/BENCH.md for the flags that build a working wheel on this CPU); it is optional.
"""

from __future__ import annotations

import ctypes
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "LlamaCppModel",
    "LlamaCppCache",
    "LlamaCppTarget",
    "load_llamacpp",
    "requantize_gguf",
    "GGUF_TYPES",
    "INSTALL_HINT",
]

INSTALL_HINT = (
    'llama-cpp-python is not installed; install it with CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON '
    '-DGGML_FMA=ON -DGGML_F16C=ON" pip install llama-cpp-python (about 7 minutes; flags in docs/BENCH.md)'
)

_BACKEND_READY = False
_QUIET = None  # the log callback must outlive every llama.cpp call


def _lib():
    global _BACKEND_READY
    try:
        import llama_cpp
    except ImportError as exc:  # pragma: no cover - depends on the optional package
        raise ImportError(INSTALL_HINT) from exc
    if not _BACKEND_READY:
        llama_cpp.llama_backend_init()
        if not os.environ.get("HASTEN_LLAMACPP_LOG"):  # llama.cpp logs every load to stderr otherwise
            global _QUIET
            _QUIET = llama_cpp.llama_log_callback(lambda level, text, user_data: None)
            llama_cpp.llama_log_set(_QUIET, ctypes.c_void_p())
        _BACKEND_READY = True
    return llama_cpp


@dataclass
class LlamaCppCache:
    """The engine's view of the llama.cpp KV cache (the cells live inside the context).

    Invariant: the ``cached`` committed tokens occupy cells in position order with no
    free cell between them, so later tokens are written after them exactly as plain
    decoding writes them (llama.cpp fills free cells in index order, and its attention
    sums cells in index order, so holes would change rounding).

    Attributes:
        cached: committed tokens whose K/V are in cells (positions 0 .. cached-1), all in
            sequence ``seq``.
        refeed: committed tokens whose K/V are not cached yet (accepted on a tree branch
            other than the first); they are fed in front of the next decode.
        pending: rows appended by the last verification and not yet settled.
        branch_seqs, node_seq, row_tokens, first_rows: the last tree verification's leaf
            sequences, one leaf sequence per row, token per row, and the rows of its first
            (best) path in depth order.
        generation: which :meth:`LlamaCppModel.new_cache` made it (only the newest is live).
    """

    cached: int = 0
    seq: int = 0
    refeed: list[int] = field(default_factory=list)
    pending: int = 0
    branch_seqs: list[int] = field(default_factory=list)
    node_seq: list[int] = field(default_factory=list)
    row_tokens: list[int] = field(default_factory=list)
    first_rows: list[int] = field(default_factory=list)
    generation: int = 0


class LlamaCppModel:
    """A GGUF model in llama.cpp, usable wherever :func:`hasten.generate` takes a model.

    Args:
        gguf_path: the GGUF file.
        threads: CPU threads for decoding (None = ``torch.get_num_threads()``).
        context_length: KV cache size in tokens (None = the model's training context).
        max_sequences: sequence ids in the context; a draft tree has at most
            ``max_sequences - 1`` leaves (1..256).
        batch_size: most tokens per ``llama_decode`` call (prompts are fed in chunks).

    Attributes:
        vocab_size: V. context_length: tokens. eos_token_ids: end-of-generation ids.
        path: the GGUF file. threads: decode threads.

    Raises:
        ImportError: ``llama-cpp-python`` is not installed (the message gives the command).
        FileNotFoundError: no such GGUF file.
        ValueError: llama.cpp could not load the file or create the context; bad sizes.
    """

    backend = "llama.cpp"

    def __init__(
        self,
        gguf_path: str | Path,
        *,
        threads: int | None = None,
        context_length: int | None = None,
        max_sequences: int = 64,
        batch_size: int = 512,
    ):
        self._model = self._ctx = self._batch = None
        lib = _lib()
        self._lib = lib
        self.path = Path(gguf_path)
        if not self.path.is_file():
            raise FileNotFoundError(f"no GGUF file at {self.path}")
        if not 2 <= max_sequences <= 256:
            raise ValueError(f"max_sequences must be in 2..256, got {max_sequences}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.threads = int(threads or torch.get_num_threads())
        mparams = lib.llama_model_default_params()
        self._model = lib.llama_model_load_from_file(str(self.path).encode(), mparams)
        if not self._model:
            raise ValueError(f"llama.cpp could not load {self.path}")
        vocab = lib.llama_model_get_vocab(self._model)
        self.vocab_size = int(lib.llama_vocab_n_tokens(vocab))
        trained = int(lib.llama_model_n_ctx_train(self._model))
        self.context_length = int(context_length or trained)
        if self.context_length < 2:
            raise ValueError(f"context_length must be >= 2, got {self.context_length}")
        eos = {int(lib.llama_vocab_eos(vocab)), int(lib.llama_vocab_eot(vocab))}
        self.eos_token_ids = {t for t in eos if t >= 0}
        self.max_sequences = max_sequences
        self.batch_size = batch_size
        cparams = lib.llama_context_default_params()
        cparams.n_ctx = self.context_length
        cparams.n_batch = cparams.n_ubatch = batch_size
        cparams.n_seq_max = max_sequences
        cparams.kv_unified = True
        cparams.n_threads = cparams.n_threads_batch = self.threads
        cparams.no_perf = True
        # llama.cpp's CPU kernels round a row differently depending on the other rows of
        # its decode, so a k-row verification is not bit-identical to one-row decoding.
        # Measured on SmolLM2 Q4_1 (logit max-abs differences): flash attention on, 0.4-0.8
        # at 100-700 cached tokens; off, 0 in most shapes tried and up to 0.6 in others.
        # Off is the closer of the two; the bench audit reports the near-tie flips.
        cparams.flash_attn_type = getattr(lib, "LLAMA_FLASH_ATTN_TYPE_DISABLED", 0)
        self._ctx = lib.llama_init_from_model(self._model, cparams)
        if not self._ctx:
            raise ValueError(f"llama.cpp could not create a context of {self.context_length} tokens for {self.path}")
        self._mem = lib.llama_get_memory(self._ctx)
        self._batch = lib.llama_batch_init(batch_size, 0, max_sequences)
        self._live = 0  # generation of the cache that owns the context's memory
        self.name = self.path.name
        buf = ctypes.create_string_buffer(256)
        lib.llama_model_desc(self._model, buf, 256)
        self.description = buf.value.decode(errors="replace")  # e.g. "llama 256M Q4_1"

    def __repr__(self) -> str:
        return f"LlamaCppModel({str(self.path)!r}, threads={self.threads}, context_length={self.context_length})"

    def close(self) -> None:
        """Free the llama.cpp context, batch and weights (also done when collected)."""
        lib = self._lib
        if self._batch is not None:
            lib.llama_batch_free(self._batch)
            self._batch = None
        if self._ctx:
            lib.llama_free(self._ctx)
            self._ctx = None
        if self._model:
            lib.llama_model_free(self._model)
            self._model = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown
            pass

    # --- what hasten.generate uses -------------------------------------------------
    def engine_target(self) -> LlamaCppTarget:
        return LlamaCppTarget(self)

    def new_cache(self) -> LlamaCppCache:
        """An empty cache; the context holds one live cache at a time (older ones are
        invalidated).

        Raises:
            RuntimeError: the model was closed.
        """
        if not self._ctx:
            raise RuntimeError(f"{self!r} was closed")
        self._lib.llama_memory_clear(self._mem, True)
        self._live += 1
        return LlamaCppCache(generation=self._live)

    def decode(
        self, tokens: list[int], positions: list[int], seqs: list[list[int]], outputs: list[bool]
    ) -> torch.Tensor:
        """One ``llama_decode`` over tokens with explicit positions and sequence ids.

        Args:
            tokens, positions: (n,) ints. seqs: per token, its sequence ids.
            outputs: per token, whether its logits are returned.

        Returns:
            (sum(outputs), V) float32 logits, in token order.

        Raises:
            RuntimeError: llama.cpp refused the batch (set HASTEN_LLAMACPP_LOG=1 to see its
                log) or ran out of cache; the model was closed.
        """
        lib, batch = self._lib, self._batch
        if batch is None:
            raise RuntimeError(f"{self!r} was closed")
        n = len(tokens)
        if n > self.batch_size:
            raise ValueError(f"{n} tokens in one decode; batch_size is {self.batch_size}")
        batch.n_tokens = n
        token_p, pos_p, nseq_p, seq_p, out_p = batch.token, batch.pos, batch.n_seq_id, batch.seq_id, batch.logits
        for i in range(n):
            token_p[i] = tokens[i]
            pos_p[i] = positions[i]
            ids = seqs[i]
            nseq_p[i] = len(ids)
            row = seq_p[i]
            for j, s in enumerate(ids):
                row[j] = s
            out_p[i] = outputs[i]
        code = lib.llama_decode(self._ctx, batch)
        if code != 0:
            raise RuntimeError(
                f"llama_decode failed with code {code} (1: no KV cache slot for {n} tokens, "
                f"-1: invalid batch); context {self.context_length} tokens"
            )
        rows = sum(1 for o in outputs if o)
        if not rows:
            return torch.empty(0, self.vocab_size)
        ptr = lib.llama_get_logits(self._ctx)
        return torch.from_numpy(np.ctypeslib.as_array(ptr, shape=(rows, self.vocab_size)).copy())

    def seq_rm(self, seq: int, start: int, end: int = -1) -> None:
        self._lib.llama_memory_seq_rm(self._mem, seq, start, end)

    def seq_cp(self, src: int, dst: int) -> None:
        self._lib.llama_memory_seq_cp(self._mem, src, dst, -1, -1)

    # --- measured cost ---------------------------------------------------------------
    def cost_fingerprint(self, context: int) -> str:
        import llama_cpp

        return (
            f"llamacpp-{self.path.name}-{self.path.stat().st_size}-ctx{context}-threads{self.threads}-"
            f"{platform.machine()}-{os.cpu_count()}cpu-llama-cpp-python{llama_cpp.__version__}"
        )

    def measure_cost(self, sizes, context: int = 256, repeats: int = 5):
        """Seconds per ``llama_decode`` of ``size`` tokens (all logits returned, as in
        verification) after a ``context``-token prefix; median of ``repeats``, timed in
        rounds over all sizes (:func:`hasten.cost.time_sizes`)."""
        from ..cost import CostCurve, time_sizes

        gen = torch.Generator().manual_seed(0)
        cache = self.new_cache()
        prefix = torch.randint(0, self.vocab_size, (context,), generator=gen).tolist()
        inputs = {size: torch.randint(0, self.vocab_size, (size,), generator=gen).tolist() for size in sizes}
        target = self.engine_target()
        target.forward(cache, prefix, last_only=True)

        def timed_forward(size: int) -> float:
            start = time.perf_counter()
            target.forward(cache, inputs[size])
            elapsed = time.perf_counter() - start
            target.rollback(cache, context)
            return elapsed

        seconds = time_sizes(timed_forward, sizes, repeats)
        self.new_cache()
        return CostCurve(tuple(sizes), seconds)


def load_llamacpp(gguf_path: str | Path, **kwargs) -> LlamaCppModel:
    """Load a GGUF file for :func:`hasten.generate` on llama.cpp kernels; see
    :class:`LlamaCppModel` for the arguments and errors."""
    return LlamaCppModel(gguf_path, **kwargs)


GGUF_TYPES = {"q4_0": 2, "q4_1": 3, "q8_0": 7, "f16": 1, "bf16": 32}  # llama.cpp's LLAMA_FTYPE_MOSTLY_* values


def requantize_gguf(src: str | Path, dst: str | Path, kind: str = "q4_0", threads: int | None = None) -> Path:
    """Write a copy of a GGUF model with its weights in another llama.cpp type.

    Which kernels llama.cpp uses depends on the type, and so does the cost of verifying k
    tokens at once: on this CPU (AVX-512) ``q4_0`` is repacked at load time into
    kernels for which 8 tokens cost about 2.8x one token, against 4.2x for ``q4_1``,
    so speculative decoding pays far more on ``q4_0`` (measure with
    ``hasten bench --gguf DST``). Requantizing an already quantized file adds the new
    type's rounding to the old one's: it is a different model from ``src`` (plain
    decoding of ``dst`` is the reference for anything run on ``dst``).

    Args:
        src: the GGUF file to read.
        dst: the file to write (replaced if it exists; written next to it first, then
            renamed, so an interrupted run leaves no half-written model).
        kind: one of :data:`GGUF_TYPES`.
        threads: quantization threads (None = all cores).

    Returns:
        ``dst`` as a Path.

    Raises:
        ValueError: an unknown ``kind``.
        FileNotFoundError: no ``src`` file.
        RuntimeError: llama.cpp reported a failure.
        ImportError: ``llama-cpp-python`` is not installed (the message gives the command).
    """
    if kind not in GGUF_TYPES:
        raise ValueError(f"unknown GGUF type {kind!r}; use one of {sorted(GGUF_TYPES)}")
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise FileNotFoundError(f"no GGUF file at {src}")
    lib = _lib()
    params = lib.llama_model_quantize_default_params()
    params.ftype = GGUF_TYPES[kind]
    params.allow_requantize = True
    params.nthread = threads or (os.cpu_count() or 1)
    partial = dst.with_name(dst.name + ".partial")
    status = lib.llama_model_quantize(str(src).encode(), str(partial).encode(), ctypes.byref(params))
    if status != 0 or not partial.is_file():
        partial.unlink(missing_ok=True)
        raise RuntimeError(f"llama.cpp could not requantize {src} to {kind} (status {status})")
    os.replace(partial, dst)
    return dst


from ..targets.llamacpp import LlamaCppTarget  # noqa: E402  (re-export; the class moved to hasten.targets)
