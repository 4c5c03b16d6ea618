"""The llama.cpp backend's bookkeeping (sequence ids per tree leaf, compaction, refeed) on a
simulated llama.cpp memory, so it is tested in CI without llama-cpp-python.

``SimulatedLlama`` keeps llama.cpp's KV-cell semantics as its documentation and source
state them: a decode puts each batch token in the first free cell, tagged with all its
sequence ids; a token attends to the cells carrying its *first* sequence id at positions
not after its own; ``seq_rm`` / ``seq_cp`` remove / add one id on cells in a position
range; a batch whose sequence does not continue at that sequence's last cached position +
1 is refused. Logits come from a float64 tiny Llama run on the token's visible context,
and every visible cell must have been computed on a prefix of that same context (so a
cell left on a wrong branch, a hole, or a duplicated position fails loudly). Cell order
is checked too: the committed cells must stay in position order (the invariant the real
backend keeps because llama.cpp's attention sums cells in index order).
"""

from __future__ import annotations

import pytest
import torch
from conftest import VOCAB

import hasten
from hasten.backends.llamacpp import LlamaCppCache, LlamaCppTarget
from hasten.tree import DraftTree


class SimulatedLlama:
    backend = "llama.cpp (simulated)"

    def __init__(self, model: torch.nn.Module, context_length: int = 96, max_sequences: int = 8, batch_size: int = 16):
        self.torch_model = model
        self.context_length, self.max_sequences, self.batch_size = context_length, max_sequences, batch_size
        self.vocab_size = VOCAB
        self.eos_token_ids = {2}
        self.cells: list[dict | None] = [None] * context_length
        self._live = 0
        self.decodes = 0

    def engine_target(self) -> LlamaCppTarget:
        return LlamaCppTarget(self)

    def new_cache(self) -> LlamaCppCache:
        self.cells = [None] * self.context_length
        self._live += 1
        return LlamaCppCache(generation=self._live)

    def _seq_max(self, seq: int) -> int:
        return max((c["pos"] for c in self.cells if c is not None and seq in c["seqs"]), default=-1)

    def decode(self, tokens, positions, seqs, outputs) -> torch.Tensor:
        assert len(tokens) <= self.batch_size
        self.decodes += 1
        for s in {s for ids in seqs for s in ids}:  # llama.cpp's consecutive-position rule
            first = min(p for p, ids in zip(positions, seqs) if s in ids)
            last = self._seq_max(s)
            assert last < 0 or first == last + 1, f"sequence {s} continues at {first}, cached up to {last}"
        rows = []
        for token, pos, ids, out in zip(tokens, positions, seqs, outputs):
            visible = sorted(
                (c for c in self.cells if c is not None and ids[0] in c["seqs"] and c["pos"] <= pos),
                key=lambda c: c["pos"],
            )
            context = [c["token"] for c in visible] + [token]
            assert [c["pos"] for c in visible] == list(range(pos)), (
                f"token at {pos} sees positions {[c['pos'] for c in visible]}"
            )
            for c in visible:  # each visible cell was computed on a prefix of this context
                assert c["context"] == context[: c["pos"] + 1]
            free = self.cells.index(None)
            self.cells[free] = {"token": token, "pos": pos, "seqs": set(ids), "context": context}
            if out:
                with torch.inference_mode():
                    rows.append(self.torch_model(input_ids=torch.tensor([context])).logits[0, -1].float())
        return torch.stack(rows) if rows else torch.empty(0, self.vocab_size)

    def seq_rm(self, seq: int, start: int, end: int = -1) -> None:
        start = 0 if start < 0 else start
        end = float("inf") if end < 0 else end
        for i, c in enumerate(self.cells):
            if c is not None and seq in c["seqs"] and start <= c["pos"] < end:
                c["seqs"].discard(seq)
                if not c["seqs"]:
                    self.cells[i] = None

    def seq_cp(self, src: int, dst: int) -> None:
        for c in self.cells:
            if c is not None and src in c["seqs"]:
                c["seqs"].add(dst)

    def committed_in_order(self, cache: LlamaCppCache) -> bool:
        cells = [c for c in self.cells if c is not None and cache.seq in c["seqs"]]
        return [c["pos"] for c in cells] == list(range(len(cells)))


PROMPTS = [[5, 6, 7, 8, 9, 5, 6, 7, 8, 9, 5, 6], [3, 4, 3, 4, 3, 4, 10, 11, 3, 4], [20, 21, 22, 23, 20, 21, 22]]


@pytest.fixture(scope="module")
def simulated(tiny_factory):
    return SimulatedLlama(tiny_factory("llama"))


def _plain(sim, prompt, n):
    return hasten.generate(sim, prompt, max_new_tokens=n, eos_token_id=[]).sequences[0].tolist()


@pytest.mark.parametrize("method", ["prompt_lookup", "trie", "jacobi", "suffix", "recycling", "composite"])
def test_model_free_drafters_equal_plain_decoding(simulated, method):
    for prompt in PROMPTS:
        plain = _plain(simulated, prompt, 40)
        out = hasten.generate(simulated, prompt, method=method, max_new_tokens=40, eos_token_id=[], draft_budget=None)
        assert out.sequences[0].tolist() == plain
    assert sum(out.stats.drafted) > 0


def test_a_literal_tree_then_a_second_branch_is_compacted_and_refed(simulated):
    """root -> {a -> c, b -> e}: keeping root, b, e (the second branch) keeps only the root
    in place and re-feeds b, e in front of the next decode; cells stay in position order."""
    prompt = PROMPTS[0]
    target, cache, start = _prefilled(simulated, prompt)
    a, b, c, e = 30, 31, 32, 33
    rows = target.verify_forward(cache, prompt[-1], DraftTree((a, b, c, e), (-1, -1, 0, 1)))
    refs = [_last_logits(simulated, prompt + path) for path in ([], [a], [b], [a, c], [b, e])]
    for row, ref in enumerate(refs):
        assert torch.equal(rows[row], ref)
    target.keep_rows(cache, start, [0, 2, 4])
    assert cache.refeed == [b, e] and target.cache_length(cache) == start + 3
    assert simulated.committed_in_order(cache)
    nxt = target.forward(cache, [40], last_only=True)[0]
    assert torch.equal(nxt, _last_logits(simulated, prompt + [b, e, 40]))
    assert simulated.committed_in_order(cache) and not cache.refeed


def test_first_branch_accepted_stays_in_place(simulated):
    prompt = PROMPTS[1]
    target, cache, start = _prefilled(simulated, prompt)
    target.verify_forward(cache, prompt[-1], DraftTree((30, 31, 32), (-1, -1, 0)))  # first path: 30 -> 32
    target.keep_rows(cache, start, [0, 1, 3])
    assert cache.refeed == [] and cache.cached == start + 3 and simulated.committed_in_order(cache)
    decodes = simulated.decodes
    target.rollback(cache, start + 2)  # the engine may roll back a committed tail
    assert target.cache_length(cache) == start + 2 and simulated.decodes == decodes
    nxt = target.forward(cache, [41], last_only=True)[0]
    assert torch.equal(nxt, _last_logits(simulated, prompt + [30, 41]))


def test_rollback_inside_the_refeed_drops_only_refeed_tokens(simulated):
    prompt = PROMPTS[2]
    target, cache, start = _prefilled(simulated, prompt)
    target.verify_forward(cache, prompt[-1], DraftTree((30, 31, 32, 33), (-1, -1, 1, 2)))  # 30 | 31 -> 32 -> 33
    target.keep_rows(cache, start, [0, 2, 3, 4])
    assert cache.refeed == [31, 32, 33]
    target.rollback(cache, start + 2)
    assert cache.refeed == [31] and target.cache_length(cache) == start + 2
    nxt = target.forward(cache, [50], last_only=True)[0]
    assert torch.equal(nxt, _last_logits(simulated, prompt + [31, 50]))


def _prefilled(sim, prompt):
    """(target, cache, start) with all of ``prompt`` but its last token cached, as the
    speculative loop leaves it before its first verification."""
    target = sim.engine_target()
    cache = target.new_cache()
    target.forward(cache, prompt[:-1], last_only=True)
    return target, cache, target.cache_length(cache)


def _last_logits(sim, tokens):
    with torch.inference_mode():
        return sim.torch_model(input_ids=torch.tensor([tokens])).logits[0, -1].float()
