"""Benchmark: what a decoding step costs when speculation is idle (nothing is verified).

    PYTHONPATH=src python benchmarks/idle_overhead.py               # SmolLM2-135M fp32, 1 thread
    PYTHONPATH=src python benchmarks/idle_overhead.py --rounds 5 --new-tokens 64

A step with no candidates should cost what a plain decoding step costs. For every
registered method (``draft_model`` aside: it always drafts), the drafter runs inside a
wrapper that lets it do all its per-step work (``propose``, and ``on_accept`` when it
observes plain steps) but hands the engine no draft, so every step is a plain step of the
speculative loop. ``layer_skip`` and ``early_exit`` also run unwrapped with their
defaults after a warm-up request (their skip-set cache then holds the search, and on
SmolLM2 they decide not to draft): their own idle steps.

Columns (one chat prompt, greedy, ``--new-tokens`` tokens, eos ignored; the contenders run
interleaved ``--rounds`` times; medians):

- ``ms/step``: decode wall time per step;
- ``vs plain``: that minus the plain loop's (``method=None``) ms/step;
- ``drafter ms/step``: time inside the drafter's ``propose`` + ``on_accept`` per step,
  measured directly (the least noisy column);
- ``drafted``: share of steps that verified a draft (0 for the wrapped runs).

``null`` is a drafter that does nothing: the speculative loop's own overhead.
Figures from a machine shared with other jobs are noisy; compare columns of one run.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

import hasten
from hasten.drafters import Drafter, build_drafter, get_method, list_methods


class Idle(Drafter):
    """Runs ``inner``'s per-step work but proposes nothing; times it."""

    def __init__(self, inner: Drafter | None, propose_nothing: bool = True):
        self.inner, self.propose_nothing = inner, propose_nothing
        self.name = "null" if inner is None else inner.name
        self.observes_plain_steps = inner is not None and inner.observes_plain_steps
        self.needs_torch_target = inner is not None and inner.needs_torch_target
        self.proposes_distributions = inner is not None and inner.proposes_distributions
        self.seconds = 0.0

    def begin(self, request) -> None:
        super().begin(request)
        if self.inner is not None:
            self.inner.begin(request)
        self.seconds = 0.0

    def propose(self, tokens, max_depth):
        if self.inner is None:
            return None
        t0 = time.perf_counter()
        draft = self.inner.propose(tokens, max_depth)
        self.seconds += time.perf_counter() - t0
        return None if self.propose_nothing else draft

    def on_accept(self, step) -> None:
        if self.inner is not None:
            t0 = time.perf_counter()
            self.inner.on_accept(step)
            self.seconds += time.perf_counter() - t0


def contenders(skip_cache: Path) -> dict[str, object]:
    out: dict[str, object] = {"plain": None, "null": lambda: Idle(None)}
    for name in list_methods():
        if get_method(name).needs_draft_model:
            continue
        options = {"skip_cache": str(skip_cache)} if get_method(name).uses_skip_cache else {}
        if name == "composite":
            options["calibration_cache"] = None
        out[f"{name} (wrapped)"] = lambda n=name, o=options: Idle(build_drafter(n, **o))
        if get_method(name).uses_skip_cache:
            out[f"{name} (own idle)"] = lambda n=name, o=options: Idle(build_drafter(n, **o), propose_nothing=False)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, tokenizer = hasten.load_model(args.model)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Write a short story about a lighthouse keeper who finds a map."}],
        add_generation_prompt=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        makers = contenders(Path(tmp) / "skip_sets.json")
        runs = {name: [] for name in makers}
        for make in makers.values():  # warm-up: caches, cost curve, skip-set search
            hasten.generate(model, prompt, method=None if make is None else make(), max_new_tokens=args.new_tokens)
        for _ in range(args.rounds):
            for name, make in makers.items():
                drafter = None if make is None else make()
                result = hasten.generate(model, prompt, method=drafter, max_new_tokens=args.new_tokens, eos_token_id=[])
                steps = len(result.stats.committed)
                inner = 0.0 if drafter is None else drafter.seconds
                drafted = sum(1 for d in result.stats.drafted if d) / steps
                runs[name].append((result.stats.decode_seconds / steps, inner / steps, drafted))
    plain = statistics.median(r[0] for r in runs["plain"])
    print(f"{'contender':>28} {'ms/step':>8} {'vs plain':>9} {'drafter ms/step':>16} {'drafted':>8}")
    for name, rows in runs.items():
        step = statistics.median(r[0] for r in rows)
        inner = statistics.median(r[1] for r in rows)
        drafted = statistics.median(r[2] for r in rows)
        print(f"{name:>28} {step * 1e3:>8.2f} {(step - plain) * 1e3:>+9.2f} {inner * 1e3:>16.3f} {drafted:>8.0%}")


if __name__ == "__main__":
    main()
