"""Records of ``hasten bench-diffusion``: one JSON line per (model, method, setting, seed).

Written through :class:`hasten.benchcore.RecordLog` (one whole line per ``write``,
synced; an unterminated last line left by a kill is cut on reopening and never read back).
JSON has no infinity, and PSNR of identical outputs is ``inf``: non-finite floats are
stored as the strings ``"inf"``, ``"-inf"`` and ``"nan"`` and turned back into floats on
reading (:func:`encode` / :func:`decode`, the bench core's ``encode_non_finite`` / ``decode_non_finite``).

Record fields: ``model``, ``method``, ``setting`` (the setting's label; ``"-"`` for
uncached), ``seed``, ``seconds`` (fastest timed sampling call of the method),
``uncached_seconds`` (fastest uncached call interleaved with it), ``speedup``
(their ratio), ``skipped_fraction`` (0-1), ``repeats``, ``deterministic`` (every repeat
gave the same output), the suite's fidelity metrics (e.g. ``psnr``, ``ssim``, ``rel_l1``,
``accuracy``; ``action_mse``, ``success_rate``), ``extra`` (suite-specific numbers), or
``error`` (the exception text) when the setting failed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ...benchcore.records import RECORDS_FILE, RecordLog, decode_non_finite, encode_non_finite, read_records

__all__ = [
    "RECORDS_FILE",
    "RecordLog",
    "decode",
    "encode",
    "read_bench_records",
    "record_key",
    "output_path",
    "TEXT_FIELDS",
]

TEXT_FIELDS = ("model", "method", "setting", "error")  # never decoded to floats, even when spelled "inf"


def record_key(record: dict[str, Any]) -> tuple[str, str, str, int]:
    """(model, method, setting, seed): what a record is unique by."""
    return record["model"], record["method"], record["setting"], int(record["seed"])


def encode(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` with non-finite floats replaced by strings. Example: ``{"psnr": inf}`` -> ``{"psnr": "inf"}``."""
    return encode_non_finite(record)


def decode(record: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`encode`. Example: ``{"psnr": "inf"}`` -> ``{"psnr": inf}``."""
    return decode_non_finite(record, TEXT_FIELDS)


def read_bench_records(path: str | Path) -> list[dict[str, Any]]:
    """Every complete record in ``path``, decoded; [] when the file does not exist.

    Raises:
        ValueError: a complete line that is not a JSON object.
    """
    return [decode(r) for r in read_records(path)]


def output_path(out: Path, model: str, method: str, label: str) -> Path:
    """Where a setting's first-seed output is saved in the run folder. Example: (out, "m",
    "static", "interval=2, warmup=2") -> out/outputs/m/static__interval-2-warmup-2.npy."""
    slug = re.sub(r"[^A-Za-z0-9.]+", "-", label).strip("-") or "default"
    return out / "outputs" / model / f"{method}__{slug}.npy"
