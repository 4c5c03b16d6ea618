"""Train the digits DiTs shipped in src/hasten/diffusion/models/weights/ (CPU, one thread).

    python training/train_digits_dit.py --size large     # -> digits-dit        (18 min here)
    python training/train_digits_dit.py --size small     # -> digits-dit-small  (4 min here)

Objective: rectified flow / flow matching with a linear path ("Flow Straight and Fast",
arXiv 2209.03003): ``x_t = (1 - t) x_0 + t noise`` with t ~ U(0, 1); the DiT
(``timestep = 1000 t``) regresses the velocity ``noise - x_0`` (MSE). Class labels are
replaced by the null class with probability ``--label-drop`` for classifier-free
guidance. The model is kept in eval mode while training: diffusers' DiT would otherwise
drop labels independently in every block's own label embedding, and it has no other
dropout. AdamW, linear warm-up then cosine decay, gradient clipping at 1, and an EMA of
the weights, which is what is saved (float16 safetensors plus the manifest
``weights/<name>.json`` with sha256, the exact command and the wall time).

Reproducible: every random draw comes from ``--seed`` (batches, noise, times, label
drops through a torch.Generator; initial weights through torch.manual_seed) and
``--threads`` is fixed, so the same command on the same torch build gives the same
weights.

Data: scikit-learn's ``load_digits`` (UCI ML hand-written digits, CC BY 4.0), shipped
inside scikit-learn; nothing is downloaded.
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

from hasten.diffusion.models import WEIGHTS_DIR, write_manifest
from hasten.diffusion.models.digits import (
    ARCHITECTURES,
    DATA_LICENSE,
    IMAGE_SIZE,
    NULL_CLASS,
    NUM_CLASSES,
    TIMESTEP_SCALE,
    build_dit,
    digits_dataset,
)

NAMES = {"large": "digits-dit", "small": "digits-dit-small", "tiny": "digits-dit-tiny"}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(ARCHITECTURES), default="large")
    parser.add_argument("--steps", type=int, default=2000, help="optimizer steps")
    parser.add_argument("--batch", type=int, default=128, help="images per step")
    parser.add_argument("--lr", type=float, default=5e-4, help="peak learning rate")
    parser.add_argument("--warmup", type=int, default=100, help="linear warm-up steps")
    parser.add_argument("--ema", type=float, default=0.999, help="EMA decay of the saved weights")
    parser.add_argument("--label-drop", type=float, default=0.1, help="probability of the null class (CFG)")
    parser.add_argument("--guidance", type=float, default=2.0, help="default CFG scale written to the manifest")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=WEIGHTS_DIR, help="folder for the weights and manifest")
    return parser.parse_args(argv)


def command_line(args: argparse.Namespace) -> str:
    """The command that reproduces this run, every option spelled out (``--out`` only if not the default)."""
    parts = [
        "python",
        "training/train_digits_dit.py",
        "--size",
        args.size,
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
    return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def train(args: argparse.Namespace) -> tuple[torch.nn.Module, list[float]]:
    """Train and return the EMA model and the loss averaged over each 100 steps."""
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    images, labels = digits_dataset()
    model = build_dit(ARCHITECTURES[args.size]).eval()  # eval: no per-block label dropout (see docstring)
    ema = copy.deepcopy(model).requires_grad_(False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.99), weight_decay=0.0)
    losses, window, started = [], [], time.perf_counter()
    for step in range(args.steps):
        index = torch.randint(0, images.shape[0], (args.batch,), generator=generator)
        x0, y = images[index], labels[index]
        noise = torch.randn(x0.shape, generator=generator)
        t = torch.rand(args.batch, generator=generator)
        y = torch.where(torch.rand(args.batch, generator=generator) < args.label_drop, NULL_CLASS, y)
        xt = (1 - t.view(-1, 1, 1, 1)) * x0 + t.view(-1, 1, 1, 1) * noise
        velocity = model(xt, timestep=t * TIMESTEP_SCALE, class_labels=y, return_dict=False)[0]
        loss = torch.nn.functional.mse_loss(velocity, noise - x0)
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
    name = NAMES[args.size]
    args.out.mkdir(parents=True, exist_ok=True)
    from safetensors.torch import save_file

    file_name = f"{name}.safetensors"
    save_file(
        {k: v.detach().to(torch.float16).contiguous() for k, v in ema.state_dict().items()}, str(args.out / file_name)
    )
    manifest = {
        "name": name,
        "architecture": "DiTTransformer2DModel",
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
            "label_drop": args.label_drop,
            "objective": "rectified flow, linear path, velocity (noise - x0) MSE",
            "loss_per_100_steps": [round(v, 5) for v in losses],
            "threads": args.threads,
            "torch": torch.__version__,
            "machine": platform.machine(),
            "stored_dtype": "float16 (EMA weights)",
        },
        "data": {
            "name": "sklearn.datasets.load_digits, upsampled 8x8 -> 16x16 (bilinear), scaled to [-1, 1]",
            "source": "UCI ML hand-written digits (E. Alpaydin, C. Kaynak), via scikit-learn",
            "license": DATA_LICENSE,
        },
        "extra": {
            "image_size": IMAGE_SIZE,
            "num_classes": NUM_CLASSES,
            "null_class": NULL_CLASS,
            "timestep_scale": TIMESTEP_SCALE,
            "guidance": args.guidance,
        },
    }
    path = write_manifest(manifest, args.out)
    print(f"wrote {args.out / file_name} and {path}")
    print(f"training time: {seconds:.1f} s ({seconds / 60:.1f} min), final loss {losses[-1]:.4f}")


if __name__ == "__main__":
    main()
