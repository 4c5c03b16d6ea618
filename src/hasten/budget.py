"""Hardware-aware draft sizing: verify only as many draft nodes as pay for themselves.

Verifying N tokens costs more than verifying one on a CPU (see :mod:`hasten.cost`), so a
long draft that is usually wrong makes speculative decoding slower than plain decoding.
After each step the controller updates, per depth d, the rate at which a draft token at
depth d is accepted given that its parent was; before each step it cuts the proposed tree
at the depth D that maximizes expected committed tokens per second:

    E(D) = 1 + sum_{d=1..D} prod_{j<=d} q_j,      choose argmax_D  E(D) / cost(n_D + 1)

where n_D is the number of tree nodes at depth <= D. D = 0 is a plain decoding step, so
with no good candidates the engine falls back to plain decoding; one step in
``explore_every`` still verifies depth 1 so the estimates can recover.

When the drafter scores its nodes (``DraftTree.node_scores``, e.g. suffix or trie
retrieval frequencies), the cut is per node instead of per depth: each node's
conditional score (its path score over its parent's) falls in one of ``score_bins``
bins, whose acceptance rate given the parent was accepted is learned the same way;
a node's path probability P_i is the product of those rates along its path, and the
engine verifies the n most probable nodes with

    n = argmax_n (1 + sum_{i<n} P_i) / cost(n + 1)

so a step with a long, unanimous match verifies a deep draft and a step with a weak
one decodes plainly. Ranking nodes by a calibrated draft confidence is the dynamic
draft tree of EAGLE-2 (Li et al., "EAGLE-2: Faster Inference of Language Models with
Dynamic Draft Trees", arXiv 2406.16858); here the confidence comes from any scoring
drafter and the tree size from the measured cost curve.

This is the hardware-aware dynamic tree idea of Parallel Prompt Decoding (Chen et al.,
"Hardware-Aware Parallel Prompt Decoding for Memory-Efficient Acceleration of LLM
Inference", arXiv 2405.18628) applied to any drafter. It never changes output, only speed.
"""

from __future__ import annotations

from dataclasses import dataclass

from .cost import CostCurve
from .tree import DraftTree, tree_layout

__all__ = ["BudgetConfig", "DraftBudget"]


@dataclass(frozen=True)
class BudgetConfig:
    """Draft sizing settings.

    Attributes:
        prior: acceptance rate assumed per depth before evidence (fraction 0-1); higher
            starts with longer drafts.
        prior_weight: how many observations the prior is worth.
        decay: weight kept by older observations per update (0-1); lower adapts faster.
        explore_every: verify at least depth 1 once per this many steps whose optimum
            is a plain step (0 = never explore).
        max_nodes: hard cap on verified nodes regardless of cost (None = no cap).
        use_node_scores: cut scored drafts per node from calibrated scores (see the
            module docstring); False = always cut by depth.
        score_bins: number of equal-width bins of the conditional node score (0-1).
        score_decay: weight kept by older score observations per step (0-1).

    Raises:
        ValueError: a field outside its range.
    """

    prior: float = 0.5
    prior_weight: float = 2.0
    decay: float = 0.9
    explore_every: int = 8
    max_nodes: int | None = 64
    use_node_scores: bool = True
    score_bins: int = 8
    score_decay: float = 0.97

    def __post_init__(self) -> None:
        if not (
            0 < self.prior < 1
            and self.prior_weight > 0
            and 0 < self.decay <= 1
            and self.explore_every >= 0
            and self.score_bins >= 1
            and 0 < self.score_decay <= 1
        ):
            raise ValueError(f"invalid BudgetConfig {self}")


class DraftBudget:
    """Per-request controller (see module docstring); ``reset()`` starts afresh."""

    def __init__(self, curve: CostCurve, config: BudgetConfig = BudgetConfig()):
        self.curve, self.config = curve, config
        self.reset()

    def reset(self) -> None:
        self.trials: list[float] = []  # decayed count of steps whose draft reached depth d+1 with parent accepted
        self.hits: list[float] = []  # decayed count of those where the depth-(d+1) token was accepted
        bins = self.config.score_bins
        self.bin_trials = [0.0] * bins  # decayed count of scored nodes in bin b whose parent was accepted
        self.bin_hits = [0.0] * bins  # decayed count of those that were accepted
        self.skipped = 0

    def rate(self, depth: int) -> float:
        """q_depth: estimated P(token at ``depth`` accepted | its parent accepted)."""
        c = self.config
        i = depth - 1
        n = self.trials[i] if i < len(self.trials) else 0.0
        s = self.hits[i] if i < len(self.hits) else 0.0
        return (s + c.prior * c.prior_weight) / (n + c.prior_weight)

    def choose_depth(self, depths_per_node: list[int]) -> int:
        """Depth cut D for a tree whose nodes have these depths (1-based)."""
        if not depths_per_node:
            return 0
        max_depth = max(depths_per_node)
        counts = [0] * (max_depth + 1)
        for d in depths_per_node:
            counts[d] += 1
        best_depth, best_rate = 0, 1.0 / self.curve.cost(1)
        expected, reach, nodes = 1.0, 1.0, 0
        for depth in range(1, max_depth + 1):
            reach *= self.rate(depth)
            expected += reach
            nodes += counts[depth]
            if self.config.max_nodes is not None and nodes > self.config.max_nodes:
                break
            rate = expected / self.curve.cost(nodes + 1)
            if rate > best_rate:
                best_depth, best_rate = depth, rate
        return self._explore(best_depth)

    def _explore(self, best: int) -> int:
        """``best`` (a depth or node count), or 1 every ``explore_every``-th time it is 0
        (counted over the request, not only in a row), so the acceptance estimates can
        recover."""
        if best == 0 and self.config.explore_every:
            self.skipped += 1
            if self.skipped >= self.config.explore_every:
                self.skipped = 0
                return 1
        return best

    def _bin(self, draft: DraftTree, node: int) -> int:
        scores = draft.node_scores
        parent = draft.parents[node]
        base = 1.0 if parent < 0 else scores[parent]
        conditional = min(1.0, scores[node] / base) if base > 0 else 0.0
        return min(int(conditional * self.config.score_bins), self.config.score_bins - 1)

    def bin_rate(self, b: int) -> float:
        """Estimated P(node accepted | parent accepted) for conditional-score bin ``b``;
        the prior is the bin's centre score."""
        c = self.config
        prior = (b + 0.5) / c.score_bins
        return (self.bin_hits[b] + prior * c.prior_weight) / (self.bin_trials[b] + c.prior_weight)

    def choose_nodes(self, draft: DraftTree) -> list[int]:
        """Indices (increasing, closed under parents) of the scored draft's nodes worth
        verifying; empty = a plain step (see module docstring)."""
        reach: list[float] = []
        for node, parent in enumerate(draft.parents):
            q = self.bin_rate(self._bin(draft, node))
            reach.append(q * (1.0 if parent < 0 else reach[parent]))
        order = sorted(range(len(reach)), key=lambda i: (-reach[i], i))  # a parent never ranks below its child
        limit = len(order) if self.config.max_nodes is None else min(len(order), self.config.max_nodes)
        best_n, best_rate, expected = 0, 1.0 / self.curve.cost(1), 1.0
        for n in range(1, limit + 1):
            expected += reach[order[n - 1]]
            rate = expected / self.curve.cost(n + 1)
            if rate > best_rate:
                best_n, best_rate = n, rate
        return sorted(order[: self._explore(best_n)])

    def cut(self, draft: DraftTree, max_depth: int | None = None) -> DraftTree:
        """The draft cut to the nodes that pay for themselves (possibly empty): per node
        when it carries ``node_scores`` and ``use_node_scores``, else at one depth.

        A sampled draft (``draft_probs`` set, verified with the speculative sampling rule)
        is cut at min(its depth, D*), where D* is the best depth of the deepest draft the
        drafter could have made (``max_depth`` levels as wide as its first level), never
        of the draft it did make: whether a sampled token is verified must not depend on
        that token or later ones, or the output distribution is biased (a drafter's own
        confidence stop only looks at tokens already drafted, so it keeps the rule exact).

        Raises:
            ValueError: a sampled draft without ``max_depth``.
        """
        if draft.draft_probs is not None:
            if max_depth is None:
                raise ValueError("cutting a sampled draft needs max_depth (the deepest draft possible)")
            depths = tree_layout(draft.parents).depths[1:]
            width = sum(1 for d in depths if d == 1)
            profile = [d for d in range(1, max(max_depth, 1) + 1) for _ in range(width)]
            depth = min(self.choose_depth(profile), max(depths))
            return DraftTree.chain([]) if depth == 0 else draft.truncated(depth, self.config.max_nodes)
        if draft.node_scores is not None and self.config.use_node_scores:
            return draft.subset(self.choose_nodes(draft))
        depths = tree_layout(draft.parents).depths[1:]
        depth = self.choose_depth(list(depths))
        if depth == 0:
            return DraftTree.chain([])
        return draft.truncated(depth, self.config.max_nodes)

    def observe_step(self, draft: DraftTree, path: list[int]) -> None:
        """Record a verified (non-empty) draft and the accepted node indices along its
        path: the per-depth rates, and the score-bin rates when it is scored."""
        self.observe(max(tree_layout(draft.parents).depths), len(path))
        if draft.node_scores is None or not self.config.use_node_scores:
            return
        decay = self.config.score_decay
        self.bin_trials = [t * decay for t in self.bin_trials]
        self.bin_hits = [h * decay for h in self.bin_hits]
        accepted = set(path)
        for node, parent in enumerate(draft.parents):
            if parent < 0 or parent in accepted:
                b = self._bin(draft, node)
                self.bin_trials[b] += 1.0
                self.bin_hits[b] += 1.0 if node in accepted else 0.0

    def observe(self, verified_depth: int, accepted: int) -> None:
        """Record a step that verified a tree of depth ``verified_depth`` and accepted
        ``accepted`` tokens along the path."""
        decay = self.config.decay
        while len(self.trials) < verified_depth:
            self.trials.append(0.0)
            self.hits.append(0.0)
        for i in range(len(self.trials)):
            self.trials[i] *= decay
            self.hits[i] *= decay
        for depth in range(1, min(accepted + 1, verified_depth) + 1):
            self.trials[depth - 1] += 1.0
            self.hits[depth - 1] += 1.0 if accepted >= depth else 0.0
