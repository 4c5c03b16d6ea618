"""``composite``: one draft tree from several draft sources, calibrated per source.

Each step asks every source for candidates, merges them into one tree (shared prefixes
become one node) and scores each node by the acceptance its *source* has earned so far in
the request: a per-(source, score bin) acceptance rate, learned online from the verified
steps. The draft budget (:class:`hasten.budget.DraftBudget`) then keeps the nodes that pay
for their verification. Output never changes: the engine verifies every node.

Sources: ``"sam"`` drafts the continuation of the longest earlier match of the request's
text, found in O(1) per step by a suffix automaton (SAM-Decoding, arXiv 2411.10666,
:mod:`hasten.sam`); ``"draft"`` drafts from ``draft_ids`` (a user-given draft text, as in
OpenAI's Predicted Outputs), aligned after the longest earlier match in it; any other name
is a registered model-free drafter (``suffix``, ``recycling``, ``trie``, ...), run as is.

Terms: a node's *conditional score* is a source's confidence that the target accepts the
node given its parent was accepted (its own node score over its parent's; a chain node of a
model-free source without scores counts 1.0 for the first node and is binned by depth);
*calibrated* probabilities come from :class:`SourceCalibration`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..sam import SuffixAutomaton
from ..tree import DraftTree
from ._tree_build import tree_from_scores
from .base import Drafter, DraftRequest, MethodSpec, VerifiedStep, build_drafter, get_method, register

__all__ = ["CompositeConfig", "CompositeDrafter", "SourceCalibration", "merge_drafts"]

MODEL_FREE_BUILTINS = ("sam", "draft")


@dataclass(frozen=True)
class CompositeConfig:
    """Attributes:
    sources: draft sources asked each step (more sources: more candidates, more drafting
        time per step); ``"sam"``, ``"draft"`` or registered model-free drafter names.
    max_nodes: most nodes in the merged tree before the draft budget's cut (more: wider
        trees, costlier verification).
    max_chain: longest chain drafted by ``sam`` / ``draft`` (tokens).
    bins: score bins per source for calibration.
    prior_weight: pseudo-observations of the prior (the bin centre); larger = slower to
        trust what a request shows.
    draft_ids: token ids of a user-given draft (the ``"draft"`` source), or None.

    Raises:
        ValueError: an unknown or model-based source, or a non-positive size.
    """

    sources: tuple[str, ...] = ("sam", "suffix", "recycling")
    max_nodes: int = 24
    max_chain: int = 12
    bins: int = 8
    prior_weight: float = 2.0
    draft_ids: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if not self.sources:
            raise ValueError("composite needs at least one source")
        if min(self.max_nodes, self.max_chain, self.bins) < 1 or self.prior_weight <= 0:
            raise ValueError("max_nodes, max_chain, bins and prior_weight must be positive")
        for name in self.sources:
            if name in MODEL_FREE_BUILTINS:
                continue
            if name == "composite":
                raise ValueError("composite cannot be its own source")
            spec = get_method(name)
            if not spec.model_free:
                raise ValueError(f"composite source {name!r} is not model-free (needs a model or samples drafts)")
        if "draft" in self.sources and not self.draft_ids:
            raise ValueError('the "draft" source needs draft_ids')


@dataclass
class SourceCalibration:
    """Acceptance rate per (source, score bin), learned from verified nodes.

    ``probability(source, score)`` = (accepted + w * centre) / (verified + w), with w the
    prior weight and centre the bin's midpoint. Example: 8 bins, w = 2, a score of 0.9 falls
    in bin 7 (centre 0.9375); after 3 verified nodes of that bin, 1 accepted:
    (1 + 2 * 0.9375) / (3 + 2) = 0.575.

    >>> cal = SourceCalibration(bins=8, prior_weight=2.0)
    >>> for ok in (True, False, False):
    ...     cal.observe("sam", 0.9, ok)
    >>> round(cal.probability("sam", 0.9), 3), round(cal.probability("suffix", 0.9), 4)
    (0.575, 0.9375)
    """

    bins: int = 8
    prior_weight: float = 2.0
    counts: dict[tuple[str, int], list[int]] = field(default_factory=dict)

    def _bin(self, score: float) -> int:
        return min(self.bins - 1, max(0, int(score * self.bins)))

    def observe(self, source: str, score: float, accepted: bool) -> None:
        """Count one verified node of ``source`` whose conditional score was ``score`` (0-1)."""
        cell = self.counts.setdefault((source, self._bin(score)), [0, 0])
        cell[0] += int(accepted)
        cell[1] += 1

    def probability(self, source: str, score: float) -> float:
        """Calibrated probability (0-1) that a node of ``source`` with ``score`` is accepted."""
        b = self._bin(score)
        accepted, verified = self.counts.get((source, b), (0, 0))
        centre = (b + 0.5) / self.bins
        return (accepted + self.prior_weight * centre) / (verified + self.prior_weight)

    def reset(self) -> None:
        self.counts.clear()


def _conditional_scores(tree: DraftTree) -> list[float]:
    """Each node's score given its parent: node score / parent's (first chain node 1.0,
    deeper unscored nodes binned by depth: 1 / (depth + 1))."""
    if tree.node_scores is None:
        depth: list[int] = []
        for p in tree.parents:
            depth.append(0 if p < 0 else depth[p] + 1)
        return [1.0 / (d + 1) for d in depth]
    out = []
    for i, p in enumerate(tree.parents):
        parent = 1.0 if p < 0 else tree.node_scores[p]
        out.append(min(1.0, tree.node_scores[i] / parent) if parent > 0 else 0.0)
    return out


def merge_drafts(
    drafts: dict[str, DraftTree], calibration: SourceCalibration, max_nodes: int
) -> tuple[DraftTree | None, dict[tuple[int, ...], dict[str, float]]]:
    """Merge per-source drafts into one tree scored by calibrated path probability.

    Args:
        drafts: source name -> its draft tree.
        calibration: per-source acceptance rates.
        max_nodes: most nodes kept (the most probable paths).

    Returns:
        ``(tree, proposers)``: the merged tree (None if no source drafted) whose
        ``node_scores`` are calibrated path probabilities (a path proposed by several
        sources takes the largest), and, for each path (token tuple below the root), the
        sources that proposed it with their conditional scores.

    Example: sam drafts the chain 5 6, suffix the tree {5, 7}: the merged tree has the
    nodes 5, 6, 7 (5 shared), and ``proposers[(5,)]`` names both sources.
    """
    proposers: dict[tuple[int, ...], dict[str, float]] = {}
    path_prob: dict[tuple[int, ...], float] = {}
    for source, tree in drafts.items():
        conditional = _conditional_scores(tree)
        paths: list[tuple[int, ...]] = []
        probs: list[float] = []
        for i, (token, parent) in enumerate(zip(tree.tokens, tree.parents)):
            path = (paths[parent] if parent >= 0 else ()) + (int(token),)
            prob = (probs[parent] if parent >= 0 else 1.0) * calibration.probability(source, conditional[i])
            paths.append(path)
            probs.append(prob)
            proposers.setdefault(path, {})[source] = conditional[i]
            path_prob[path] = max(path_prob.get(path, 0.0), prob)
    if not path_prob:
        return None, proposers
    return tree_from_scores(path_prob, max_nodes), proposers


class CompositeDrafter(Drafter):
    """Several draft sources merged into one calibrated draft tree (see module docstring)."""

    name = "composite"
    observes_plain_steps = True

    def __init__(self, config: CompositeConfig) -> None:
        self.config = config
        self.calibration = SourceCalibration(config.bins, config.prior_weight)
        self.drafters = {s: build_drafter(s) for s in config.sources if s not in MODEL_FREE_BUILTINS}
        self.sam = SuffixAutomaton()
        self.draft_sam = SuffixAutomaton(config.draft_ids or ())
        self.proposers: dict[tuple[int, ...], dict[str, float]] = {}
        self.steps = 0

    def begin(self, request: DraftRequest) -> None:
        super().begin(request)
        for drafter in self.drafters.values():
            drafter.begin(request)
        self.calibration.reset()
        self.sam = SuffixAutomaton()
        self.proposers = {}
        self.steps = 0

    def _sync(self, tokens: list[int]) -> None:
        if self.sam.tokens != tokens[: len(self.sam.tokens)]:
            self.sam = SuffixAutomaton()
        for token in tokens[len(self.sam.tokens) :]:
            self.sam.extend(token)

    def _draft_text_chain(self, tokens: list[int], depth: int) -> list[int]:
        """Continuation in ``draft_ids`` after the longest suffix of ``tokens`` found there."""
        ids = self.config.draft_ids or ()
        for size in range(min(len(tokens), 8), 0, -1):
            tail = tuple(tokens[-size:])
            for start in range(len(ids) - size + 1):
                if tuple(ids[start : start + size]) == tail:
                    return list(ids[start + size : start + size + depth])
        return []

    def propose(self, tokens: list[int], max_depth: int) -> DraftTree | None:
        self.steps += 1
        depth = min(max_depth, self.config.max_chain)
        drafts: dict[str, DraftTree] = {}
        for source in self.config.sources:
            if source == "sam":
                self._sync(tokens)
                chain = self.sam.continuation(depth)
            elif source == "draft":
                chain = self._draft_text_chain(tokens, depth)
            else:
                tree = self.drafters[source].propose(tokens, max_depth)
                if tree is not None and len(tree.tokens):
                    drafts[source] = DraftTree(tree.tokens, tree.parents, node_scores=tree.node_scores)
                continue
            if chain:
                drafts[source] = DraftTree(tuple(chain), tuple(range(-1, len(chain) - 1)))
        tree, self.proposers = merge_drafts(drafts, self.calibration, self.config.max_nodes)
        return tree

    def on_accept(self, step: VerifiedStep) -> None:
        accepted = set(step.accepted)
        paths: list[tuple[int, ...]] = []
        for i, (token, parent) in enumerate(zip(step.draft.tokens, step.draft.parents)):
            paths.append((paths[parent] if parent >= 0 else ()) + (int(token),))
            if parent >= 0 and parent not in accepted:
                continue  # verified only when its parent was accepted
            for source, score in self.proposers.get(paths[i], {}).items():
                self.calibration.observe(source, score, i in accepted)
        for drafter in self.drafters.values():
            if len(step.draft.tokens) or drafter.observes_plain_steps:
                drafter.on_accept(step)

    def stats(self) -> dict:
        cells = {f"{s}:{b}": list(c) for (s, b), c in sorted(self.calibration.counts.items())}
        return {"steps": self.steps, "calibration": cells, **{s: d.stats() for s, d in self.drafters.items()}}


register(
    MethodSpec(
        "composite",
        CompositeConfig,
        CompositeDrafter,
        "one calibrated draft tree from several sources: suffix automaton, suffix, recycling (SAM-Decoding arXiv 2411.10666)",
    )
)
