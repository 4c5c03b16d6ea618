"""Composite drafting: one draft tree from several draft-free sources, calibrated per source.

Each step asks every source for candidate continuations of the committed tokens, merges
them into one draft tree (a path proposed by several sources is one node), and scores
every node by a *calibrated* acceptance probability; the engine's draft budget
(:mod:`hasten.budget`) then verifies the nodes that pay for themselves under the measured
cost curve. The combination follows SAM-Decoding (Hu et al., "SAM Decoding: Speculative
Decoding via Suffix Automaton", arXiv 2411.10666), which backs a suffix-automaton retriever
with Token Recycling, and LogitSpec (Liu et al., "LogitSpec: Accelerating Retrieval-based
Speculative Decoding via Next Next Token Speculation", arXiv 2507.01449).

Sources (``CompositeConfig.sources``):

- ``sam``: the longest suffix of the request (prompt + output) that occurred before, found
  by a suffix automaton in amortized O(1) per token (:mod:`hasten.sam`); its continuation
  at the first and at the latest recorded occurrence.
- ``pool``: the longest suffix found in earlier requests' outputs
  (:class:`~hasten.drafters._composite_state.CrossRequestPool`, in-process by default,
  optionally saved to a file), followed the same way.
- ``nnt``: next-next-token retrieval (LogitSpec). When the root (the last committed token)
  has no match of more than ``nnt_max_match`` tokens, the target's runner-up tokens at the
  last verified row are guesses for the token *after* the root; each guess is drafted
  with what followed it in the request or the pool.
- ``prediction``: added when ``prediction`` (token ids) is given, as in OpenAI's Predicted
  Outputs: the longest suffix of the output found in the prediction, and what follows it.
- any registered draft-free, model-free method (``suffix``, ``recycling``, ``jacobi``,
  ``trie``, ``prompt_lookup``), run as is with ``source_options[name]``; it receives
  ``on_accept`` with the merged verified tree (these drafters read it by token).

Calibration: every proposed node carries (source, bin): a match-length x depth bin for the
retrieval sources, a conditional-score bin for scored drafters (suffix, trie), a rank x
depth bin for unscored ones (recycling, jacobi). Per (source, bin) the drafter learns
P(node accepted | parent accepted) from every verification of the request
(:class:`~hasten.drafters._composite_state.SourceCalibration`), starting from what earlier
requests of the same model measured (``calibration_cache``, a JSON file beside the skip
sets by default). A node's conditional probability is the best of its sources', or, when
several sources agree on it, the calibrated rate of agreeing nodes (a pseudo-source
``agree``, binned by the number of sources and the best rate); siblings' probabilities are
scaled to sum to at most 1; its path probability (the product along the path) is its
``node_score``. The output is never
changed by any of this: drafts are verified like any other.

Glossary: *source* = one candidate generator; *bin* = a source's evidence class; *match
length* L = tokens of the matched suffix; *root* = the last committed token.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch

from ..sam import SuffixAutomaton, SuffixMatcher
from ..tree import DraftTree, tree_layout
from ._composite_state import (
    SEPARATOR,
    CalibrationStore,
    CrossRequestPool,
    SourceCalibration,
    process_pool,
    resolve_calibration_cache,
)
from ._tree_build import tree_from_scores
from .base import Drafter, MethodSpec, build_drafter, get_method, register

__all__ = ["CompositeConfig", "CompositeDrafter", "merge_candidates", "retrieval_bin", "BUILTIN_SOURCES"]

BUILTIN_SOURCES = ("sam", "pool", "nnt", "prediction")
_LENGTH_EDGES = (1, 2, 4, 8, 16)  # match length buckets: 1, 2, 3-4, 5-8, 9-16, 17+
_DEPTH_EDGES = (1, 2, 4)  # depth buckets: 1, 2, 3-4, 5+
_RETRIEVAL_PRIOR = tuple(p for p in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8) for _ in range(4))
_NNT_PRIOR = (0.15, 0.3, 0.35, 0.4, 0.08, 0.3, 0.35, 0.4)  # rank 0 then rank 1+, per depth bucket
_SCORED_PRIOR = tuple((b + 0.5) / 8 for b in range(8))
_UNSCORED_PRIOR = (0.3, 0.3, 0.3, 0.3, 0.08, 0.1, 0.1, 0.1)  # sibling rank 0 then 1+, per depth bucket


def _bucket(value: int, edges: tuple[int, ...]) -> int:
    """Index of the first edge >= value (len(edges) past the last). _bucket(3, (1, 2, 4)) = 2."""
    for i, edge in enumerate(edges):
        if value <= edge:
            return i
    return len(edges)


def retrieval_bin(match_length: int, depth: int) -> int:
    """Bin of a retrieved node: match-length bucket x depth bucket (6 x 4 = 24 bins).

    Example: retrieval_bin(1, 1) = 0; retrieval_bin(8, 3) = 3 * 4 + 2 = 14; retrieval_bin(40, 9) = 23.
    """
    return _bucket(match_length, _LENGTH_EDGES) * 4 + _bucket(depth, _DEPTH_EDGES)


Candidate = tuple[tuple[int, ...], str, int]  # (path below the root, source, bin)


def chain_candidates(chain: list[int], source: str, bin_of_depth) -> list[Candidate]:
    """Every prefix of ``chain`` as a candidate; ``bin_of_depth(d)`` bins the node at depth d.

    Example: chain [5, 6], source "sam", bin_of_depth lambda d: d -> [((5,), "sam", 1), ((5, 6), "sam", 2)].
    """
    return [(tuple(chain[:d]), source, bin_of_depth(d)) for d in range(1, len(chain) + 1)]


def tree_candidates(tree: DraftTree, source: str) -> list[Candidate]:
    """The nodes of a registered drafter's tree as candidates: a scored tree bins by the
    conditional score (score over the parent's: bins 0-7), an unscored one by sibling rank
    (0 or 1+) x depth bucket (bins 8-15).

    Example: tokens (5, 6, 7), parents (-1, 0, -1), unscored ->
    [((5,), s, 8), ((5, 6), s, 9), ((7,), s, 12)].
    """
    depths = tree_layout(tree.parents).depths
    paths: list[tuple[int, ...]] = []
    seen_children: dict[int, int] = {}
    out = []
    for node, (token, parent) in enumerate(zip(tree.tokens, tree.parents)):
        path = (paths[parent] if parent >= 0 else ()) + (int(token),)
        paths.append(path)
        if tree.node_scores is not None:
            base = 1.0 if parent < 0 else tree.node_scores[parent]
            conditional = min(1.0, tree.node_scores[node] / base) if base > 0 else 0.0
            b = min(int(conditional * 8), 7)
        else:
            rank = seen_children.get(parent, 0)
            seen_children[parent] = rank + 1
            b = 8 + 4 * min(rank, 1) + _bucket(depths[node + 1], _DEPTH_EDGES)
        out.append((path, source, b))
    return out


_AGREE_EDGES = (0.25, 0.5, 0.75)  # best single-source rate buckets for agreeing nodes
_AGREE_PRIOR = (0.35, 0.55, 0.75, 0.9, 0.45, 0.65, 0.8, 0.92)  # 2 sources, then 3+, per bucket


def agreement_bin(count: int, best: float) -> int:
    """Bin of a node proposed by ``count`` >= 2 sources whose best rate is ``best``:
    (2 or 3+) x best-rate bucket (<= 0.25, <= 0.5, <= 0.75, more). agreement_bin(3, 0.6) = 6."""
    return 4 * min(count - 2, 1) + sum(best > edge for edge in _AGREE_EDGES)


def merge_candidates(
    candidates: list[Candidate], rate, max_nodes: int, min_prob: float, agreement: str | None = None
) -> tuple[DraftTree | None, dict[tuple[int, ...], dict[str, int]]]:
    """Merge candidates from every source into one draft tree, shared prefixes once.

    A node's conditional probability q is the best ``rate(source, bin)`` among the sources
    that proposed it, or, with ``agreement`` set and two or more sources, the rate of the
    pseudo-source ``agreement`` at :func:`agreement_bin` (agreeing sources are calibrated
    as evidence of their own). Siblings' q are scaled down to sum to at most 1 (greedy
    verification accepts one child at most). A node's score is the product along its
    path; the ``max_nodes`` likeliest nodes at or above ``min_prob`` are kept, best first.

    Args:
        candidates: (path, source, bin) triples; a path's prefixes must be candidates too.
        rate: (source, bin) -> calibrated P(accepted | parent accepted), 0-1.
        agreement: name of the agreement pseudo-source, or None (best source only).

    Returns:
        (tree or None, {path: {source: bin}} for every candidate path, the agreement
        pseudo-source included where it applied).

    Example: [((5,), "a", 0), ((5, 6), "a", 0), ((5,), "b", 0), ((7,), "b", 0)] with rate
    a -> 0.5, b -> 0.6: q (5,) 0.6, (7,) 0.6 -> siblings scaled to 0.5 each; (5, 6) 0.5 * 0.5
    -> tokens (5, 7, 6), parents (-1, -1, 0), scores (0.5, 0.5, 0.25).
    """
    sources: dict[tuple[int, ...], dict[str, int]] = {}
    for path, source, b in candidates:
        sources.setdefault(path, {}).setdefault(source, b)
    q: dict[tuple[int, ...], float] = {}
    siblings: dict[tuple[int, ...], float] = {}
    for path, found in sources.items():
        best = max(rate(s, b) for s, b in found.items())
        if agreement is not None and len(found) >= 2:
            found[agreement] = agreement_bin(len(found), best)
            best = rate(agreement, found[agreement])
        q[path] = best
        siblings[path[:-1]] = siblings.get(path[:-1], 0.0) + best
    scores: dict[tuple[int, ...], float] = {}
    for path in sorted(q, key=len):
        parent = path[:-1]
        if parent and parent not in scores:
            continue
        share = q[path] / max(1.0, siblings[parent])
        scores[path] = share * (scores[parent] if parent else 1.0)
    return tree_from_scores(scores, max_nodes, min_prob), sources


def _split(value) -> tuple[str, ...]:
    if isinstance(value, str):
        value = value.split(",")
    return tuple(str(v).strip() for v in value if str(v).strip())


@dataclass(frozen=True)
class CompositeConfig:
    """Composite drafting settings.

    Attributes:
        sources: source names (``"sam,recycling"`` or a sequence): built-ins ``sam``,
            ``pool``, ``nnt`` (see the module docstring) and any registered draft-free,
            model-free method. More sources find more candidates and cost more Python time
            per step. ``prediction`` is added when ``prediction`` is given.
        source_options: {registered source name: config fields} for those sources.
        prediction: token ids of an expected output (Predicted Outputs); None = none.
        max_nodes: most nodes in the merged tree before the draft budget cuts it.
        max_depth: deepest draft node (tokens) a source may propose.
        min_prob: nodes with a calibrated path probability below this (0-1) are dropped;
            lower keeps more long shots for the budget to weigh.
        nnt_candidates: runner-up tokens of the last verified row tried as next-next tokens.
        nnt_max_match: use next-next-token retrieval only when the root's longest match (in
            the request and the pool) is at most this long (tokens); 0 = only without a match.
        prior_weight: observations a bin's prior is worth; lower adapts faster per request.
        decay: weight kept by older observations per step (0-1).
        calibration_cache: ``"auto"`` (per-user file beside the skip sets), a JSON path, a
            :class:`CalibrationStore`, or None (each request starts from default priors).
        pool: ``"process"`` (an in-process pool per model), a path (an in-process pool per
            model and file, loaded from and saved to that JSON file), a
            :class:`CrossRequestPool`, or None (no cross-request source).
        pool_tokens: memory bound of a pool this config creates (tokens; about 0.5 KB each,
            so the default 32,768 holds about 250 answers of 128 tokens in about 16 MB).

    Raises:
        ValueError: an unknown source, a source that needs a draft model or the target's
            internals or samples its drafts, a non-positive size, a fraction outside its
            range, or a bad calibration / pool value.
    """

    sources: tuple[str, ...] = ("sam", "pool", "nnt", "recycling", "jacobi")
    source_options: dict[str, dict[str, Any]] = field(default_factory=dict, compare=False)
    prediction: tuple[int, ...] | None = None
    max_nodes: int = 24
    max_depth: int = 8
    min_prob: float = 0.02
    nnt_candidates: int = 2
    nnt_max_match: int = 0
    prior_weight: float = 4.0
    decay: float = 0.97
    calibration_cache: Any = field(default="auto", compare=False)
    pool: Any = field(default="process", compare=False)
    pool_tokens: int = 32_768

    def __post_init__(self) -> None:
        object.__setattr__(self, "sources", _split(self.sources))
        if self.prediction is not None:
            object.__setattr__(self, "prediction", tuple(int(t) for t in self.prediction))
        if not self.sources and self.prediction is None:
            raise ValueError("composite needs at least one source")
        if len(set(self.sources)) != len(self.sources):
            raise ValueError(f"duplicate sources in {self.sources}")
        for name in self.sources:
            if name in BUILTIN_SOURCES:
                if name == "prediction" and self.prediction is None:
                    raise ValueError("the prediction source needs prediction= (token ids)")
                continue
            if name == "composite":
                raise ValueError("composite cannot be its own source")
            spec = get_method(name)  # UnknownMethodError (a ValueError) for unknown names
            if not spec.model_free or spec.proposes_distributions:
                raise ValueError(
                    f"source {name!r} needs a draft model, the target's internals or sampled drafts; "
                    "composite merges draft-free, model-free sources only"
                )
        unknown = sorted(set(self.source_options) - set(self.sources))
        if unknown:
            raise ValueError(f"source_options for sources not in use: {unknown}")
        for name in ("max_nodes", "max_depth", "pool_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.nnt_candidates < 0 or self.nnt_max_match < 0:
            raise ValueError("nnt_candidates and nnt_max_match must be >= 0")
        if not (0 <= self.min_prob <= 1 and 0 < self.decay <= 1 and self.prior_weight > 0):
            raise ValueError(f"need 0 <= min_prob <= 1, 0 < decay <= 1, prior_weight > 0; got {self}")
        if not (self.pool is None or isinstance(self.pool, (CrossRequestPool, str, os.PathLike))):
            raise ValueError(f"pool must be 'process', a path, a CrossRequestPool or None, got {self.pool!r}")
        if not (
            self.calibration_cache is None or isinstance(self.calibration_cache, (CalibrationStore, str, os.PathLike))
        ):
            raise ValueError("calibration_cache must be 'auto', a path, a CalibrationStore or None")


def _model_key(request) -> str:
    """A per-model key for the pool and the calibration store."""
    target = request.target
    if isinstance(target, torch.nn.Module):
        try:
            from ._layers import model_fingerprint

            return model_fingerprint(target)
        except (ValueError, AttributeError, StopIteration):
            config = getattr(target, "config", None)
            return f"{type(target).__name__}|{getattr(config, 'model_type', '')}|V{request.vocab_size}"
    return f"{type(target).__name__}|{getattr(target, 'path', '')}|V{request.vocab_size}"


class CompositeDrafter(Drafter):
    """Merges calibrated candidates of several sources into one draft tree (see module docstring)."""

    name = "composite"
    observes_plain_steps = True  # recycling learns from plain steps; nnt reads the last row

    def __init__(self, config: CompositeConfig | None = None):
        self.config = config = CompositeConfig() if config is None else config
        self.store = resolve_calibration_cache(config.calibration_cache)
        pool = config.pool
        self.fixed_pool = pool if isinstance(pool, CrossRequestPool) else None
        self.subs = {
            name: build_drafter(name, **config.source_options.get(name, {}))
            for name in config.sources
            if name not in BUILTIN_SOURCES
        }
        self.active = list(config.sources) + (["prediction"] if config.prediction is not None else [])
        if "prediction" in self.active:
            self.prediction_sam = SuffixAutomaton()
            self.prediction_sam.extend_all(list(config.prediction) + [SEPARATOR])

    # -- lifecycle --------------------------------------------------------------------------
    def begin(self, request) -> None:
        super().begin(request)
        config = self.config
        self.model_key = _model_key(request)
        self.prompt_len = len(request.prompt_ids)
        self.sam = SuffixAutomaton()
        self.fed = 0
        self.pool = self._resolve_pool()
        self.pool_matcher = None if self.pool is None else SuffixMatcher(self.pool.automaton)
        self.pool_version = None if self.pool is None else self.pool.version
        if "prediction" in self.active:
            self.prediction_matcher = SuffixMatcher(self.prediction_sam)
        for sub in self.subs.values():
            sub.begin(request)
        priors = {}
        for name in self.active:
            if name in ("sam", "pool", "prediction"):
                priors[name] = _RETRIEVAL_PRIOR
            elif name == "nnt":
                priors[name] = _NNT_PRIOR
            else:
                priors[name] = _SCORED_PRIOR + _UNSCORED_PRIOR  # scored bins 0-7, unscored 8-15
        if len(self.active) > 1:
            priors["agree"] = _AGREE_PRIOR
        history = self.store.history(self.model_key) if self.store is not None else None
        self.calibration = SourceCalibration(priors, config.prior_weight, config.decay, history)
        self.merged: dict[tuple[int, ...], dict[str, int]] = {}
        self.nnt_guesses: tuple[int, list[int]] | None = None  # (committed length, guesses)
        self.final_tokens: list[int] = list(request.prompt_ids)
        self.finished = False
        self.counts = {name: [0, 0, 0] for name in [*self.active, "agree"]}  # steps proposing, nodes proposed, accepted
        self.steps = self.idle_steps = 0

    def _resolve_pool(self) -> CrossRequestPool | None:
        config = self.config
        if self.fixed_pool is not None:
            return self.fixed_pool
        if config.pool is None or "pool" not in self.active and "nnt" not in self.active:
            return None
        path = None if config.pool == "process" else config.pool
        return process_pool(self.model_key, config.pool_tokens, path)

    # -- sources ----------------------------------------------------------------------------
    def _sync(self, tokens: list[int]) -> None:
        """Feed the newly committed tokens to the request automaton and the matchers."""
        new = tokens[self.fed :]
        self.sam.extend_all(new)
        if self.pool_matcher is not None:
            if self.pool.version != self.pool_version:  # another request grew the pool: resync
                self.pool_matcher = SuffixMatcher(self.pool.automaton)
                self.pool_version = self.pool.version
                new = tokens[-256:]
            self.pool_matcher.feed_all(new)
        if "prediction" in self.active:
            start = max(self.fed, self.prompt_len)
            self.prediction_matcher.feed_all(tokens[start:])
        self.fed = len(tokens)

    def _retrieval(self, depth: int) -> list[Candidate]:
        out: list[Candidate] = []
        if "sam" in self.active and self.sam.match_length:
            length = self.sam.match_length
            for end in self.sam.match_ends():
                chain = self.sam.continuation(end, depth)
                out += chain_candidates(chain, "sam", lambda d, n=length: retrieval_bin(n, d))
        if "pool" in self.active and self.pool_matcher is not None and self.pool_matcher.length:
            length = self.pool_matcher.length
            for end in self.pool_matcher.ends():
                chain = self.pool.automaton.continuation(end, depth, stop=SEPARATOR)
                out += chain_candidates(chain, "pool", lambda d, n=length: retrieval_bin(n, d))
        if "prediction" in self.active:
            out += self._prediction(depth)
        return out

    def _prediction(self, depth: int) -> list[Candidate]:
        matcher, sam = self.prediction_matcher, self.prediction_sam
        if self.fed <= self.prompt_len:  # nothing generated yet: the prediction's start
            chain = sam.continuation(-1, depth, stop=SEPARATOR)
            return chain_candidates(chain, "prediction", lambda d: retrieval_bin(4, d))
        out: list[Candidate] = []
        for end in matcher.ends():
            chain = sam.continuation(end, depth, stop=SEPARATOR)
            out += chain_candidates(chain, "prediction", lambda d, n=matcher.length: retrieval_bin(n, d))
        return out

    def _next_next(self, tokens: list[int], depth: int) -> list[Candidate]:
        """LogitSpec: runner-up tokens of the last verified row, each followed by what
        followed it earlier (request first, then pool)."""
        guesses = self.nnt_guesses
        if guesses is None or guesses[0] != len(tokens) or depth < 1:
            return []
        pool_length = self.pool_matcher.length if self.pool_matcher is not None else 0
        if max(self.sam.match_length, pool_length) > self.config.nnt_max_match:
            return []
        out: list[Candidate] = []
        for rank, guess in enumerate(guesses[1]):
            chain = [guess] + self._follow(guess, depth - 1)
            out += chain_candidates(chain, "nnt", lambda d, r=rank: 4 * min(r, 1) + _bucket(d, _DEPTH_EDGES))
        return out

    def _follow(self, token: int, length: int) -> list[int]:
        """What followed ``token``'s first occurrence in the request, else in the pool."""
        if length < 1:
            return []
        state = self.sam.next[0].get(token)
        if state is not None and self.sam.first[state] < len(self.sam) - 1:
            return self.sam.continuation(self.sam.first[state], length)
        if self.pool is not None:
            automaton = self.pool.automaton
            state = automaton.next[0].get(token)
            if state is not None:
                return automaton.continuation(automaton.first[state], length, stop=SEPARATOR)
        return []

    # -- protocol ---------------------------------------------------------------------------
    def propose(self, tokens: list[int], max_depth: int) -> DraftTree | None:
        config = self.config
        depth = min(max_depth, config.max_depth)
        self._sync(tokens)
        self.steps += 1
        candidates = self._retrieval(depth)
        if "nnt" in self.active:
            candidates += self._next_next(tokens, depth)
        for name, sub in self.subs.items():
            tree = sub.propose(tokens, depth)
            if tree is not None and len(tree):
                candidates += tree_candidates(tree.truncated(depth), name)
        for _, source, _ in candidates:
            self.counts[source][1] += 1
        agreement = "agree" if len(self.active) > 1 else None
        tree, self.merged = merge_candidates(
            candidates, self.calibration.rate, config.max_nodes, config.min_prob, agreement
        )
        if tree is None:
            self.idle_steps += 1
        return tree

    def on_accept(self, step) -> None:
        self.final_tokens = step.tokens
        draft = step.draft
        if len(draft):
            self._learn(draft, step.accepted)
        for sub in self.subs.values():
            if len(draft) or sub.observes_plain_steps:
                sub.on_accept(step)
        if "nnt" in self.active and self.config.nnt_candidates:
            row = step.accepted[-1] + 1 if step.accepted else 0
            k = min(self.config.nnt_candidates + 1, step.scores.shape[-1])
            values, indices = step.scores[row].topk(k)
            guesses = [
                int(t) for t, v in zip(indices.tolist(), values.tolist()) if t != step.next_token and v > float("-inf")
            ]
            self.nnt_guesses = (len(step.tokens), guesses[: self.config.nnt_candidates])

    def _learn(self, draft: DraftTree, accepted: list[int]) -> None:
        """Per (source, bin), count nodes verified with their parent accepted, and hits."""
        calibration = self.calibration
        calibration.step()
        hit = set(accepted)
        paths: list[tuple[int, ...]] = []
        for node, (token, parent) in enumerate(zip(draft.tokens, draft.parents)):
            path = (paths[parent] if parent >= 0 else ()) + (token,)
            paths.append(path)
            if parent >= 0 and parent not in hit:
                continue
            for source, b in self.merged.get(path, {}).items():
                calibration.observe(source, b, node in hit)
                if node in hit:
                    self.counts[source][2] += 1
        for source in {s for p in paths for s in self.merged.get(p, {})}:
            self.counts[source][0] += 1

    def _finish(self) -> None:
        """End of request: the output joins the pool, the calibration is stored."""
        if self.finished:
            return
        self.finished = True
        output = self.final_tokens[self.prompt_len :]
        if self.pool is not None and output:
            self.pool.add(output)
            if self.pool.path is not None:
                self.pool.save()
        if self.store is not None:
            self.store.fold(self.model_key, self.calibration.totals)
            self.store.save()

    def stats(self) -> dict:
        """Per-source figures; called once at the end of a request, it also adds the output
        to the pool and stores the calibration."""
        self._finish()
        out: dict[str, Any] = {"steps": self.steps, "idle_steps": self.idle_steps}
        for name, (steps, proposed, accepted) in self.counts.items():
            out[name] = {"verified_steps": steps, "proposed_nodes": proposed, "accepted": accepted}
        if self.pool is not None:
            out["pool_tokens"] = self.pool.num_tokens
        for name, sub in self.subs.items():
            out[name]["drafter"] = sub.stats()
        return out


register(
    MethodSpec(
        "composite",
        CompositeConfig,
        CompositeDrafter,
        "one calibrated draft tree from several draft-free sources: suffix automaton, cross-request pool, "
        "next-next-token retrieval, token recycling, Jacobi (SAM-Decoding arXiv 2411.10666, LogitSpec arXiv 2507.01449)",
    )
)
