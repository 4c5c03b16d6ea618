"""Calibrate BAC on the shipped reach-policy and write ``weights/bac_schedule_reach-policy.json``.

    python training/calibrate_policy_bac.py          # about 10 s on one core

Records every block's residual at every denoising step during uncached closed-loop
rollouts of the 32 calibration episodes (seeds 50000..50031, disjoint from the training
and evaluation seeds), then builds the schedule with the default budget of
:data:`hasten.diffusion.bench.reach_policy.DEFAULT_BAC` (the Adaptive Caching Scheduler per
block, then the Bubbling Union; see :mod:`hasten.diffusion.methods.bac`).
``models.load("reach-policy").extra["bac_config"]`` is then this schedule.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from hasten.diffusion import models
from hasten.diffusion.bench.reach_policy import CALIBRATION_SEEDS, DEFAULT_BAC, ReachPolicySuite
from hasten.diffusion.methods.bac import save_schedule
from hasten.diffusion.models.reach_policy import SCHEDULE_FILE


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=models.WEIGHTS_DIR / SCHEDULE_FILE)
    args = parser.parse_args()
    torch.set_num_threads(1)
    policy = models.load("reach-policy").extra["policy"]
    suite = ReachPolicySuite(policy)
    budget, upstream = DEFAULT_BAC
    config = suite.bac_config(budget, upstream)
    statistics = suite.statistics()
    path = save_schedule(
        config,
        args.out,
        model="reach-policy",
        budget=budget,
        num_upstream=upstream,
        block_names=[f"blocks.{name}" for name, _ in policy.denoiser.blocks.named_children()],
        ffn_blocks=list(policy.denoiser.ffn_blocks()),
        caching_errors=[round(float(e), 6) for e in statistics.errors],
        calibration_seeds=[int(CALIBRATION_SEEDS[0]), int(CALIBRATION_SEEDS[-1])],
        calibration_samples=statistics.samples,
        similarity="cosine of block residuals, mean over samples",
        skipped_fraction=round(config.skipped_fraction, 4),
        command="python training/calibrate_policy_bac.py",
    )
    counts = "/".join(str(len(s)) for s in config.update_steps)
    print(
        f"wrote {path}: budget {budget}, upstream {upstream}, updates per block {counts}, "
        f"{100 * config.skipped_fraction:.0f}% of block evaluations reused"
    )


if __name__ == "__main__":
    main()
