"""Benchmark: `composite` with different draft sources, side by side with plain decoding and
`suffix` on the same prompts (interleaved per prompt, rotating order).

    PYTHONPATH=src python benchmarks/composite_sources.py --backend llamacpp --per-category 5
    PYTHONPATH=src python benchmarks/composite_sources.py --backend torch --variants default sam,pool

The prompts are the first turns of the first ``--per-category`` Spec-Bench dev questions of
each category (chat template, 128 new tokens, greedy). Each composite variant gets its own
in-process cross-request pool and its own calibration file under ``--scratch``, so no
variant reads another's outputs (two variants on the same prompt would otherwise find the
first one's answer in a shared pool). ``--backend llamacpp`` needs llama-cpp-python and a
GGUF file (``hasten requantize-gguf``). Prints tok/s and the ratio to plain decoding per
variant, and whether every output equals plain decoding's. Not a timed test: run it on a
quiet machine.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

import hasten
from hasten.bench.datasets import encode_chat, load_spec_bench
from hasten.drafters.composite import CrossRequestPool


def _prompts(dataset: Path, per_category: int) -> list[str]:
    by_category: dict[str, list[str]] = {}
    for question in load_spec_bench(dataset):
        by_category.setdefault(question.category, []).append(question.turns[0])
    return [turn for turns in by_category.values() for turn in turns[:per_category]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["torch", "llamacpp"], default="llamacpp")
    parser.add_argument("--gguf", type=Path, default=Path("~/.cache/hasten/smollm2-135m-q4_0.gguf").expanduser())
    parser.add_argument("--per-category", type=int, default=5)
    parser.add_argument("--variants", nargs="+", default=["default", "sam,pool", "sam,recycling"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--dataset", type=Path, default=Path("../shared/data/spec_bench/question_dev.jsonl"))
    parser.add_argument("--scratch", type=Path, default=None, help="calibration files (default: a temp dir)")
    args = parser.parse_args()

    if args.backend == "llamacpp":
        model, tokenizer = hasten.load_gguf(str(args.gguf), threads=args.threads)
    else:
        torch.set_num_threads(args.threads)
        model, tokenizer = hasten.load_model("smollm2-135m")
    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="hasten-composite-"))
    contenders: list[tuple[str, str | None, dict]] = [("plain", None, {}), ("suffix", "suffix", {})]
    for i, variant in enumerate(args.variants):
        options = {"pool": CrossRequestPool(), "calibration_cache": str(scratch / f"calibration-{i}.json")}
        if variant != "default":
            options["sources"] = variant
        contenders.append((f"composite[{variant}]", "composite", options))
    totals = {name: [0.0, 0] for name, _, _ in contenders}
    identical = {name: 0 for name, _, _ in contenders}
    prompts = _prompts(args.dataset, args.per_category)
    for i, prompt in enumerate(prompts):
        ids = torch.tensor([encode_chat(tokenizer, [{"role": "user", "content": prompt}])])
        shift = i % len(contenders)
        outputs = {}
        for name, method, options in contenders[shift:] + contenders[:shift]:
            start = time.perf_counter()
            out = hasten.generate(
                model, ids, method=method, method_options=options or None, max_new_tokens=args.max_new_tokens
            )
            totals[name][0] += time.perf_counter() - start
            totals[name][1] += out.sequences.shape[1] - ids.shape[1]
            outputs[name] = out.sequences[0].tolist()
        for name in outputs:
            identical[name] += outputs[name] == outputs["plain"]
    plain = totals["plain"][1] / totals["plain"][0]
    print(f"{len(prompts)} prompts, backend {args.backend}, {args.threads} threads")
    print(f"{'contender':>28} {'tok/s':>8} {'vs plain':>9} {'same as plain':>14}")
    for name, (seconds, tokens) in totals.items():
        rate = tokens / seconds
        print(f"{name:>28} {rate:>8.1f} {rate / plain:>8.3f}x {identical[name]:>8}/{len(prompts)}")


if __name__ == "__main__":
    main()
