"""Grammar-safe drafting for ``response_format`` (JSON schema / JSON object), on xgrammar.

Why xgrammar (Dong et al., "XGrammar: Flexible and Efficient Structured Generation
Engine for Large Language Models", arXiv 2411.15100) rather than llguidance: its
``GrammarMatcher`` has explicit ``rollback`` (and ``fork``), which is exactly what a
draft tree needs -- walk the tree depth-first, accept a node's token, read the next-token
mask, roll back -- and its masks come as a packed bitmask computed in C++ on the CPU,
where this project runs. llguidance offers the same masks; its fast-forward tokens are
not needed here since the drafters already propose several tokens.

:class:`JsonConstraint` implements :class:`hasten.batch.TokenConstraint`: at every
drafted position the grammar mask is applied (a draft node the grammar forbids is dropped
with its subtree, and every verification row's scores are masked), and the grammar state
advances only on committed tokens. So greedy output equals constrained plain decoding
(:func:`constrained_greedy_reference`), token for token.

Dims: N draft nodes, V vocabulary (the model's logits width).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import torch

from ..registry import Registry
from ..tree import DraftTree, tree_layout

__all__ = ["GRAMMAR_ENGINES", "GrammarFactory", "JsonConstraint", "constrained_greedy_reference"]

GRAMMAR_ENGINES: Registry = Registry("grammar engine")


def _unpack(bitmask_row: torch.Tensor, vocab: int) -> torch.Tensor:
    """(words,) int32 packed bitmask -> (V,) bool allowed tokens."""
    bits = (bitmask_row.to(torch.int64).unsqueeze(-1) >> torch.arange(32)) & 1
    return bits.flatten()[:vocab].bool()


class GrammarFactory:
    """Compiles ``response_format`` objects for one tokenizer (compiled grammars are cached).

    Args:
        tokenizer: a Hugging Face tokenizer.
        vocab_size: the model's logits width V.
        stop_token_ids: token ids that end the output once the grammar is complete.
    """

    def __init__(self, tokenizer, vocab_size: int, stop_token_ids: Sequence[int]):
        import xgrammar as xgr

        self.xgr = xgr
        info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size, stop_token_ids=list(stop_token_ids))
        self.compiler = xgr.GrammarCompiler(info)
        self.vocab_size = vocab_size
        self._compiled: dict[str, Any] = {}

    def compile(self, response_format: dict) -> Any:
        """A compiled grammar for ``{"type": "json_schema", "json_schema": {"schema": ...}}``
        or ``{"type": "json_object"}``; None for ``{"type": "text"}``.

        Raises:
            ValueError: another type, a missing or invalid schema.
        """
        kind = response_format.get("type")
        if kind == "text":
            return None
        if kind == "json_object":
            key = "json_object"
        elif kind == "json_schema":
            spec = response_format.get("json_schema")
            if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
                raise ValueError("response_format.json_schema.schema must be a JSON schema object")
            key = json.dumps(spec["schema"], sort_keys=True)
        else:
            raise ValueError(f"response_format.type must be text, json_object or json_schema, got {kind!r}")
        if key not in self._compiled:
            try:
                if key == "json_object":
                    self._compiled[key] = self.compiler.compile_builtin_json_grammar()
                else:
                    self._compiled[key] = self.compiler.compile_json_schema(key, any_whitespace=False)
            except Exception as exc:  # xgrammar raises its own types (RuntimeError, InvalidJSONError)
                raise ValueError(f"invalid JSON schema: {exc}") from exc
        return self._compiled[key]

    def constraint(self, compiled) -> JsonConstraint:
        return JsonConstraint(self.xgr.GrammarMatcher(compiled), self.vocab_size)


GRAMMAR_ENGINES.register("xgrammar", GrammarFactory)


class JsonConstraint:
    """One request's grammar state (an xgrammar ``GrammarMatcher``)."""

    def __init__(self, matcher, vocab_size: int):
        import xgrammar as xgr

        self.matcher, self.vocab_size = matcher, vocab_size
        self._bitmask = xgr.allocate_token_bitmask(1, vocab_size)

    def allowed(self) -> torch.Tensor:
        """(V,) bool: tokens the grammar allows next (all True once terminated)."""
        if self.matcher.is_terminated():
            return torch.ones(self.vocab_size, dtype=torch.bool)
        self.matcher.fill_next_token_bitmask(self._bitmask, 0)
        return _unpack(self._bitmask[0], self.vocab_size)

    def tree_masks(self, draft: DraftTree) -> tuple[DraftTree, torch.Tensor]:
        """The draft cut to grammar-valid nodes, and the (N'+1, V) allowed-token mask of
        the root and each kept node; the matcher ends in the state it started in."""
        children = tree_layout(draft.parents, draft.tokens).children
        root_mask = self.allowed()
        masks: dict[int, torch.Tensor] = {}

        def visit(row: int, mask: torch.Tensor) -> None:
            for token, node in children[row].items():
                if not mask[token] or self.matcher.is_terminated() or not self.matcher.accept_token(token):
                    continue
                masks[node] = self.allowed()
                visit(node + 1, masks[node])
                self.matcher.rollback(1)

        visit(0, root_mask)
        keep = sorted(masks)
        cut = draft if len(keep) == len(draft) else draft.subset(keep)
        return cut, torch.stack([root_mask] + [masks[node] for node in keep])

    def accept(self, tokens: Sequence[int]) -> None:
        """Advance the grammar by committed tokens.

        Raises:
            ValueError: a token the grammar rejects (cannot happen for masked output).
        """
        for token in tokens:
            if self.matcher.is_terminated():
                return
            if not self.matcher.accept_token(int(token)):
                raise ValueError(f"token {token} violates the response grammar")


def constrained_greedy_reference(
    model: torch.nn.Module, prompt: list[int], constraint: JsonConstraint, max_new_tokens: int, eos_ids: set[int]
) -> list[int]:
    """Reference path: plain greedy decoding with the grammar mask, one full forward per
    token (no cache, no drafts). Returns the new tokens (eos included if reached)."""
    tokens = list(prompt)
    with torch.inference_mode():
        for _ in range(max_new_tokens):
            logits = model(input_ids=torch.tensor([tokens])).logits[0, -1]
            token = int(logits.masked_fill(~constraint.allowed(), float("-inf")).argmax())
            tokens.append(token)
            if token in eos_ids:
                break
            constraint.accept([token])
    return tokens[len(prompt) :]
