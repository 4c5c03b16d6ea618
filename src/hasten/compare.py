"""Plain decoding beside a method: the one-line comparison ``hasten generate --compare`` prints.

Both runs decode the same prompt with the same settings on the same model, one after the
other, so the ratio is measured side by side (still noisy on a busy machine: rerun to see
the spread). Identical tokens is the losslessness claim made visible: greedy output, and
sampled output of draft-free methods with the same seed, must match token for token.
"""

from __future__ import annotations

from typing import Any

__all__ = ["compare_line", "format_comparison"]


def format_comparison(method: str, plain_tps: float, method_tps: float, identical: bool) -> str:
    """One line: plain tok/s, method tok/s, identical yes/no, speedup.

    Example: ("prompt_lookup", 20.0, 50.0, True) ->
    "compare: plain 20.0 tok/s | prompt_lookup 50.0 tok/s | identical tokens: yes | speedup 2.50x"
    """
    speedup = method_tps / plain_tps if plain_tps > 0 else float("nan")
    return (
        f"compare: plain {plain_tps:.1f} tok/s | {method} {method_tps:.1f} tok/s | "
        f"identical tokens: {'yes' if identical else 'NO'} | speedup {speedup:.2f}x"
    )


def compare_line(model, input_ids, result, settings: dict[str, Any]) -> str:
    """Decode ``input_ids`` plainly with ``settings`` (:func:`hasten.generate` keywords)
    and compare with ``result``, the method's :class:`~hasten.engine.GenerationResult`."""
    from .engine import generate

    plain = generate(model, input_ids, method=None, **settings)
    identical = plain.sequences.tolist() == result.sequences.tolist()
    return format_comparison(
        result.stats.method,
        plain.stats.tokens_per_second,
        result.stats.tokens_per_second,
        identical,
    )
