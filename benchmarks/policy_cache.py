"""Benchmark: block caches (BAC, static, first_block, taylorseer) on the trained reach diffusion policy.

    python benchmarks/policy_cache.py               # prints a markdown table (about 4 min, 1 thread)
    python benchmarks/policy_cache.py --quick       # 20 episodes, 2 settings

Runs the ``reach-policy`` suite of ``hasten bench-diffusion``
(:mod:`hasten.diffusion.bench.reach_policy`) directly: each row is E closed-loop episodes
(seeds 0..E-1, all batched into each denoiser call) with one cache setting, timed over
the rollouts; its time is the fastest of ``--repeats`` runs, and the uncached reference
time is the fastest of uncached runs made before, between and after the cached ones in
the same process (the machine is shared; ratios measured side by side are what count).
Columns: speedup, fraction of block evaluations skipped, closed-loop success rate, the
open-loop action MSE against uncached (normalised action units, on fixed expert states),
and the share of successful episodes that went above the obstacle.
"""

from __future__ import annotations

import argparse

import torch

from hasten.diffusion import models
from hasten.diffusion.bench import UNCACHED, SuiteOutput
from hasten.diffusion.bench.reach_policy import EPISODES, QUICK_EPISODES, ReachPolicySuite


def fastest(suite: ReachPolicySuite, method: str, config: object, repeats: int) -> SuiteOutput:
    runs = [suite.run(method, config, seed=0) for _ in range(repeats)]
    if any(r.output.tobytes() != runs[0].output.tobytes() for r in runs):
        raise RuntimeError("repeated runs differ: cache state leaked between runs")
    return min(runs, key=lambda r: r.seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_EPISODES} episodes and two settings")
    parser.add_argument("--episodes", type=int, default=None, help=f"episodes per run (default {EPISODES})")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per row (the fastest counts)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    policy = models.load("reach-policy").extra["policy"]
    episodes = args.episodes or (QUICK_EPISODES if args.quick else EPISODES)
    suite = ReachPolicySuite(policy, episodes)
    plan = suite.settings(args.quick)
    suite.run(UNCACHED, None, seed=0)  # warm up kernels and allocator
    before = fastest(suite, UNCACHED, None, args.repeats)
    rows = [(s, fastest(suite, s.method, s.config, args.repeats)) for s in plan[: len(plan) // 2]]
    between = fastest(suite, UNCACHED, None, args.repeats)
    rows += [(s, fastest(suite, s.method, s.config, args.repeats)) for s in plan[len(plan) // 2 :]]
    after = fastest(suite, UNCACHED, None, args.repeats)
    baseline = min(before.seconds, between.seconds, after.seconds)

    print(suite.describe() + f", torch {torch.__version__}, fastest of {args.repeats} runs per row")
    statistics = suite.statistics()
    errors = " ".join(f"{e:.3f}" for e in statistics.errors)
    print(f"BAC calibration: {statistics.samples} samples (32 episodes x replans), caching error per block: {errors}")
    for setting, _ in rows:
        if setting.method == "bac":
            counts = "/".join(str(len(s)) for s in setting.config.update_steps)
            print(f"  bac {setting.label}: updates per block {counts} of {setting.config.num_steps}")
    print()
    print("| method | setting | s/run | speedup | blocks skipped | success | action MSE | above |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    ref = suite.fidelity(before, before)
    print(
        f"| uncached | before / between / after: {before.seconds:.2f} / {between.seconds:.2f} / {after.seconds:.2f} s "
        f"| {baseline:.2f} | 1.00x | 0% | {100 * ref['success_rate']:.0f}% | 0 | {ref['above_fraction']:.2f} |"
    )
    for setting, output in rows:
        m = suite.fidelity(before, output)
        print(
            f"| {setting.method} | {setting.label} | {output.seconds:.2f} | {baseline / output.seconds:.2f}x | "
            f"{100 * output.skipped_fraction:.0f}% | {100 * m['success_rate']:.0f}% | {m['action_mse']:.4f} | "
            f"{m['above_fraction']:.2f} |"
        )


if __name__ == "__main__":
    main()
