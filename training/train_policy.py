"""Train the reach-policy diffusion policy on scripted-expert demonstrations (one CPU core).

    python training/train_policy.py                 # about 17 min on one core (4000 steps); writes the weights + manifest
    python training/train_policy.py --steps 50 --out /tmp/rp   # a smoke run

Data: ``--demos`` episodes of :class:`hasten.diffusion.models.reach_env.ScriptedExpert`
on episode seeds ``100000 + i`` (the evaluation seeds 0..999 and the BAC calibration
seeds 50000.. are disjoint from them). Every control step of every episode gives one
training pair: the observation and the next H intended actions (zero-padded after the
episode ends), normalised by ``MAX_STEP``.

Objective: DDPM noise prediction (Ho et al., arXiv 2006.11239) over
``train_timesteps`` steps of the squared-cosine schedule; AdamW, linear warm-up then
cosine decay of the learning rate; the weights written are an exponential moving average.
After training, the EMA model is evaluated closed-loop (uncached, DDIM) on episode seeds
0..``--eval-episodes``-1 and the success rate and the above/below split are printed and
recorded in the manifest. Everything is seeded; one thread.
"""

from __future__ import annotations

import argparse
import copy
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from hasten.diffusion import models
from hasten.diffusion.models.reach_env import MAX_STEP, expert_demonstrations
from hasten.diffusion.models.reach_policy import (
    MODEL_NAME,
    WEIGHTS_FILE,
    ReachDenoiser,
    ReachPolicy,
    ReachPolicyConfig,
    cosine_alpha_bars,
)

DEMO_SEED_OFFSET = 100_000


def demonstration_pairs(demos: int, horizon: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Observations ``(N, 4)`` and normalised action chunks ``(N, H, 2)`` float32 from expert episodes."""
    observations, labels, running = expert_demonstrations(np.arange(demos) + DEMO_SEED_OFFSET)
    e, t, a = labels.shape
    padded = np.concatenate([labels, np.zeros((e, horizon, a))], axis=1)
    chunks = np.stack([padded[:, i : i + horizon] for i in range(t)], axis=1)  # (E, T, H, A)
    mask = running.reshape(-1)
    obs = observations.reshape(e * t, -1)[mask]
    chunks = chunks.reshape(e * t, horizon, a)[mask] / MAX_STEP
    return torch.as_tensor(obs, dtype=torch.float32), torch.as_tensor(chunks, dtype=torch.float32)


def learning_rate(step: int, steps: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * 0.5 * (1 + math.cos(math.pi * progress))


def train(args: argparse.Namespace) -> tuple[ReachDenoiser, dict]:
    torch.manual_seed(args.seed)
    config = ReachPolicyConfig()
    obs, chunks = demonstration_pairs(args.demos, config.horizon)
    print(f"{len(obs)} training pairs from {args.demos} expert episodes", flush=True)
    model = ReachDenoiser(config)
    ema = copy.deepcopy(model).requires_grad_(False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    alpha_bars = cosine_alpha_bars(config.train_timesteps).float()
    generator = torch.Generator().manual_seed(args.seed)
    start, running_loss = time.perf_counter(), 0.0
    for step in range(args.steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, args.steps, args.lr, args.warmup)
        index = torch.randint(len(obs), (args.batch,), generator=generator)
        t = torch.randint(config.train_timesteps, (args.batch,), generator=generator)
        noise = torch.randn(args.batch, config.horizon, 2, generator=generator)
        ab = alpha_bars[t][:, None, None]
        noisy = ab.sqrt() * chunks[index] + (1 - ab).sqrt() * noise
        loss = torch.nn.functional.mse_loss(model(noisy, t, obs[index]), noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        decay = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for p_ema, p in zip(ema.parameters(), model.parameters()):
                p_ema.lerp_(p, 1 - decay)
        running_loss += loss.item()
        if (step + 1) % args.log_every == 0:
            elapsed = time.perf_counter() - start
            print(
                f"step {step + 1}/{args.steps}  loss {running_loss / args.log_every:.4f}  {elapsed:.0f} s", flush=True
            )
            running_loss = 0.0
    seconds = time.perf_counter() - start
    return ema.eval(), {"seconds": round(seconds, 1), "pairs": len(obs)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--ema", type=float, default=0.999)
    parser.add_argument("--demos", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-episodes", type=int, default=200)
    parser.add_argument("--log-every", type=int, default=200)
    parser.add_argument("--out", type=Path, default=models.WEIGHTS_DIR, help="folder for the weights and manifest")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    total_start = time.perf_counter()

    model, info = train(args)
    eval_start = time.perf_counter()
    rollout = ReachPolicy(model).rollout(np.arange(args.eval_episodes))
    above, below = rollout.side_fractions()
    eval_seconds = time.perf_counter() - eval_start
    print(
        f"closed-loop success {rollout.success_rate:.3f} over {args.eval_episodes} episodes (seeds 0..{args.eval_episodes - 1}); "
        f"successful episodes passed above {above:.2f} / below {below:.2f}; eval {eval_seconds:.0f} s",
        flush=True,
    )

    args.out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(args.out / WEIGHTS_FILE))
    (args.out / WEIGHTS_FILE).chmod(0o644)  # safetensors writes 0600; package data must be readable
    command = "python training/train_policy.py" + "".join(f" {a}" for a in (argv if argv is not None else sys.argv[1:]))
    manifest = {
        "name": MODEL_NAME,
        "architecture": "ReachDenoiser",
        "config": model.config.to_dict(),
        "files": {WEIGHTS_FILE: {}},
        "training": {
            "command": command,
            "seconds": info["seconds"],
            "total_seconds": round(time.perf_counter() - total_start, 1),
            "seed": args.seed,
            "steps": args.steps,
            "batch": args.batch,
            "lr": args.lr,
            "ema": args.ema,
            "demos": args.demos,
            "pairs": info["pairs"],
            "objective": "DDPM epsilon prediction, squared-cosine schedule",
            "threads": 1,
            "machine": platform.processor() or platform.machine(),
            "torch": torch.__version__,
        },
        "data": {
            "name": "reach scripted-expert demonstrations",
            "source": "hasten.diffusion.models.reach_env.ScriptedExpert, episode seeds 100000..",
            "license": "generated by this repository (Apache-2.0)",
        },
        "extra": {
            "eval_episodes": args.eval_episodes,
            "eval_success_rate": rollout.success_rate,
            "eval_above_fraction": above,
            "eval_below_fraction": below,
        },
    }
    path = models.write_manifest(manifest, args.out)
    print(f"wrote {args.out / WEIGHTS_FILE} and {path}; training {info['seconds']:.0f} s", flush=True)


if __name__ == "__main__":
    main()
