"""The pure core of AR image sampling: CFG rows by role, target probabilities, Jacobi draft
initialisation and the relaxed acceptance rules. Functions on tensors, no model inside.

Dims: R model rows (one image's CFG roles), K drafted tokens, V vocabulary (codebook size),
D codebook embedding width, L image tokens.

Glossary: *draft* = a token guessed for a position after the accepted prefix, with the
*draft distribution* (draft_probs row) it was drawn from; *target* distribution = the
model's processed (guided, temperature, top-k/top-p) distribution at that position given
the tokens before it in the current window; *accepted* drafts are committed, the first
rejection is replaced by a *recovered* token drawn from norm(max(0, target - draft)), and
when every draft is accepted a *bonus* token is drawn from the next target row.
Exact acceptance min(1, target/draft) is :func:`hasten.verify.speculative_sample_accept`
(the LLM side's rule, reused as is); :func:`relaxed_speculative_accept` is the same rule
with the ratio's numerator and denominator replaced by group masses (GSD, LANTERN).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..sampling import SamplingParams, process_logits

__all__ = [
    "COND",
    "UNCOND",
    "CFGRows",
    "DecodeSettings",
    "relaxed_speculative_accept",
    "lantern_accept_mass",
    "gsd_accept_mass",
    "neighbour_order",
]

COND, UNCOND = "cond", "uncond"


@dataclass(frozen=True)
class CFGRows:
    """Which model row plays which classifier-free-guidance role, by name not position.

    Attributes:
        roles: one entry per model row, each ``"cond"`` or ``"uncond"``; ``("cond",)``
            when guidance is off. ``("cond", "uncond")`` and ``("uncond", "cond")`` give
            the same images (the guided logits read rows by role).

    Raises:
        ValueError: an unknown role, a repeated role, or no ``"cond"`` row.
    """

    roles: tuple[str, ...] = (COND, UNCOND)

    def __post_init__(self) -> None:
        if set(self.roles) - {COND, UNCOND} or len(set(self.roles)) != len(self.roles) or COND not in self.roles:
            raise ValueError(f"roles must be 'cond' plus optionally 'uncond', each once; got {self.roles}")

    @property
    def guided(self) -> bool:
        return UNCOND in self.roles

    def class_ids(self, label: int, null_class: int) -> torch.Tensor:
        """(R,) int64: ``label`` on the cond row, ``null_class`` on the uncond row."""
        return torch.tensor([label if role == COND else null_class for role in self.roles], dtype=torch.int64)

    def combine(self, outputs: torch.Tensor, scale: float) -> torch.Tensor:
        """Guided output ``uncond + scale * (cond - uncond)`` (cond alone when unguided).

        Args:
            outputs: (R, ...) model outputs (logits (R, T, V) or noise predictions).
            scale: CFG scale w (1 = cond).

        Returns:
            outputs[0].shape tensor.

        Example: roles ("uncond", "cond"), outputs [[0.], [2.]], scale 3 -> [6.].
        """
        cond = outputs[self.roles.index(COND)]
        if not self.guided:
            return cond
        uncond = outputs[self.roles.index(UNCOND)]
        return uncond + scale * (cond - uncond)


@dataclass(frozen=True)
class DecodeSettings:
    """How a token is chosen: CFG on logits (LlamaGen style), then temperature, top-k, top-p
    through :func:`hasten.sampling.process_logits` (the LLM side's one logits function).

    Attributes:
        cfg_scale: >= 1; 1 = no guidance (only the cond row is run). Higher = images that
            match the class more, less diverse.
        temperature: > 0. top_k: 0 = off. top_p: in (0, 1], 1 = off.
        roles: the CFG row layout (see :class:`CFGRows`).

    Raises:
        ValueError: a field out of range.
    """

    cfg_scale: float = 3.0
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    roles: tuple[str, ...] = (COND, UNCOND)

    def __post_init__(self) -> None:
        if not self.cfg_scale >= 1:
            raise ValueError(f"cfg_scale must be >= 1 (1 = no guidance), got {self.cfg_scale}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0 (AR image models sample), got {self.temperature}")
        _ = self.params  # validates top_k / top_p

    @property
    def params(self) -> SamplingParams:
        return SamplingParams(do_sample=True, temperature=self.temperature, top_k=self.top_k, top_p=self.top_p)

    @property
    def rows(self) -> CFGRows:
        return CFGRows(self.roles if self.cfg_scale != 1 else (COND,))

    def target_probs(self, logits: torch.Tensor) -> torch.Tensor:
        """(R, T, V) float logits -> (T, V) float64 processed target probabilities."""
        guided = self.rows.combine(logits.double(), self.cfg_scale)
        return process_logits(guided, self.params).softmax(dim=-1)


def neighbour_order(codebook: torch.Tensor) -> torch.Tensor:
    """(V, D) codebook embeddings -> (V, V) int64: row x lists every token by distance to x
    (x itself first; ties by token id)."""
    dist = torch.cdist(codebook.double(), codebook.double())
    dist = dist + torch.arange(codebook.shape[0], dtype=torch.float64) * 1e-12  # stable tie break
    dist.fill_diagonal_(-1.0)
    return dist.argsort(dim=1, stable=True)


def lantern_accept_mass(
    draft_tokens: torch.Tensor, target_probs: torch.Tensor, order: torch.Tensor, k: int, delta: float
) -> torch.Tensor:
    """LANTERN's relaxed target mass of each draft (Jang et al., "LANTERN: Accelerating Visual
    Autoregressive Models with Relaxed Speculative Decoding", arXiv 2410.03355).

    The draft token x takes over the target mass of its nearest codebook neighbours (at most
    ``k``, nearest first) while the mass moved stays <= ``delta`` (the total-variation
    distance between the target and the relaxed target).

    Args:
        draft_tokens: (K,) int64. target_probs: (>= K, V) float64 (row i scores draft i).
        order: (V, V) from :func:`neighbour_order`. k: neighbours considered (>= 0).
        delta: TVD bound in [0, 1]; 0 = exact (returns target_probs[i, x_i]).

    Returns:
        (K,) float64 relaxed target mass of each draft.

    Example: target row [0.1, 0.5, 0.4], draft 0, neighbours by distance [1, 2], k 2:
    delta 0.45 -> 0.1 (the nearest neighbour's 0.5 already exceeds delta); delta 0.5 -> 0.6.
    """
    rows = torch.arange(draft_tokens.numel())
    own = target_probs[rows, draft_tokens]
    if k == 0 or delta == 0 or draft_tokens.numel() == 0:
        return own
    neighbours = order[draft_tokens, 1 : k + 1]  # (K, k)
    mass = target_probs[rows.unsqueeze(1), neighbours]
    moved = mass.cumsum(dim=1)
    return own + (moved * (moved <= delta)).amax(dim=1).clamp_min(0)


def gsd_accept_mass(
    draft_tokens: torch.Tensor,
    draft_probs: torch.Tensor,
    target_probs: torch.Tensor,
    order: torch.Tensor,
    group_size: int,
    neighbours: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Grouped Speculative Decoding's group masses (So et al., "Grouped Speculative Decoding
    for Autoregressive Image Generation", arXiv 2508.07747).

    The group G(x) of a draft x is x plus those of its ``neighbours`` nearest codebook
    entries that are among the target's ``group_size`` highest-ranked tokens at that
    position (dynamic: it depends on the row's target ranking); the draft is accepted with
    min(1, sum_G target / sum_G draft).

    Args:
        draft_tokens: (K,) int64. draft_probs: (K, V) float64. target_probs: (>= K, V) float64.
        order: (V, V) from :func:`neighbour_order`. group_size: top-ranked target tokens a
            group may contain (0 = exact). neighbours: embedding neighbours considered.

    Returns:
        (numerator (K,), denominator (K,)) float64: sum_G target and sum_G draft.

    Example: target [0.25, 0.35, 0.4], draft [1, 0, 0], x = 0, neighbour 1 in the top 2
    -> (0.6, 1.0), accepted with probability 0.6 instead of 0.25.
    """
    rows = torch.arange(draft_tokens.numel())
    num, den = target_probs[rows, draft_tokens], draft_probs[rows, draft_tokens]
    if group_size == 0 or neighbours == 0 or draft_tokens.numel() == 0:
        return num, den
    top = target_probs[: draft_tokens.numel()].topk(min(group_size, target_probs.shape[1]), dim=1).indices
    in_top = torch.zeros_like(target_probs[: draft_tokens.numel()], dtype=torch.bool).scatter_(1, top, True)
    near = order[draft_tokens, 1 : neighbours + 1]  # (K, m)
    member = in_top[rows.unsqueeze(1), near] & (target_probs[rows.unsqueeze(1), near] > 0)
    extra_target = (target_probs[rows.unsqueeze(1), near] * member).sum(dim=1)
    extra_draft = (draft_probs[rows.unsqueeze(1), near] * member).sum(dim=1)
    return num + extra_target, den + extra_draft


def relaxed_speculative_accept(
    draft_tokens: torch.Tensor,
    draft_probs: torch.Tensor,
    target_probs: torch.Tensor,
    accept_num: torch.Tensor,
    accept_den: torch.Tensor,
    generator: torch.Generator | None,
) -> tuple[list[int], int]:
    """Speculative sampling with a relaxed acceptance ratio ``accept_num / accept_den``.

    Draft i is accepted with probability min(1, accept_num[i] / accept_den[i]), left to
    right; the first rejection is replaced by a token from norm(max(0, target - draft))
    at its row; when all are accepted the bonus token is drawn from ``target_probs[K]``.
    With ``accept_num = target_probs[i, x_i]`` and ``accept_den = draft_probs[i, x_i]``
    this is :func:`hasten.verify.speculative_sample_accept` draw for draw (same random
    numbers consumed in the same order, so the same tokens for the same generator state).

    Args:
        draft_tokens: (K,) int64. draft_probs: (K, V) float. target_probs: (K+1, V) float.
        accept_num, accept_den: (K,) float64. generator: RNG.

    Returns:
        (accepted node indices ``[0 .. a-1]``, next token).
    """
    k = draft_tokens.numel()
    uniform = torch.rand(k, generator=generator, dtype=torch.float64)
    rejected = uniform * accept_den.double() > accept_num.double()
    if not bool(rejected.any()):
        nxt = torch.multinomial(target_probs[k].double(), 1, generator=generator)
        return list(range(k)), int(nxt)
    first = int(rejected.nonzero()[0])
    residual = (target_probs[first].double() - draft_probs[first].double()).clamp_min(0)
    if not float(residual.sum()) > 0:
        residual = target_probs[first].double()
    nxt = torch.multinomial(residual / residual.sum(), 1, generator=generator)
    return list(range(first)), int(nxt)
