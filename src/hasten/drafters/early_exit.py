"""Early-exit self-speculative drafting: the target's first layers + final norm + head draft.

The self-speculation of LayerSkip (Elhoushi et al., "LayerSkip: Enabling Early Exit
Inference and Self-Speculative Decoding", arXiv 2404.16710), without its training recipe:
draft tokens run through the first ``e`` decoder layers only, then the model's own final
norm and LM head; the full model verifies. The draft's layers read and append to the
engine's own KV cache of the target, whose first ``e`` layers hold exactly what a
truncated model would compute for the committed tokens, so there is no draft prefill and
no second cache (the engine rolls the appended entries back after ``propose``).

The exit layer is chosen by measured acceptance: one teacher-forced forward over the last
``window`` committed positions evaluates every candidate exit at once (the final norm and
head applied after each), giving each exit's first-draft agreement with the committed
tokens. The exit with the highest expected speedup (agreement against the cost of the
layers it runs, :func:`~hasten.drafters._layers.best_depth`) drafts. Exits are measured at
the first step (on the prompt's tail) and once more when ``window`` tokens have been
generated; the measurements go to a :class:`SkipSetCache` (by default a per-user file), so
a later request on the same model picks its exit without measuring (and pays nothing for
it). Drafts stop early after a token whose
draft probability is below ``confidence_threshold``; when no exit is expected to pay
(``min_expected_speedup``) the drafter proposes nothing (plain decoding steps).

Difference from LayerSkip: verification recomputes the first ``e`` layers of the drafted
tokens instead of reusing them (the engine verifies with one full forward).

Lossless for greedy and sampling (sampled drafts carry their probabilities). Needs a
Llama-style decoder (see :mod:`hasten.drafters._layers`).

Dims: L decoder layers, V vocabulary, K drafted tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..tree import DraftTree
from ._layers import (
    best_depth,
    draft_chain,
    forward_skipping,
    layer_stack,
    layer_units,
    linear_verify_cost,
    model_fingerprint,
    relative_draft_cost,
    score_first_drafts,
)
from ._skip_search import check_skip_cache, resolve_skip_cache
from .base import Drafter, MethodSpec, register

__all__ = ["EarlyExitConfig", "EarlyExitDrafter", "exit_candidates"]


@dataclass(frozen=True)
class EarlyExitConfig:
    """Early-exit drafting settings.

    Attributes:
        exit_layer: draft after this many layers (1 .. L-1); None = chosen by measured
            acceptance among ``candidates`` exits. Shallower = cheaper, less accurate.
        candidates: how many exits are measured (evenly spaced over the upper three
            quarters of the layers).
        window: committed positions (tokens) the exits are measured on.
        max_draft: most tokens drafted per step (K).
        confidence_threshold: stop a draft after a token whose draft probability is below
            this (fraction 0-1); 0 never stops early.
        min_expected_speedup: draft only when the chosen exit's expected speedup is at
            least this (0 = always draft).
        verify_cost_per_token: extra cost of each verified token, in 1-token forwards;
            only steers the choice of exit and depth.
        skip_cache: ``"auto"`` (the per-user file ``<user cache>/hasten/skip_sets.json``),
            a :class:`SkipSetCache`, a JSON path for one, or None (each request measures).

    Raises:
        ValueError: a field outside its range.
    """

    exit_layer: int | None = None
    candidates: int = 6
    window: int = 32
    max_draft: int = 4
    confidence_threshold: float = 0.5
    min_expected_speedup: float = 1.0
    verify_cost_per_token: float = 0.15
    skip_cache: Any = "auto"

    def __post_init__(self) -> None:
        if self.exit_layer is not None and self.exit_layer < 1:
            raise ValueError(f"exit_layer must be >= 1, got {self.exit_layer}")
        if self.candidates < 1 or self.window < 2 or self.max_draft < 1:
            raise ValueError("candidates and max_draft must be >= 1 and window >= 2")
        if not 0 <= self.confidence_threshold <= 1:
            raise ValueError(f"confidence_threshold must be in [0, 1], got {self.confidence_threshold}")
        if self.min_expected_speedup < 0 or self.verify_cost_per_token < 0:
            raise ValueError("min_expected_speedup and verify_cost_per_token must be >= 0")
        check_skip_cache(self.skip_cache)


def exit_candidates(num_layers: int, count: int) -> list[int]:
    """``count`` exit layers evenly spaced over [L/4, L-1] (fewer if they coincide).

    Example: 30 layers, 6 candidates -> [7, 11, 16, 20, 25, 29]; 2 layers -> [1].
    """
    low, high = max(1, num_layers // 4), num_layers - 1
    if high < 1:
        return []
    if count == 1 or low == high:
        return [high]
    return sorted({round(low + (high - low) * i / (count - 1)) for i in range(count)})


class EarlyExitDrafter(Drafter):
    """Early-exit drafting (see module docstring)."""

    needs_torch_target = True
    name = "early_exit"
    proposes_distributions = True

    def __init__(self, config: EarlyExitConfig = EarlyExitConfig()):
        self.config = config
        self.store = resolve_skip_cache(config.skip_cache)

    def begin(self, request) -> None:
        super().begin(request)
        if request.target_cache is None:
            raise ValueError("early_exit drafts into the engine's target cache; run it through hasten.generate")
        cfg = self.config
        self.stack = layer_stack(request.target)
        total = self.stack.num_layers
        if cfg.exit_layer is not None and cfg.exit_layer >= total:
            raise ValueError(f"exit_layer must be below the model's {total} layers, got {cfg.exit_layer}")
        self.key = "self_speculative|" + model_fingerprint(request.target)
        self.verify_cost = linear_verify_cost(cfg.verify_cost_per_token)
        self.exits = [cfg.exit_layer] if cfg.exit_layer is not None else exit_candidates(total, cfg.candidates)
        self.agreement: dict[int, list[float]] = {}  # exit -> [sum, count]
        suffixes = {layer_units(range(e, total)): e for e in self.exits}
        for skip, acceptance, weight in self.store.entries(self.key) if self.store is not None else []:
            if skip in suffixes:
                entry = self.agreement.setdefault(suffixes[skip], [0.0, 0.0])
                entry[0] += acceptance * weight
                entry[1] += weight
        self.started_from_cache = bool(self.agreement)
        self.measurements = 0
        self._choice: tuple[int, tuple[int, float, float] | None] | None = None  # (measurements, choice)
        self.measured_generated = False
        self.prompt_len = len(request.prompt_ids)
        self.draft_tokens_run = self.scoring_cost = 0.0
        self.drafting_steps = self.plain_steps = 0

    def _measure(self, tokens: list[int]) -> None:
        accs, scored = score_first_drafts(
            self.stack, self.request.target_cache, tokens, self.config.window, frozenset(), exits=self.exits
        )
        for exit_layer, acceptance in zip(self.exits, accs):
            entry = self.agreement.setdefault(exit_layer, [0.0, 0.0])
            entry[0] += acceptance
            entry[1] += 1
            if self.store is not None:
                self.store.record(self.key, layer_units(range(exit_layer, self.stack.num_layers)), acceptance)
        self.measurements += 1
        self.scoring_cost += scored * relative_draft_cost(self.stack, frozenset(), max(self.exits))

    def _due(self, tokens: list[int]) -> bool:
        if (
            self.config.exit_layer is not None
            or self.started_from_cache
            or len(tokens) - 2 < min(self.config.window, 8)
        ):
            return False
        if not self.agreement:
            return True
        return not self.measured_generated and len(tokens) - self.prompt_len >= self.config.window

    def choice(self) -> tuple[int, float | None, float | None] | None:
        """(exit layer, measured agreement, expected speedup) drafting now, or None (kept
        until the next measurement: the drafter asks every step)."""
        if self.config.exit_layer is not None:
            return self.config.exit_layer, None, None
        if self._choice is None or self._choice[0] != self.measurements:
            self._choice = self.measurements, self._best_exit()
        return self._choice[1]

    def _best_exit(self) -> tuple[int, float, float] | None:
        scored = []
        for exit_layer, (total, count) in self.agreement.items():
            acceptance = total / count
            cost = relative_draft_cost(self.stack, frozenset(), exit_layer)
            scored.append(
                (best_depth(acceptance, cost, self.verify_cost, self.config.max_draft)[0], exit_layer, acceptance)
            )
        if not scored:
            return None
        speedup, exit_layer, acceptance = max(scored)
        return exit_layer, acceptance, speedup

    def propose(self, tokens: list[int], max_depth: int) -> DraftTree | None:
        if self._due(tokens):
            self.measured_generated = bool(self.agreement)
            self._measure(tokens)
        choice = self.choice()
        if choice is None or (choice[2] is not None and choice[2] < self.config.min_expected_speedup):
            self.plain_steps += 1
            return None
        exit_layer, acceptance, _ = choice
        cost = relative_draft_cost(self.stack, frozenset(), exit_layer)
        depth = min(self.config.max_draft, max_depth)
        if acceptance is not None:
            depth = best_depth(acceptance, cost, self.verify_cost, depth)[1]
        cache, position = self.request.target_cache, len(tokens) - 1

        def run(token: int) -> torch.Tensor:
            self.draft_tokens_run += cost
            return forward_skipping(self.stack, cache, [token], [position], exits=[exit_layer])[0][-1]

        def feed(token: int) -> torch.Tensor:
            nonlocal position
            position += 1
            return run(token)

        self.drafting_steps += 1
        return draft_chain(
            run(tokens[-1]),
            feed,
            self.request.params,
            tokens,
            depth,
            self.config.confidence_threshold,
            self.request.generator,
        )

    def stats(self) -> dict:
        choice = self.choice()
        return {
            "exit_layer": None if choice is None else choice[0],
            "window_agreement": None if choice is None else choice[1],
            "expected_speedup": None if choice is None else choice[2],
            "agreement_by_exit": {e: round(s / n, 4) for e, (s, n) in sorted(self.agreement.items())},
            "measurements": self.measurements,
            "started_from_cache": self.started_from_cache,
            "drafting_steps": self.drafting_steps,
            "plain_steps": self.plain_steps,
            "draft_forward_equivalents": round(self.draft_tokens_run, 3),
            "scoring_forward_equivalents": round(self.scoring_cost, 3),
        }


register(
    MethodSpec(
        "early_exit",
        EarlyExitConfig,
        EarlyExitDrafter,
        "self-speculative: the target's first layers + head draft, exit by measured acceptance "
        "(LayerSkip, arXiv 2404.16710)",
        uses_skip_cache=True,
    )
)
