"""Train ``digits-mar`` / ``digits-mar-small``, shipped in src/hasten/arimage/models/weights/ (CPU, one thread).

    python training/train_digits_mar.py --size base    # -> digits-mar
    python training/train_digits_mar.py --size small   # -> digits-mar-small (the draft for continuous_sd)

MAR-style training (arXiv 2406.11838, causal raster order): the transformer emits z per
position; the diffusion head regresses the DDPM noise of each token given z (cosine
schedule, 1000 timesteps, ``--head-repeat`` noise draws per token per step, as MAR's
diffusion batch multiplier) (:mod:`hasten.arimage.models.digits_mar`); labels are replaced by the null class with
probability ``--label-drop`` for classifier-free guidance. AdamW, warm-up then cosine
decay, gradient clipping at 1, an EMA of the weights (what is saved, float16 safetensors
plus ``weights/digits-ar.json`` with sha256, the exact command and the wall time).
Augmentation: each image is shifted by -1, 0 or +1 pixel horizontally and vertically
(background fill) with probability ``--shift``, so 1797 images do not get memorised.

Reproducible: every draw comes from ``--seed``; ``--threads`` is fixed.
Data: scikit-learn's ``load_digits`` (UCI ML hand-written digits, CC BY 4.0); nothing is downloaded.
"""

from __future__ import annotations

import argparse
import copy
import math
import platform
import shlex
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from hasten.arimage.models import WEIGHTS_DIR
from hasten.arimage.models.digits_ar import GRID
from hasten.arimage.models.digits_mar import (
    ARCHITECTURES,
    TOKEN_DIM,
    TRAIN_STEPS,
    DigitsMAR,
    alphas_cumprod,
    digits_patches,
)
from hasten.diffusion.models import write_manifest

DATA_LICENSE = "UCI ML hand-written digits (scikit-learn load_digits), CC BY 4.0"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(ARCHITECTURES), default="base")
    parser.add_argument("--head-repeat", type=int, default=2, help="noise draws per token per step")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--ema", type=float, default=0.998)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--shift", type=float, default=0.5, help="probability of a 1-pixel shift")
    parser.add_argument("--label-drop", type=float, default=0.1)
    parser.add_argument("--guidance", type=float, default=3.0, help="default CFG scale for the manifest")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=WEIGHTS_DIR)
    return parser.parse_args(argv)


def command_line(args: argparse.Namespace) -> str:
    parts = [
        "python",
        "training/train_digits_mar.py",
        "--size",
        args.size,
        "--head-repeat",
        str(args.head_repeat),
        "--steps",
        str(args.steps),
        "--batch",
        str(args.batch),
        "--lr",
        str(args.lr),
        "--warmup",
        str(args.warmup),
        "--ema",
        str(args.ema),
        "--dropout",
        str(args.dropout),
        "--shift",
        str(args.shift),
        "--label-drop",
        str(args.label_drop),
        "--guidance",
        str(args.guidance),
        "--seed",
        str(args.seed),
        "--threads",
        str(args.threads),
    ]
    if args.out.resolve() != WEIGHTS_DIR.resolve():
        parts += ["--out", str(args.out)]
    return shlex.join(parts)


def learning_rate(step: int, args: argparse.Namespace) -> float:
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    progress = (step - args.warmup) / max(1, args.steps - args.warmup)
    return args.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def shift(tokens: torch.Tensor, prob: float, generator: torch.Generator) -> torch.Tensor:
    """Shift (B, 64, 4) patch tokens by up to one patch each way (fill -1) with probability ``prob``."""
    grid = tokens.view(-1, GRID, GRID, TOKEN_DIM)
    out = grid.clone()
    for i in range(grid.shape[0]):
        if float(torch.rand((), generator=generator)) >= prob:
            continue
        dy, dx = (int(v) for v in torch.randint(-1, 2, (2,), generator=generator))
        padded = F.pad(grid[i].permute(2, 0, 1), (1, 1, 1, 1), value=-1.0).permute(1, 2, 0)
        out[i] = padded[1 - dy : 1 - dy + GRID, 1 - dx : 1 - dx + GRID]
    return out.view(-1, GRID * GRID, TOKEN_DIM)


def train(args: argparse.Namespace) -> tuple[DigitsMAR, list[float]]:
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    tokens, labels = digits_patches()
    abar = alphas_cumprod().float()
    model = DigitsMAR(**ARCHITECTURES[args.size], dropout=args.dropout).train()
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.98), weight_decay=0.05)
    losses, window, started = [], [], time.perf_counter()
    for step in range(args.steps):
        index = torch.randint(0, tokens.shape[0], (args.batch,), generator=generator)
        seq, y = shift(tokens[index], args.shift, generator), labels[index]
        y = torch.where(torch.rand(args.batch, generator=generator) < args.label_drop, model.null_class, y)
        inputs = torch.cat([torch.zeros_like(seq[:, :1]), seq[:, :-1]], dim=1)
        z = model(inputs, y).reshape(-1, model.pos_emb.shape[1]).repeat(args.head_repeat, 1)
        x0 = seq.reshape(-1, TOKEN_DIM).repeat(args.head_repeat, 1)
        t = torch.randint(0, TRAIN_STEPS, (x0.shape[0],), generator=generator)
        noise = torch.randn(x0.shape, generator=generator)
        a = abar[t].unsqueeze(1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        loss = F.mse_loss(model.head(xt, t, z), noise)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, args)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        decay = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for p_ema, p in zip(ema.parameters(), model.parameters()):
                p_ema.lerp_(p, 1 - decay)
        window.append(loss.item())
        if (step + 1) % 100 == 0 or step + 1 == args.steps:
            losses.append(sum(window) / len(window))
            window = []
            elapsed = time.perf_counter() - started
            eta = elapsed / (step + 1) * (args.steps - step - 1)
            print(f"step {step + 1}/{args.steps}  loss {losses[-1]:.4f}  {elapsed:.0f} s  eta {eta:.0f} s", flush=True)
    return ema, losses


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(args.threads)
    command = command_line(args)
    print(command, flush=True)
    started = time.perf_counter()
    ema, losses = train(args)
    seconds = time.perf_counter() - started
    name = "digits-mar" if args.size == "base" else f"digits-mar-{args.size}"
    args.out.mkdir(parents=True, exist_ok=True)
    from safetensors.torch import save_file

    file_name = f"{name}.safetensors"
    save_file(
        {k: v.detach().to(torch.float16).contiguous() for k, v in ema.state_dict().items()}, str(args.out / file_name)
    )
    manifest = {
        "name": name,
        "architecture": "DigitsMAR",
        "config": ARCHITECTURES[args.size],
        "files": {file_name: {}},
        "parameters": sum(p.numel() for p in ema.parameters()),
        "training": {
            "command": command,
            "seconds": round(seconds, 1),
            "seed": args.seed,
            "steps": args.steps,
            "batch": args.batch,
            "lr": args.lr,
            "ema": args.ema,
            "dropout": args.dropout,
            "shift": args.shift,
            "label_drop": args.label_drop,
            "objective": "DDPM eps MSE of the diffusion head given z (cosine schedule, 1000 steps)",
            "loss_per_100_steps": [round(v, 5) for v in losses],
            "threads": args.threads,
            "torch": torch.__version__,
            "machine": platform.machine(),
            "stored_dtype": "float16 (EMA weights)",
        },
        "data": {
            "name": "sklearn.datasets.load_digits upsampled to 16x16 in [-1, 1], 2x2 patches (64 tokens x 4)",
            "source": "UCI ML hand-written digits (E. Alpaydin, C. Kaynak), via scikit-learn",
            "license": DATA_LICENSE,
        },
        "extra": {"grid": GRID, "token_dim": TOKEN_DIM, "null_class": 10, "guidance": args.guidance},
    }
    path = write_manifest(manifest, args.out)
    print(f"wrote {args.out / file_name} and {path}")
    print(f"training time: {seconds:.1f} s ({seconds / 60:.1f} min), final loss {losses[-1]:.4f}")


if __name__ == "__main__":
    main()
