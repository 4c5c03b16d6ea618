"""Method options and draft models from text, shared by the CLI (``--set FIELD=VALUE``,
``--method-option METHOD.FIELD=VALUE``, ``--draft-model NAME``) and the bench harness.

The library's own API takes typed config dataclasses; these helpers turn command-line text
into their fields, typed by each field's annotation.
"""

from __future__ import annotations

import dataclasses
from typing import Any

__all__ = ["convert_value", "parse_options", "load_draft_model"]


def convert_value(raw: str, hint: Any) -> Any:
    """``raw`` as a value of the type ``hint`` (bool, int, float, str, an optional of
    those, or a tuple / frozenset / list of numbers written comma-separated); text for any
    other type.

    Raises:
        ValueError: ``raw`` is not a value of that type.
    """
    import types
    import typing

    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if raw.lower() == "none" and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        for option in options[:-1]:
            try:
                return convert_value(raw, option)
            except ValueError:
                continue
        return convert_value(raw, options[-1])
    if hint is bool:
        if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(raw)
        return raw.lower() in ("true", "1", "yes")
    if hint in (int, float):
        return hint(raw)
    if origin in (tuple, list, frozenset, set) and args and args[0] in (int, float):
        return origin(args[0](part) for part in raw.split(",") if part.strip())
    return None if raw.lower() == "none" else raw


def parse_options(method: str, pairs: list[str]) -> dict[str, Any]:
    """``["max_ngram=4", "adaptive=false", "exit_layer=8", "widths=4,2,1"]`` -> typed
    config fields of ``method``.

    Values are converted to the field's annotated type: bool, int, float, optionals of
    those (``none`` gives None, e.g. ``skip_cache=none``: keep no skip-set cache), and
    comma-separated numbers for tuple/frozenset fields; any other field takes the text.

    Raises:
        ValueError: malformed pair, unknown field, or a value of the wrong type.
    """
    import typing

    from .drafters import get_method

    config_cls = get_method(method).config_cls
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    try:
        hints = typing.get_type_hints(config_cls)
    except Exception:  # an annotation that does not resolve: fall back to the defaults' types
        hints = {}
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or key not in fields:
            raise ValueError(f"{pair!r}: expected FIELD=VALUE with FIELD one of {sorted(fields)}")
        default = fields[key].default
        hint = hints.get(key, type(default) if isinstance(default, (bool, int, float)) else str)
        try:
            out[key] = convert_value(raw, hint)
        except ValueError:
            raise ValueError(f"{key}: {raw!r} is not a valid {getattr(hint, '__name__', None) or hint}") from None
    return out


def load_draft_model(name: str, dtype: str, target_tokenizer):
    """The draft model ``name`` (a built-in name, local folder or hub id) in ``dtype``,
    checked to share the target's tokenizer.

    Returns:
        the loaded ``torch.nn.Module``.

    Raises:
        ValueError: the draft's vocabulary differs from the target's.
    """
    import hasten

    draft, draft_tokenizer = hasten.load_model(name, dtype=dtype)
    if draft_tokenizer.get_vocab() != target_tokenizer.get_vocab():
        raise ValueError(
            f"draft model {name!r} uses a different tokenizer than the target; "
            "speculative decoding needs the same vocabulary"
        )
    return draft
