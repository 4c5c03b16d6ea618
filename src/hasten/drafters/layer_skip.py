"""Layer-skipping self-speculative drafting with an on-the-fly skip-set search (SWIFT).

Implements SWIFT (Xia et al., "SWIFT: On-the-Fly Self-Speculative Decoding for LLM
Inference Acceleration", arXiv 2410.06916): the target drafts with some of its
intermediate attention / MLP sublayers skipped, and verifies with all of them; same
weights, no training, no second model.

- *Drafting.* Draft tokens run through the kept sublayers only, appending their keys and
  values to the engine's own KV cache of the target, so they attend to the exact
  full-model cache of every committed token (no separate draft prefill). The engine rolls
  every layer back after ``propose``; verification then recomputes all layers for the
  drafted tokens, so the skipped layers' cache entries are filled by the full model and
  the cache stays complete.
- *Optimization phase.* A skip set is scored by its *first-draft agreement*: over the
  last ``window`` committed positions, how often the token it would draft first equals
  the committed next token, computed in one teacher-forced forward with exactly the
  attention a first draft token sees (:func:`~hasten.drafters._layers.score_first_drafts`).
  Each step scores ``candidates_per_step`` new sets, proposed alternately by random search
  and by Bayesian optimization (a Gaussian process over skip sets,
  :mod:`hasten.drafters._skip_search`). The objective is the expected speedup: agreement
  turned into expected committed tokens, over the draft's cost (parameters it still
  reads) plus the verification's (``verify_cost_per_token``).
- *Acceleration phase.* After ``max_optimization_steps`` steps, ``patience`` steps
  without improvement, or once ``search_budget`` sets have been measured on this model
  (counting earlier requests that shared the skip-set cache), the best set drafts alone. Each draft stops early after a token
  whose draft probability is below ``confidence_threshold`` (confidence-aware drafting).
  When even the best set's expected speedup is below ``min_expected_speedup`` the drafter
  proposes nothing (plain decoding steps): skipping cannot pay on that model.
- *Skip-set cache.* Every measurement is also recorded in a :class:`SkipSetCache`
  (``skip_cache``; by default a per-user file, so the search runs over a model's first
  requests only), keyed by the model's architecture and weights; a later request on the
  same model seeds its search with them and drafts with the best set from its first step,
  while the search goes on until the model's ``search_budget`` is spent. After that a
  request pays nothing for the search.

Lossless: greedy output is token-identical to plain decoding, sampled output has its
distribution (sampled drafts carry their draft probabilities; the engine applies the
speculative sampling rule). Needs a Llama-style decoder (see :mod:`hasten.drafters._layers`).

Glossary: *unit* = one attention or MLP sublayer (``2*i`` / ``2*i+1`` for layer i);
*skip set* = units left out while drafting; *agreement* = first-draft acceptance estimate.
Dims: V vocabulary, K drafted tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..tree import DraftTree
from ._layers import (
    best_depth,
    describe_skip,
    draft_chain,
    forward_skipping,
    layer_stack,
    linear_verify_cost,
    model_fingerprint,
    relative_draft_cost,
    score_first_drafts,
)
from ._skip_search import SkipSetCache, SkipSetSearch, check_skip_cache, resolve_skip_cache
from .base import Drafter, MethodSpec, register

__all__ = ["LayerSkipConfig", "LayerSkipDrafter", "SkipSetCache", "skip_groups", "resolve_skip_cache"]


@dataclass(frozen=True)
class LayerSkipConfig:
    """SWIFT settings.

    Attributes:
        max_draft: most tokens drafted per step (K).
        confidence_threshold: stop a draft after a token whose draft probability is below
            this (fraction 0-1); higher drafts fewer, safer tokens; 0 never stops early.
        window: committed positions (tokens) each candidate is scored on; more = steadier
            scores, each costing a forward over that many tokens.
        candidates_per_step: skip sets scored per optimization step.
        max_optimization_steps: optimization steps per request before the acceleration
            phase; more finds better sets, each step costing ``candidates_per_step``
            scoring forwards.
        patience: end a request's optimization after this many steps without a better set.
        search_budget: most sets measured per model over all requests sharing
            ``skip_cache`` (with no cache: per request); 0 = no limit.
        max_skip_fraction: most of the skippable units one set may skip (fraction 0-1);
            higher allows cheaper, less accurate drafts.
        granularity: ``"sublayer"`` skips attention and MLP sublayers separately (falls
            back to whole layers on models without that layout); ``"layer"`` whole layers.
        min_expected_speedup: draft only when the best set's expected speedup is at least
            this (0 = always draft with the best set found).
        verify_cost_per_token: extra cost of each verified token, in 1-token forwards
            (about 0.15 on a CPU, near 0 on a GPU); only steers the search.
        skip_cache: ``"auto"`` (the per-user file ``<user cache>/hasten/skip_sets.json``),
            a :class:`SkipSetCache`, a JSON path for one, or None (nothing kept
            across requests). Never changes output.
        skip_set: a fixed skip set (units: ``2*i`` attention, ``2*i+1`` MLP of layer i)
            instead of the search; None = search.
        seed: seed of the search's RNG.

    Raises:
        ValueError: a field outside its range.
    """

    max_draft: int = 4
    confidence_threshold: float = 0.5
    window: int = 32
    candidates_per_step: int = 2
    max_optimization_steps: int = 6
    patience: int = 3
    search_budget: int = 48
    max_skip_fraction: float = 0.5
    granularity: str = "sublayer"
    min_expected_speedup: float = 1.0
    verify_cost_per_token: float = 0.15
    skip_cache: Any = "auto"
    skip_set: tuple[int, ...] | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_draft < 1 or self.window < 2 or self.candidates_per_step < 1:
            raise ValueError("max_draft, candidates_per_step must be >= 1 and window >= 2")
        if self.max_optimization_steps < 0 or self.patience < 1 or self.search_budget < 0:
            raise ValueError("max_optimization_steps and search_budget must be >= 0 and patience >= 1")
        if not 0 <= self.confidence_threshold <= 1 or not 0 < self.max_skip_fraction <= 1:
            raise ValueError("confidence_threshold must be in [0, 1] and max_skip_fraction in (0, 1]")
        if self.granularity not in ("sublayer", "layer"):
            raise ValueError(f"granularity must be 'sublayer' or 'layer', got {self.granularity!r}")
        if self.min_expected_speedup < 0 or self.verify_cost_per_token < 0:
            raise ValueError("min_expected_speedup and verify_cost_per_token must be >= 0")
        check_skip_cache(self.skip_cache)


def skip_groups(num_layers: int, sublayers: bool) -> list[frozenset[int]]:
    """Search units of a model: every sublayer (or layer) except those of the first and
    last layer (only the first one's when there are fewer than 4 layers).

    Example: 3 layers, sublayers -> [{2}, {3}, {4}, {5}]; 4 layers, whole layers ->
    [{2, 3}, {4, 5}].
    """
    protected = {0, num_layers - 1} if num_layers >= 4 else {0}
    layers = [i for i in range(num_layers) if i not in protected]
    if sublayers:
        return [frozenset({u}) for i in layers for u in (2 * i, 2 * i + 1)]
    return [frozenset({2 * i, 2 * i + 1}) for i in layers]


class LayerSkipDrafter(Drafter):
    """SWIFT drafting (see module docstring)."""

    needs_torch_target = True
    name = "layer_skip"
    proposes_distributions = True

    def __init__(self, config: LayerSkipConfig = LayerSkipConfig()):
        self.config = config
        self.store = resolve_skip_cache(config.skip_cache)

    def begin(self, request) -> None:
        super().begin(request)
        if request.target_cache is None:
            raise ValueError("layer_skip drafts into the engine's target cache; run it through hasten.generate")
        cfg = self.config
        self.stack = layer_stack(request.target)
        self.key = "self_speculative|" + model_fingerprint(request.target)
        self.verify_cost = linear_verify_cost(cfg.verify_cost_per_token)
        self.steps = self.stale = self.evaluations = self.scored_tokens = 0
        self.best_speedup = 0.0
        self.draft_tokens_run = 0.0  # draft forwards, in full 1-token-forward units
        self.scoring_cost = 0.0  # scoring forwards, in full 1-token-forward units (per token fed)
        self.drafting_steps = self.plain_steps = 0
        if cfg.skip_set is not None:
            units = frozenset(cfg.skip_set)
            if not all(0 <= u < 2 * self.stack.num_layers for u in units):
                raise ValueError(f"skip_set units must be in [0, {2 * self.stack.num_layers}), got {sorted(units)}")
            if not self.stack.sublayers and any(u ^ 1 not in units for u in units):
                raise ValueError("this model's layers can only be skipped whole: give both units of a layer")
        groups = skip_groups(self.stack.num_layers, self.stack.sublayers and cfg.granularity == "sublayer")
        self.search = None
        if groups and cfg.skip_set is None:
            max_skip = max(1, int(cfg.max_skip_fraction * len(groups)))
            earlier = self.store.measurements(self.key) if self.store is not None else 0
            self.search = SkipSetSearch(groups, max_skip, self._objective, seed=cfg.seed + earlier)
            for skip, acceptance, weight in self.store.entries(self.key) if self.store is not None else []:
                if skip and self.search.covers(skip):
                    self.search.observe(skip, acceptance, weight)
        self.from_cache = self.search is not None and bool(self.search.totals)
        self.optimizing = self.search is not None and cfg.max_optimization_steps > 0 and not self._budget_spent()

    def _budget_spent(self) -> bool:
        budget = self.config.search_budget
        done = self.store.measurements(self.key) if self.store is not None else self.evaluations
        return budget > 0 and done >= budget

    def _objective(self, skip: frozenset[int], acceptance: float) -> float:
        cost = relative_draft_cost(self.stack, skip)
        return best_depth(acceptance, cost, self.verify_cost, self.config.max_draft)[0]

    def _optimize(self, tokens: list[int]) -> None:
        if len(tokens) - 2 < min(self.config.window, 8):
            return  # too little context to score on yet
        cache = self.request.target_cache
        candidates = self.search.suggest(self.config.candidates_per_step)
        if not candidates:
            self.optimizing = False  # every set has been measured
            return
        for skip in candidates:
            (acceptance,), scored = score_first_drafts(self.stack, cache, tokens, self.config.window, skip)
            self.search.observe(skip, acceptance)
            if self.store is not None:
                self.store.record(self.key, skip, acceptance)
            self.evaluations += 1
            self.scored_tokens += scored
            self.scoring_cost += scored * relative_draft_cost(self.stack, skip)
        self.steps += 1
        _, _, speedup = self.search.best()
        self.stale = 0 if speedup > self.best_speedup + 1e-9 else self.stale + 1
        self.best_speedup = max(self.best_speedup, speedup)
        if (
            self.steps >= self.config.max_optimization_steps
            or self.stale >= self.config.patience
            or self._budget_spent()
        ):
            self.optimizing = False

    def current(self) -> tuple[frozenset[int], float | None, float | None] | None:
        """(skip set, measured agreement, expected speedup) drafting now, or None."""
        if self.config.skip_set is not None:
            return frozenset(self.config.skip_set), None, None
        best = None if self.search is None else self.search.best()
        return best

    def propose(self, tokens: list[int], max_depth: int) -> DraftTree | None:
        if self.optimizing:
            self._optimize(tokens)
        choice = self.current()
        if choice is None or (choice[2] is not None and choice[2] < self.config.min_expected_speedup):
            self.plain_steps += 1
            return None
        skip, acceptance, _ = choice
        cost = relative_draft_cost(self.stack, skip)
        depth = min(self.config.max_draft, max_depth)
        if acceptance is not None:
            depth = best_depth(acceptance, cost, self.verify_cost, depth)[1]
        cache, position = self.request.target_cache, len(tokens) - 1

        def feed(token: int) -> torch.Tensor:
            nonlocal position
            position += 1
            self.draft_tokens_run += cost
            return forward_skipping(self.stack, cache, [token], [position], skip)[0][-1]

        first = forward_skipping(self.stack, cache, [tokens[-1]], [position], skip)[0][-1]
        self.draft_tokens_run += cost
        self.drafting_steps += 1
        return draft_chain(
            first, feed, self.request.params, tokens, depth, self.config.confidence_threshold, self.request.generator
        )

    def stats(self) -> dict:
        choice = self.current()
        return {
            "skip_set": None if choice is None else sorted(choice[0]),
            "skip_set_readable": None if choice is None else describe_skip(choice[0]),
            "window_agreement": None if choice is None else choice[1],
            "expected_speedup": None if choice is None else choice[2],
            "optimization_steps": self.steps,
            "evaluations": self.evaluations,
            "scored_tokens": self.scored_tokens,
            "started_from_cache": self.from_cache,
            "drafting_steps": self.drafting_steps,
            "plain_steps": self.plain_steps,
            "draft_forward_equivalents": round(self.draft_tokens_run, 3),
            "scoring_forward_equivalents": round(self.scoring_cost, 3),
        }


register(
    MethodSpec(
        "layer_skip",
        LayerSkipConfig,
        LayerSkipDrafter,
        "self-speculative: the target drafts with skipped layers chosen on the fly (SWIFT, arXiv 2410.06916)",
        uses_skip_cache=True,
    )
)
