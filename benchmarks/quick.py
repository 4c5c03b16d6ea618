"""Benchmark: hasten vs transformers on SmolLM2-135M (fp32, CPU), a quick preset of `hasten bench`.

    python benchmarks/quick.py                      # prints a table (a few minutes on 2 cores)
    python benchmarks/quick.py --dataset PATH/question.jsonl --out results/quick

Questions: 12 Spec-Bench prompts (the first 2 of each subtask: mt_bench, translation,
summarization, qa, math_reasoning, rag; first turn only) + the first 4 HumanEval problems.
128 new tokens, greedy, batch size 1. Methods, interleaved per question in one run so
machine drift hits all alike: ``ar`` (hasten plain decoding, the baseline),
``prompt_lookup`` (hasten), ``hf_greedy`` (transformers ``generate``) and
``hf_prompt_lookup`` (transformers ``prompt_lookup_num_tokens=10``).

Columns: tok/s (generated token ids / wall seconds, prefill included), speedup vs ``ar``,
oracle (what an always-right drafter reaches on this machine), tau (mean accepted tokens:
tokens per verification step), fwd/tok (target forwards per token), exact vs ar and
= hf_greedy (share of prompts whose token ids are identical to plain decoding's and to
transformers greedy's). The run folder keeps raw records, report.md and plots; see
docs/BENCH.md.

The Spec-Bench questions are read from ``../shared/data/spec_bench/question_dev.jsonl``
(relative to the repository root) unless ``--dataset`` says otherwise; hasten ships no copy.
"""

from __future__ import annotations

import argparse
import datetime
import shlex
import sys
from pathlib import Path

import torch

from hasten.bench.peers import Request
from hasten.bench.plan import BenchPlan, execute
from hasten.bench.records import RECORDS_FILE, read_meta, read_records
from hasten.bench.report import text_table
from hasten.bench.runner import BenchSettings

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATASET = REPO.parent / "shared" / "data" / "spec_bench" / "question_dev.jsonl"
METHODS = ("ar", "prompt_lookup", "hf_greedy", "hf_prompt_lookup")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET, help="Spec-Bench question.jsonl")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--per-subtask", type=int, default=2, help="Spec-Bench questions per subtask")
    parser.add_argument("--humaneval", type=int, default=4, help="HumanEval problems")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--fresh-cost", action="store_true", help="measure the forward-cost curve (oracle) now")
    parser.add_argument("--out", type=Path, default=None, help="run folder (default results/quick-<time>)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    plan = BenchPlan(
        out=args.out or REPO / "results" / f"quick-{stamp}",
        model=args.model,
        methods=METHODS,
        datasets=(f"spec_bench:{args.dataset}", f"humaneval:{args.humaneval}"),
        per_subtask=args.per_subtask,
        prompt_lookup_tokens=10,
        fresh_cost=args.fresh_cost,
        settings=BenchSettings(max_new_tokens=args.max_new_tokens, runs=1, warmup=1, max_turns=1, request=Request(1)),
        command=shlex.join(["python", "benchmarks/quick.py", *sys.argv[1:]]),
    )
    out = execute(plan)
    meta, records = read_meta(out), read_records(out / RECORDS_FILE)
    print(
        f"\n{meta['model']} ({meta['dtype']}), {meta['max_new_tokens']} new tokens, "
        f"{len(meta['questions'])} prompts, greedy; {meta['machine']}"
    )
    print("\n".join(text_table(records, meta["methods"], meta)))
    print(f"\nraw records, report.md and plots: {out}")


if __name__ == "__main__":
    main()
