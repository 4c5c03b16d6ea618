"""Benchmark: drafting cost per step on a long prompt (no target model runs).

    PYTHONPATH=src python benchmarks/drafting_cost.py               # 6,000-token prompt
    PYTHONPATH=src python benchmarks/drafting_cost.py --context 500 6000 12000

The prompt is SmolLM2's tokenization of Spec-Bench questions (``--dataset``) repeated
until it is ``--context`` tokens long; decoding is simulated by committing the next 1-3
tokens of a passage copied from the middle of the prompt (so suffix matches exist) after
each step. Each drafter's ``propose(tokens, 8)`` is timed per step (median and mean over
``--steps`` steps, microseconds), interleaved step by step so machine drift hits all
alike:

- ``suffix (before)``: the registered suffix drafter as it was before the composite change
  (its continuation copied everything after each matched occurrence: O(context) per step);
- ``suffix``: the registered suffix drafter now (n-gram index + backward extension, the
  continuation sliced to the draft depth);
- ``composite[sam]``: the composite drafter with only the suffix-automaton source (exact
  longest match; amortized O(1) per token) and its merge + calibration;
- ``sam automaton``: the automaton alone (extend + match + continuation).

Timings on a shared machine are noisy: compare the columns of one run.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

from hasten.drafters import DraftRequest, build_drafter
from hasten.sam import SuffixAutomaton
from hasten.sampling import SamplingParams


def _corpus_tokens(dataset: Path) -> list[int]:
    import hasten

    _, tokenizer = hasten.load_model("smollm2-135m")
    text = "\n".join(t for line in dataset.read_text().splitlines() for t in json.loads(line)["turns"])
    return tokenizer(text)["input_ids"]


def _request(prompt: list[int]) -> DraftRequest:
    import torch

    return DraftRequest(prompt, None, SamplingParams(), torch.Generator(), 49152)


def _copying_continuation(tokens: list[int], match_end: int, length: int) -> list[int]:
    """``hasten.ngram.continuation`` before the composite change (copies the whole tail)."""
    extended = list(tokens[match_end + 1 :])
    period = len(extended)
    out = extended[:length]
    while len(out) < length:
        out.append(out[len(out) - period])
    return out


class _SuffixBefore:
    """The suffix drafter with the old copying continuation."""

    def __init__(self):
        self.inner = build_drafter("suffix")

    def begin(self, request) -> None:
        self.inner.begin(request)

    def propose(self, tokens, max_depth):
        from hasten.drafters import suffix

        saved, suffix.continuation = suffix.continuation, _copying_continuation
        try:
            return self.inner.propose(tokens, max_depth)
        finally:
            suffix.continuation = saved


class _SamOnly:
    """The automaton alone, as a drafter-shaped object."""

    def begin(self, request) -> None:
        self.sam, self.fed = SuffixAutomaton(), 0

    def propose(self, tokens, max_depth):
        self.sam.extend_all(tokens[self.fed :])
        self.fed = len(tokens)
        return [self.sam.continuation(end, max_depth) for end in self.sam.match_ends()]


def run(context: int, steps: int, corpus: list[int]) -> dict[str, tuple[float, float]]:
    rng = random.Random(context)
    prompt = (corpus * (context // len(corpus) + 1))[:context]
    start = rng.randrange(context // 4, context // 2)
    passage = prompt[start : start + 4 * steps]
    drafters = {
        "suffix (before)": _SuffixBefore(),
        "suffix": build_drafter("suffix"),
        "composite[sam]": build_drafter("composite", sources="sam", pool=None, calibration_cache=None),
        "sam automaton": _SamOnly(),
    }
    tokens = {name: list(prompt) for name in drafters}
    for name, drafter in drafters.items():
        drafter.begin(_request(prompt))
        drafter.propose(tokens[name], 8)  # the first call indexes the prompt: not a step
    times: dict[str, list[float]] = {name: [] for name in drafters}
    pos = 0
    for _ in range(steps):
        commit = passage[pos : pos + rng.randint(1, 3)] or [rng.randrange(49152)]
        pos += len(commit)
        for name, drafter in drafters.items():
            tokens[name].extend(commit)
            t0 = time.perf_counter()
            drafter.propose(tokens[name], 8)
            times[name].append((time.perf_counter() - t0) * 1e6)
    return {name: (statistics.median(t), statistics.fmean(t)) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--context", type=int, nargs="+", default=[6000])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--dataset", type=Path, default=Path("../shared/data/spec_bench/question_dev.jsonl"))
    args = parser.parse_args()
    corpus = _corpus_tokens(args.dataset)
    print(f"{'context':>8} {'drafter':>16} {'median us/step':>15} {'mean us/step':>13}")
    for context in args.context:
        for name, (median, mean) in run(context, args.steps, corpus).items():
            print(f"{context:>8} {name:>16} {median:>15.1f} {mean:>13.1f}")


if __name__ == "__main__":
    main()
