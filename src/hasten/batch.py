"""Batched verification with per-row acceptance: several requests share each target forward.

:class:`BatchedDecoder` holds B independent requests (*rows*) in one KV cache of shape
(B, heads, L, head_dim). Each step every row drafts its own tree (or nothing: a plain
step), the trees are padded to the widest one (Q = max N_b + 1 query rows) and verified in
**one** target forward with explicit per-row position ids and a 4-D additive mask
(B, 1, Q, L + Q) that shows each query row its own cached tokens and its ancestors in its
own tree. Each row then accepts its own path (greedy or position-keyed sampling exactly as
:func:`hasten.generate` does) and the cache is compacted **per row**: row b keeps its
``len_b`` cached tokens followed by its root and accepted nodes, left-aligned, so rows
end each step with different lengths (slots past a row's length are padding, hidden by
the mask). The cache lives in preallocated per-layer buffers written in place: the
forward writes its Q new slots per row at [L, L + Q) and the compaction copies only each
row's kept slots down, so a step's cache work is O(B x accepted), not O(B x L). Requests
join (:meth:`BatchedDecoder.add`, a batch-1 prefill then a merge) and leave
(:meth:`BatchedDecoder.remove`) between steps: continuous batching. With several rows the
draft width is chosen for the batch as a whole (:func:`batch_width` on the decoder's own
step timings, :class:`BatchCost`; :class:`BatchOff` stops proposing while it keeps
choosing plain steps).

Guarantee: a row's tokens are those :func:`hasten.generate` gives for the same request
(same method, options, sampling parameters and seed) up to the floating-point rounding of
a padded, masked, batched forward: token-identical in float64 and float32 on the tests
here; in bfloat16 a near-tie can flip (plain batched decoding has the same property).
The reference path is :func:`hasten.generate` itself, one request at a time.

Not batched (the server runs them through :func:`hasten.generate`, one at a time):
drafters that run the target's own layers (``needs_torch_target``), drafters that
sample their drafts when sampling (``proposes_distributions``, verified with the
speculative sampling rule), and models with sliding-window layers.

Dims: B rows, Q query rows per step (root + padded draft), L cached slots, V vocabulary.
"""

from __future__ import annotations

import collections
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from transformers import DynamicCache

from . import kv
from .budget import BudgetConfig, DraftBudget
from .cost import CostCurve, load_or_measure
from .drafters.base import Drafter, DraftRequest, VerifiedStep, build_drafter
from .engine import Committer, GenerationStats, stats_name
from .sampling import PositionDraws, SamplingParams, choose_tokens, presence_rows, process_logits
from .targets import model_eos_ids
from .tree import DraftTree, tree_layout
from .verify import walk_tree

_HEADROOM = 64  # spare KV slots allocated past the longest row when a row joins

__all__ = [
    "AutoOff",
    "AutoOffConfig",
    "BatchCost",
    "BatchOff",
    "BatchRequest",
    "BatchRow",
    "BatchedDecoder",
    "NotBatchableError",
    "TokenConstraint",
    "batch_width",
    "batchable",
    "measured_speedup",
]


class NotBatchableError(ValueError):
    """A request whose method cannot share a batch (run it with :func:`hasten.generate`)."""


class TokenConstraint(Protocol):
    """A per-request constraint on which tokens may follow (e.g. a JSON-schema grammar).

    ``tree_masks(root_tokens, draft)`` returns the draft cut to the nodes the constraint
    allows (a node whose token it forbids is dropped with its subtree) and an (N'+1, V)
    bool mask of allowed next tokens for the root and each kept node; the state must not
    change. ``accept(tokens)`` advances the state by committed tokens only.
    """

    def tree_masks(self, draft: DraftTree) -> tuple[DraftTree, torch.Tensor]: ...

    def accept(self, tokens: Sequence[int]) -> None: ...


@dataclass(frozen=True)
class AutoOffConfig:
    """When speculation turns itself off for a request.

    Every ``window`` verification steps that drafted, the measured speedup of those steps
    is estimated as ``committed per step * cost(1) / cost(mean verified nodes + 1)`` on
    the target's measured cost curve (:mod:`hasten.cost`). Below ``min_speedup`` the
    request takes plain steps for ``off_steps`` steps (doubling after each further losing
    probe, at most ``max_off_steps``), then probes speculation again for ``window`` steps.
    Trades nothing against fidelity: output never changes, only which steps draft.

    Raises:
        ValueError: window < 1, off_steps < 1, max_off_steps < off_steps or min_speedup <= 0.
    """

    window: int = 8
    min_speedup: float = 1.0
    off_steps: int = 16
    max_off_steps: int = 128

    def __post_init__(self) -> None:
        if self.window < 1 or self.off_steps < 1 or self.max_off_steps < self.off_steps or self.min_speedup <= 0:
            raise ValueError(f"invalid AutoOffConfig {self}")


class BatchCost:
    """Seconds per batched verification forward of B rows x Q query tokens per row, as this
    decoder measures them.

    The batch-1 cost curve (:mod:`hasten.cost`, measured on a 256-token context, and noisy
    on a busy machine) misjudges a padded batch: every one of the B rows attends over its
    own L cached slots for each of its Q query rows, so a B x 2 step on a long context can
    cost 1.6x a B x 1 step where the curve's cost(2B) / cost(B) is ~1.0. So the decoder
    times its own forwards (the median of the last ``window`` of each shape) and
    :meth:`cost` answers, for B rows and width Q:

    1. Q timed: its median;
    2. two or more other widths timed at B: linear interpolation between the nearest timed
       widths (extrapolation from the last two), never below a timed narrower width;
    3. one width Q' timed at B: ``timed(B, Q') * M(B * Q) / M(B * Q')``, where M is the curve
       made monotone (M(n) = max of curve.cost(s) for s <= n);
    4. nothing timed at B: M(B * Q).

    :meth:`known` says whether a plain step (Q = 1) has been timed at B; the width rule
    (:func:`batch_width`) takes a plain step until it has, so every later comparison is
    against a measured plain step, and it widens at most one past the widest timed width
    (:meth:`widest`), so a width the curve makes look cheap is tried for one step and then
    judged on its own timing, never a jump to a wide, slow step on the curve's word.

    Example: curve cost(8) = 1.5, cost(16) = 1.8, cost(24) = 2.1 s. Timed (8, 1) = 1.5 s
    only: cost(8, 2) = 1.5 * 1.8 / 1.5 = 1.8. Timed also (8, 2) = 2.7 s: cost(8, 3) =
    2.7 + (2.7 - 1.5) = 3.9 (extrapolated).

    Raises:
        ValueError: window < 1.
    """

    def __init__(self, curve: CostCurve, window: int = 8):
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.curve, self.window = curve, window
        self.timed: dict[tuple[int, int], collections.deque[float]] = {}

    def observe(self, rows: int, width: int, seconds: float) -> None:
        """Record one forward of ``rows`` rows x ``width`` query tokens that took ``seconds``."""
        self.timed.setdefault((rows, width), collections.deque(maxlen=self.window)).append(seconds)

    def known(self, rows: int) -> bool:
        """Whether a plain step (width 1) of ``rows`` rows has been timed."""
        return (rows, 1) in self.timed

    def widest(self, rows: int) -> int:
        """The widest width (query tokens per row) timed at ``rows`` rows (0: none)."""
        return max((q for b, q in self.timed if b == rows), default=0)

    def _monotone(self, size: int) -> float:
        return max(self.curve.cost(s) for s in range(1, size + 1))

    def cost(self, rows: int, width: int) -> float:
        """Estimated seconds of a (rows, width) forward (see the class docstring)."""
        points = sorted((q, statistics.median(t)) for (b, q), t in self.timed.items() if b == rows)
        if not points:
            return self._monotone(rows * width)
        widths = [q for q, _ in points]
        if width in widths:
            return points[widths.index(width)][1]
        if len(points) == 1:
            ((q, seconds),) = points
            return seconds * self._monotone(rows * width) / self._monotone(rows * q)
        above = next((k for k, q in enumerate(widths) if q > width), len(points))
        lo, hi = (above - 1, above) if 0 < above < len(points) else ((0, 1) if above == 0 else (-2, -1))
        (q0, t0), (q1, t1) = points[lo], points[hi]
        estimate = t0 + (t1 - t0) * (width - q0) / (q1 - q0)
        narrower = [t for q, t in points if q < width]
        return max([estimate, *narrower])


class BatchOff:
    """Batch-level auto-off: stop even proposing drafts while the width rule keeps refusing them.

    When :func:`batch_width` picks width 0 on ``patience`` consecutive steps in which some
    row proposed a draft, the drafters' proposals are pure overhead (every row verifies
    only its root), so the next ``off_steps`` steps skip proposing; the off period doubles
    each time this repeats (at most ``max_off_steps``) and resets when the rule next drafts.
    Never changes output (drafts never do).

    Example: patience 2, off_steps 3: refused, refused -> 3 steps without proposals ->
    refused, refused -> 6 steps without proposals.

    Raises:
        ValueError: patience < 1, off_steps < 1 or max_off_steps < off_steps.
    """

    def __init__(self, patience: int = 8, off_steps: int = 16, max_off_steps: int = 128):
        if patience < 1 or off_steps < 1 or max_off_steps < off_steps:
            raise ValueError(f"invalid BatchOff({patience}, {off_steps}, {max_off_steps})")
        self.patience, self.off_steps, self.max_off_steps = patience, off_steps, max_off_steps
        self.refused, self.off_left, self.next_off = 0, 0, off_steps

    @property
    def speculating(self) -> bool:
        """Whether rows propose drafts this step."""
        return self.off_left == 0

    def observe(self, proposed: bool, drafted: bool) -> None:
        """Record one batched step: did any row propose a draft, did the width rule keep one."""
        if self.off_left:
            self.off_left -= 1
            return
        if drafted:
            self.refused, self.next_off = 0, self.off_steps
        elif proposed:
            self.refused += 1
            if self.refused >= self.patience:
                self.off_left, self.refused = self.next_off, 0
                self.next_off = min(2 * self.next_off, self.max_off_steps)


def batch_width(expected: Sequence[Sequence[float]], cost: CostCurve | BatchCost) -> int:
    """Draft nodes per row (Q - 1) that maximize committed tokens per second for the whole batch.

    Every row's tree is padded to the widest, so one row's long draft makes all B rows pay
    for Q query tokens: a step costs ``cost(B, Q)`` (a :class:`BatchCost`: the decoder's own
    timings: 0 until a plain step of B rows has been timed, and at most one node wider than
    the widest width timed at B; or, given a batch-1
    :class:`~hasten.cost.CostCurve`, ``curve.cost(B * Q)``).
    Row b expects ``expected[b][n]`` committed tokens when it verifies n nodes
    (``expected[b][0]`` = 1, a plain step); the width is
    n* = argmax_n sum_b expected[b][min(n, len - 1)] / cost(B, n + 1), ties to the smaller n,
    so 0 (no drafting for any row) unless drafting is estimated strictly faster than plain
    steps for the batch as a whole.

    Example: two rows, each expecting [1, 1.1] (a weak draft), on a curve where
    cost(4) = 1.6 * cost(2): 2.2 / 1.6 < 2 / 1, so the width is 0 (plain steps).
    """
    rows = len(expected)
    widest = max((len(e) - 1 for e in expected), default=0)
    if isinstance(cost, BatchCost):
        if not cost.known(rows):
            return 0  # time a plain step of this batch size first: the baseline every width is judged against
        step = cost.cost
        widest = min(widest, cost.widest(rows))  # explore one width wider than any timed at a time
    else:
        step = lambda b, q: cost.cost(b * q)  # noqa: E731
    best, best_rate = 0, sum(e[0] for e in expected) / step(rows, 1)
    for n in range(1, widest + 1):
        rate = sum(e[min(n, len(e) - 1)] for e in expected) / step(rows, n + 1)
        if rate > best_rate:
            best, best_rate = n, rate
    return best


def measured_speedup(committed: Sequence[int], verified: Sequence[int], curve: CostCurve) -> float:
    """Estimated speedup of speculative steps over plain steps on ``curve``.

    Args:
        committed: tokens committed per speculative step.
        verified: draft nodes verified per step (root excluded).

    Example: committed [2, 2], verified [3, 3] on a curve where cost(4) = 1.6 * cost(1)
    gives 2 / 1.6 = 1.25.
    """
    if not committed:
        return 1.0
    mean_committed = sum(committed) / len(committed)
    mean_nodes = sum(verified) / len(verified)
    lo, hi = int(mean_nodes), int(mean_nodes) + 1
    frac = mean_nodes - lo
    cost = (1 - frac) * curve.cost(lo + 1) + frac * curve.cost(hi + 1)
    return mean_committed * curve.cost(1) / cost


class AutoOff:
    """Per-request auto-off state (see :class:`AutoOffConfig`); ``reset()`` starts afresh."""

    def __init__(self, curve: CostCurve, config: AutoOffConfig = AutoOffConfig()):
        self.curve, self.config = curve, config
        self.reset()

    def reset(self) -> None:
        self.committed: list[int] = []
        self.verified: list[int] = []
        self.off_left = 0
        self.next_off = self.config.off_steps
        self.switches = 0  # times speculation was turned off

    @property
    def speculating(self) -> bool:
        """Whether the next step may draft."""
        return self.off_left == 0

    def observe(self, verified_nodes: int, committed: int) -> None:
        """Record one step (``verified_nodes`` = 0 for a plain step)."""
        if not self.speculating:
            self.off_left -= 1
            return
        if verified_nodes == 0:
            return
        self.committed.append(committed)
        self.verified.append(verified_nodes)
        if len(self.committed) < self.config.window:
            return
        speedup = measured_speedup(self.committed, self.verified, self.curve)
        self.committed, self.verified = [], []
        if speedup < self.config.min_speedup:
            self.off_left = self.next_off
            self.next_off = min(2 * self.next_off, self.config.max_off_steps)
            self.switches += 1
        else:
            self.next_off = self.config.off_steps


@dataclass
class BatchRequest:
    """One request for :class:`BatchedDecoder` (the arguments of :func:`hasten.generate`).

    Attributes:
        prompt: prompt token ids (>= 1).
        max_new_tokens: >= 1.
        method: None (plain steps), a method name, config or :class:`Drafter`.
        method_options: the method config's fields.
        params: sampling parameters.
        seed: sampling seed (None = random).
        eos_token_id: None = the model's; ``[]`` = never.
        stop: stop strings (need ``tokenizer``).
        tokenizer: for stop strings.
        draft_budget: "auto", a :class:`BudgetConfig` or None (as in :func:`hasten.generate`).
        auto_off: an :class:`AutoOffConfig`, or None to always draft.
        constraint: a :class:`TokenConstraint` (grammar), or None.
        streamer: called with each list of newly committed tokens.
    """

    prompt: list[int]
    max_new_tokens: int = 128
    method: Any = None
    method_options: dict[str, Any] = field(default_factory=dict)
    params: SamplingParams = field(default_factory=SamplingParams)
    seed: int | None = None
    eos_token_id: Any = None
    stop: Sequence[str] = ()
    tokenizer: Any = None
    draft_budget: Any = "auto"
    auto_off: AutoOffConfig | None = None
    constraint: TokenConstraint | None = None
    streamer: Callable[[list[int]], None] | None = None


def batchable(drafter: Drafter | None, params: SamplingParams) -> bool:
    """Whether a request with this drafter can join a batch (see the module docstring)."""
    if drafter is None:
        return True
    if getattr(drafter, "needs_torch_target", False):
        return False
    return params.greedy or not drafter.proposes_distributions


class BatchRow:
    """One request's state inside the batch: committed tokens, drafter, budget, auto-off,
    draws and stats. ``cached`` = KV slots of this row holding committed tokens
    (``len(tokens) - 1``: the root is not cached)."""

    def __init__(
        self,
        req: BatchRequest,
        drafter: Drafter | None,
        run: Committer,
        budget: DraftBudget | None,
        auto_off: AutoOff | None,
        draws: PositionDraws | None,
        generator: torch.Generator,
    ):
        self.req, self.drafter, self.run, self.budget = req, drafter, run, budget
        self.auto_off, self.draws, self.generator = auto_off, draws, generator
        self.stats = GenerationStats(
            method="ar" if drafter is None else stats_name(drafter), prompt_tokens=len(req.prompt)
        )
        self.cached = len(req.prompt) - 1
        self.draft = DraftTree.chain([])
        self.masks: torch.Tensor | None = None
        self.error: Exception | None = None  # a failure of this row's drafter or constraint
        self.t0 = time.perf_counter()

    @property
    def done(self) -> bool:
        return self.run.done or self.error is not None

    def finish(self) -> GenerationStats:
        """Fill the final counters and return the stats."""
        s = self.stats
        s.new_tokens = len(self.run.tokens) - len(self.req.prompt)
        s.finish_reason = self.run.finish_reason
        s.decode_seconds = time.perf_counter() - self.t0 - s.prefill_seconds
        if self.drafter is not None:
            s.drafter = dict(self.drafter.stats())
        if self.auto_off is not None:
            s.drafter["auto_off_switches"] = self.auto_off.switches
        return s


class BatchedDecoder:
    """Continuous batching of speculative (or plain) decoding with per-row acceptance.

    Args:
        model: a transformers causal LM with full attention in every layer.
        batch_budget: with several rows, cut every row's draft to the width that pays for
            itself for the whole padded batch (:func:`batch_width`); never changes output.

    Raises:
        ValueError: a model with sliding-window layers.
    """

    def __init__(self, model: torch.nn.Module, batch_budget: bool = True):
        if any(w is not None for w in kv.attention_windows(model)):
            raise ValueError(
                "batched decoding needs full attention in every layer; sliding-window models "
                "decode one request at a time (hasten.generate)"
            )
        self.model = model
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        self.cache_kw = kv.cache_kwarg(model)
        config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
        self.context_length = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
        self.vocab_size = model.get_output_embeddings().weight.shape[0]
        self.rows: list[BatchRow] = []
        # per layer (B, heads, capacity, head_dim) buffers, written in place; slots [0, L) are live
        self._kbuf: list[torch.Tensor] | None = None
        self._vbuf: list[torch.Tensor] | None = None
        self._length = 0
        self.forwards = 0
        self.batch_budget = batch_budget
        self._curve: CostCurve | None = None
        self._batch_cost: BatchCost | None = None
        self.batch_off = BatchOff()

    # ----- cost curve (shared by the budget and auto-off of every row) -----
    def cost_curve(self) -> CostCurve:
        if self._curve is None:
            self._curve = load_or_measure(self.model)
        return self._curve

    def batch_cost(self) -> BatchCost:
        """This decoder's timings of its batched forwards (:class:`BatchCost`), used by the width rule."""
        if self._batch_cost is None:
            self._batch_cost = BatchCost(self.cost_curve())
        return self._batch_cost

    @property
    def length(self) -> int:
        """L: cached slots (the longest row's cached tokens, after compaction)."""
        return self._length

    @property
    def keys(self) -> list[torch.Tensor] | None:
        """Per layer the live keys (B, heads, L, head_dim): a view of the in-place buffer
        (slots past a row's ``cached`` are padding), or None before anything is cached."""
        return None if self._kbuf is None else [k[:, :, : self._length] for k in self._kbuf]

    @property
    def values(self) -> list[torch.Tensor] | None:
        """Per layer the live values (B, heads, L, head_dim), as :attr:`keys`."""
        return None if self._vbuf is None else [v[:, :, : self._length] for v in self._vbuf]

    def _reserve(self, needed: int) -> None:
        """Grow the buffers (capacity doubles) so that ``needed`` slots fit; copies the live slots."""
        if self._kbuf is None or self._kbuf[0].shape[2] >= needed:
            return
        capacity = max(2 * self._kbuf[0].shape[2], needed)

        def grow(t: torch.Tensor) -> torch.Tensor:
            new = t.new_zeros((t.shape[0], t.shape[1], capacity, t.shape[3]))
            new[:, :, : self._length] = t[:, :, : self._length]
            return new

        self._kbuf = [grow(k) for k in self._kbuf]
        self._vbuf = [grow(v) for v in self._vbuf]

    # ----- requests join and leave -----
    def make_row(self, req: BatchRequest) -> BatchRow:
        """Validate ``req`` and build its row state (no forward yet).

        Raises:
            ValueError: empty prompt, prompt not shorter than the context, max_new_tokens < 1,
                stop strings without a tokenizer.
            NotBatchableError: a request that cannot be batched (see the module docstring).
            hasten.drafters.UnknownMethodError / TypeError: as :func:`hasten.generate`.
        """
        if not req.prompt:
            raise ValueError("empty prompt: give at least one token")
        if self.context_length is not None and len(req.prompt) >= self.context_length:
            raise ValueError(
                f"prompt has {len(req.prompt)} tokens but the model's context length is "
                f"{self.context_length}; shorten the prompt"
            )
        if req.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {req.max_new_tokens}")
        if req.stop and req.tokenizer is None:
            raise ValueError("stop strings need a tokenizer")
        drafter = None if req.method is None else build_drafter(req.method, **req.method_options)
        if not batchable(drafter, req.params):
            raise NotBatchableError(
                f"method {stats_name(drafter)!r} cannot join a batch (runs the target's layers or "
                "samples its drafts); use hasten.generate"
            )
        params = req.params
        generator = torch.Generator()
        seed = generator.seed() if req.seed is None else req.seed
        generator.manual_seed(seed)
        draws = None if params.greedy else PositionDraws(seed)
        run = Committer(
            list(req.prompt),
            req.max_new_tokens,
            self.context_length,
            model_eos_ids(self.model, req.eos_token_id),
            list(req.stop),
            req.tokenizer,
            req.streamer,
            self.vocab_size if params.uses_history else None,
            self.device,
        )
        budget_cfg = BudgetConfig() if req.draft_budget == "auto" else req.draft_budget
        budget = DraftBudget(self.cost_curve(), budget_cfg) if drafter is not None and budget_cfg else None
        auto = AutoOff(self.cost_curve(), req.auto_off) if drafter is not None and req.auto_off else None
        if drafter is not None:
            draft_generator = torch.Generator()
            draft_generator.manual_seed((seed + 0x5DEECE66D) % (1 << 64))
            drafter.begin(DraftRequest(list(req.prompt), self.model, params, draft_generator, self.vocab_size, None))
        return BatchRow(req, drafter, run, budget, auto, draws, generator)

    def add(self, row: BatchRow) -> None:
        """Prefill ``row``'s prompt but its last token (batch 1) and merge it into the batch."""
        prompt = row.req.prompt
        keys = values = None
        if len(prompt) > 1:
            cache = DynamicCache(config=self.model.config)
            ids = torch.tensor([prompt[:-1]], dtype=torch.long, device=self.device)
            with torch.inference_mode():
                self.model(input_ids=ids, **{self.cache_kw: cache}, use_cache=True, logits_to_keep=1)
            self.forwards += 1
            keys = [layer.keys for layer in cache.layers]
            values = [layer.values for layer in cache.layers]
        row.stats.forward_passes += 1 if len(prompt) > 1 else 0
        row.stats.prefill_seconds = time.perf_counter() - row.t0
        self._merge(keys, values)
        self.rows.append(row)

    def _merge(self, keys: list[torch.Tensor] | None, values: list[torch.Tensor] | None) -> None:
        """Append one row (its prefill's (1, heads, P, head_dim) keys/values, or None when it
        caches nothing) to the buffers: one copy of the live slots, at join time only."""
        if self._kbuf is None and keys is None:
            return
        b = len(self.rows)
        cached = 0 if keys is None else keys[0].shape[2]
        length = max(self._length, cached)
        template = self._kbuf if self._kbuf is not None else keys
        capacity = max(length + _HEADROOM, 0 if self._kbuf is None else self._kbuf[0].shape[2])

        def merged(old: torch.Tensor | None, new: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
            out = like.new_zeros((b + 1, like.shape[1], capacity, like.shape[3]))  # zeros: padding stays finite
            if old is not None:
                out[:b, :, : self._length] = old[:, :, : self._length]
            if new is not None:
                out[b, :, :cached] = new[0]
            return out

        old_k = self._kbuf or [None] * len(template)
        old_v = self._vbuf or [None] * len(template)
        new_k = keys or [None] * len(template)
        new_v = values or [None] * len(template)
        like_v = self._vbuf if self._vbuf is not None else values
        self._kbuf = [merged(o, n, t) for o, n, t in zip(old_k, new_k, template)]
        self._vbuf = [merged(o, n, t) for o, n, t in zip(old_v, new_v, like_v)]
        self._length = length

    def remove(self, row: BatchRow) -> None:
        """Drop ``row`` (finished or cancelled) and its KV slots."""
        index = self.rows.index(row)
        self.rows.pop(index)
        if self._kbuf is None:
            return
        keep = torch.tensor([i for i in range(len(self.rows) + 1) if i != index], dtype=torch.long, device=self.device)
        self._length = max((r.cached for r in self.rows), default=0)
        self._kbuf = [k.index_select(0, keep) for k in self._kbuf]
        self._vbuf = [v.index_select(0, keep) for v in self._vbuf]

    # ----- one step -----
    def _draft_or_fail(self, row: BatchRow, propose: bool = True) -> DraftTree:
        """The row's draft; a failing drafter or constraint fails only its own row
        (``row.error``), which then takes a plain step and is reported as finished."""
        if row.error is None:
            try:
                return self._draft(row, propose)
            except Exception as exc:  # noqa: BLE001  (isolate one request's failure from the batch)
                row.error = exc
        row.masks = None
        return DraftTree.chain([])

    def _draft(self, row: BatchRow, propose: bool = True) -> DraftTree:
        run = row.run
        max_depth = run.remaining - 1
        draft = None
        drafting = (
            propose
            and row.drafter is not None
            and max_depth >= 1
            and (row.auto_off is None or row.auto_off.speculating)
        )
        if drafting:
            draft = row.drafter.propose(run.tokens, max_depth)
            if draft is not None and len(draft):
                draft = draft.truncated(max_depth)
                if row.budget is not None:
                    draft = row.budget.cut(draft, max_depth)
        draft = draft if draft is not None and len(draft) else DraftTree.chain([])
        row.masks = None
        if row.req.constraint is not None:
            draft, row.masks = row.req.constraint.tree_masks(draft)
        return draft

    def _expected(self, row: BatchRow, draft: DraftTree) -> list[float]:
        """Expected committed tokens when the row verifies its first n nodes (n = 0..N): 1 plus
        the nodes' path acceptance probabilities, from the row's per-depth budget rates (0.5
        without a budget). The first n nodes are closed under parents (parents precede children)."""
        depths = tree_layout(draft.parents).depths[1:]
        reach: list[float] = []
        out = [1.0]
        for node, depth in enumerate(depths):
            parent = draft.parents[node]
            rate = row.budget.rate(depth) if row.budget is not None else 0.5
            reach.append(rate * (1.0 if parent < 0 else reach[parent]))
            out.append(out[-1] + reach[-1])
        return out

    def _cut_to_batch_width(self, drafts: list[DraftTree]) -> list[DraftTree]:
        """Cut every row's draft to the batch-optimal width (:func:`batch_width`); never changes output."""
        width = batch_width([self._expected(row, d) for row, d in zip(self.rows, drafts)], self.batch_cost())
        cut = []
        for row, draft in zip(self.rows, drafts):
            if len(draft) > width:
                draft = draft.subset(list(range(width))) if width else DraftTree.chain([])
                if row.masks is not None:
                    row.masks = row.masks[: width + 1]
            cut.append(draft)
        return cut

    def _inputs(self, drafts: list[DraftTree]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """input ids (B, Q), position ids (B, Q) and the additive mask (B, 1, Q, L + Q), or None when
        one row verifies a chain over a cache without holes (the model's causal mask is that mask)."""
        b, length = len(drafts), self.length
        q = max(len(d) for d in drafts) + 1
        ids = torch.zeros((b, q), dtype=torch.long)
        positions = torch.zeros((b, q), dtype=torch.long)
        visible = torch.zeros((b, q, length + q), dtype=torch.bool)
        for i, (row, draft) in enumerate(zip(self.rows, drafts)):
            n = len(draft) + 1
            layout = tree_layout(draft.parents)
            ids[i, :n] = torch.tensor([row.run.tokens[-1], *draft.tokens])
            positions[i, :n] = row.cached + torch.tensor(layout.depths)
            positions[i, n:] = row.cached
            visible[i, :, : row.cached] = True
            visible[i, :n, length : length + n] = layout.visible
            visible[i, n:, length + n :] = torch.eye(q - n, dtype=torch.bool)
        if b == 1 and drafts[0].is_chain and self.rows[0].cached == length:
            return ids.to(self.device), positions.to(self.device), None  # no holes: the causal mask, as generate()
        mask = torch.zeros(visible.shape, dtype=self.dtype).masked_fill(~visible, torch.finfo(self.dtype).min)
        return ids.to(self.device), positions.to(self.device), mask[:, None].to(self.device)

    def _forward(self, ids: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """One target forward; the Q new keys/values are written in place at slots [L, L + Q)."""
        cache = DynamicCache(config=self.model.config)
        if self._kbuf is not None:
            self._reserve(self._length + ids.shape[1])
            layers = []
            for k, v in zip(self._kbuf, self._vbuf):
                layer = kv.PreallocatedLayer()
                layer._keys_buffer, layer._values_buffer = k, v
                layer.capacity, layer.length = k.shape[2], self._length
                layer.device, layer.is_initialized = k.device, True
                layer._publish()
                layers.append(layer)
            cache.layers = layers
        with torch.inference_mode():
            logits = self.model(
                input_ids=ids, position_ids=positions, attention_mask=mask, **{self.cache_kw: cache}, use_cache=True
            ).logits
        self.forwards += 1
        if self._kbuf is None:  # nothing cached before this step: take the cache's tensors as buffers
            self._kbuf = [layer.keys.clone() for layer in cache.layers]
            self._vbuf = [layer.values.clone() for layer in cache.layers]
        else:
            self._kbuf = [layer._keys_buffer for layer in cache.layers]
            self._vbuf = [layer._values_buffer for layer in cache.layers]
        self._length += ids.shape[1]
        return logits

    def _accept(
        self, row: BatchRow, draft: DraftTree, logits: torch.Tensor
    ) -> tuple[list[int], int, list[int], torch.Tensor]:
        """Row ``row``'s acceptance on its (N+1, V) logits: exactly the engine's greedy /
        position-keyed rule (:func:`hasten.engine._verify`), on grammar-masked scores."""
        run, params = row.run, row.req.params
        layout = tree_layout(draft.parents, draft.tokens)
        seen = None
        if params.uses_history:
            path_tokens = torch.tensor(draft.tokens, dtype=torch.long, device=logits.device)
            seen = presence_rows(run.seen, path_tokens, layout.node_ancestors.to(logits.device))
        scores = process_logits(logits, params, seen)
        if row.masks is not None:
            scores = scores.masked_fill(~row.masks.to(scores.device), float("-inf"))
        draws = None if row.draws is None else row.draws([len(run.tokens) + d for d in layout.depths])
        row_tokens = choose_tokens(scores, params, row.generator, draws).tolist()
        path, nxt = walk_tree(layout.children, row_tokens)
        return path, nxt, row_tokens, scores

    def step(self) -> list[BatchRow]:
        """One batched verification step for every row; returns the rows that finished
        (still in the batch: call :meth:`remove`)."""
        if not self.rows:
            return []
        batched = len(self.rows) > 1 and self.batch_budget
        propose = not batched or self.batch_off.speculating
        drafts = [self._draft_or_fail(row, propose) for row in self.rows]
        if batched:
            proposed = any(len(d) for d in drafts)
            drafts = self._cut_to_batch_width(drafts)
            if propose:
                self.batch_off.observe(proposed, any(len(d) for d in drafts))
            else:
                self.batch_off.observe(False, False)
        ids, positions, mask = self._inputs(drafts)
        start = time.perf_counter()
        logits = self._forward(ids, positions, mask)
        seconds = time.perf_counter() - start
        if len(self.rows) > 1 and self.batch_budget:
            self.batch_cost().observe(ids.shape[0], ids.shape[1], seconds)
        length = self.length - ids.shape[1]
        moves: list[tuple[int, int, int]] = []
        for i, (row, draft) in enumerate(zip(self.rows, drafts)):
            path, nxt, row_tokens, scores = self._accept(row, draft, logits[i, : len(draft) + 1])
            kept = [0] + [node + 1 for node in path]  # verification rows this row keeps: root, accepted nodes
            moves.extend((i, length + r, row.cached + j) for j, r in enumerate(kept))
            self._finish_step(row, draft, path, nxt, row_tokens, scores, seconds)
        self._compact(moves)
        return [row for row in self.rows if row.done]

    def _finish_step(
        self,
        row: BatchRow,
        draft: DraftTree,
        path: list[int],
        nxt: int,
        row_tokens: list[int],
        scores: torch.Tensor,
        seconds: float,
    ) -> None:
        if row.budget is not None and len(draft):
            row.budget.observe_step(draft, path)
        root_position = len(row.run.tokens) - 1
        new = [draft.tokens[node] for node in path] + [nxt]
        kept = row.run.commit(new)
        if row.req.constraint is not None and row.error is None and not row.run.done:
            try:
                row.req.constraint.accept(new[:kept])
            except Exception as exc:  # noqa: BLE001  (see _draft_or_fail)
                row.error = exc
        row.cached += 1 + len(path)
        s = row.stats
        s.drafted.append(len(draft))
        s.accepted.append(min(len(path), kept))
        s.committed.append(kept)
        s.forward_passes += 1
        s.forward_seconds += seconds
        if row.auto_off is not None:
            row.auto_off.observe(len(draft), kept)
        if (
            row.error is None
            and row.drafter is not None
            and (len(draft) or getattr(row.drafter, "observes_plain_steps", False))
        ):
            try:
                row.drafter.on_accept(VerifiedStep(row.run.tokens, draft, path, nxt, row_tokens, scores, root_position))
            except Exception as exc:  # noqa: BLE001  (see _draft_or_fail)
                row.error = exc

    def _compact(self, moves: list[tuple[int, int, int]]) -> None:
        """Per-row KV compaction, in place: each ``(row, source, target)`` copies one slot of
        this step's verification rows down to the end of that row's committed tokens (the
        row's older slots do not move, so a step copies O(B * accepted) slots, not the cache).
        L becomes the longest row's cached length; slots past a row's length are padding."""
        moves = [m for m in moves if m[1] != m[2]]
        if moves:
            rows, source, target = (torch.tensor(col, dtype=torch.long, device=self.device) for col in zip(*moves))
            for k, v in zip(self._kbuf, self._vbuf):
                k[rows, :, target] = k[rows, :, source]  # the right side is gathered before the write
                v[rows, :, target] = v[rows, :, source]
        self._length = max(row.cached for row in self.rows)
