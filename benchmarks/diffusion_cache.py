"""Benchmark: training-free block caching on a DiT-B/2-sized diffusers DiT, on CPU.

    python benchmarks/diffusion_cache.py            # prints a markdown table (about 3-4 min, 1 thread)

The denoiser is ``DiTTransformer2DModel`` with DiT-B/2's shape (12 blocks, width 768,
12 heads, patch 2; 147M parameters) with random weights, at a 16x16 latent (64 tokens,
a 128x128 image), inside diffusers' ``DiTPipeline`` (DDIM, classifier-free guidance: a
batch of 2 per call), so block compute dominates the step. Each cache method runs at 3
settings. Every row is the same seed; its time is the faster of ``--repeats`` runs, and
the uncached reference time is the fastest of uncached runs made before, between and
after the cached ones in the same process (these machines are noisy; ratios measured side
by side are what count). Thresholds for the two adaptive methods are not guessed: a probe
run with threshold 0 measures the residual diffs (``handle.summary().percentiles()``) and
the settings use its P50 / P75 / P95.

Columns: wall time per image (s), speedup vs uncached, fraction of block evaluations
skipped, and the fidelity of the final latents against the uncached ones: relative L1
and PSNR (data range = the uncached latents' range). With random weights these only rank
settings against each other; they say nothing about image quality (the trained-model
benchmark is separate). One thread by default, so the numbers do not depend on how busy
the other core is.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from typing import Any

import torch
from diffusers import AutoencoderKL, DDIMScheduler, DiTPipeline, DiTTransformer2DModel

import hasten.diffusion as hd


@dataclass
class Row:
    method: str
    setting: str
    seconds: float
    skipped: float
    latents: torch.Tensor


def build_pipeline(layers: int, latent: int) -> DiTPipeline:
    """DiT-B/2-shaped transformer with random weights plus a small random VAE (decode only)."""
    torch.manual_seed(0)
    transformer = DiTTransformer2DModel(
        num_attention_heads=12,
        attention_head_dim=64,
        in_channels=4,
        out_channels=8,
        num_layers=layers,
        sample_size=latent,
        patch_size=2,
        num_embeds_ada_norm=1000,
    )
    vae = AutoencoderKL(
        block_out_channels=(8, 8, 8, 8),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
    )
    scheduler = DDIMScheduler(steps_offset=1, clip_sample=False)
    pipe = DiTPipeline(transformer=transformer.eval(), vae=vae.eval(), scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate(pipe: DiTPipeline, steps: int, repeats: int) -> tuple[torch.Tensor, float]:
    """Final latents (1, 4, h, w) float32 of one image of class 207, and the fastest of ``repeats`` wall times (s).

    The latents are caught on their way into the VAE decoder (a forward pre-hook on
    ``post_quant_conv``); the image itself is decoded as usual and counted in the time.
    """
    caught: list[torch.Tensor] = []
    hook = pipe.vae.post_quant_conv.register_forward_pre_hook(lambda m, args: caught.append(args[0].clone()))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        generator = torch.Generator().manual_seed(0)
        pipe(class_labels=[207], num_inference_steps=steps, generator=generator, output_type="pt")
        times.append(time.perf_counter() - start)
    hook.remove()
    if any(not torch.equal(c, caught[0]) for c in caught):
        raise RuntimeError("repeated runs gave different latents: cache state leaked between runs")
    return caught[0], min(times)


def probe(pipe: DiTPipeline, config: Any, steps: int, repeats: int) -> tuple[dict[int, float], Row]:
    """Run with a reuse-nothing adaptive config; return its residual-diff percentiles and its row."""
    handle = hd.enable(pipe.transformer, config)
    latents, seconds = generate(pipe, steps, repeats)
    percentiles = handle.summary().percentiles()
    hd.disable(pipe.transformer)
    return percentiles, Row(handle.policy.name, "threshold=0 (probe)", seconds, 0.0, latents)


def settings(first_block_pct: dict[int, float], cg_pct: dict[int, float], steps: int) -> list[tuple[str, str, Any]]:
    half = steps // 2
    rows: list[tuple[str, str, Any]] = []
    for interval in (2, 3, 5):
        config = hd.StaticCacheConfig(interval=interval, warmup_steps=2)
        rows.append(("static", f"interval={interval}, warmup=2", config))
    for interval, fraction in ((2, 0.5), (3, 0.5), (3, 0.75)):
        rows.append(
            (
                "delta_dit",
                f"interval={interval}, cached={fraction}, switch={half}",
                hd.DeltaDiTConfig(interval=interval, switch_step=half, cached_fraction=fraction),
            )
        )
    for p in (50, 75, 95):
        t = first_block_pct[p]
        rows.append(("first_block", f"threshold={t:.3f} (P{p})", hd.FirstBlockCacheConfig(threshold=t, warmup_steps=2)))
    for interval, order in ((2, 1), (3, 2), (5, 2)):
        rows.append(
            (
                "taylorseer",
                f"interval={interval}, order={order}",
                hd.TaylorSeerConfig(interval=interval, order=order, warmup_steps=3),
            )
        )
    for p in (50, 75, 95):
        t = cg_pct[p]
        rows.append(("cg_taylor", f"threshold={t:.3f} (P{p})", hd.CGTaylorConfig(threshold=t, order=1, warmup_steps=2)))
    return rows


def measure(pipe: DiTPipeline, method: str, setting: str, config: Any, steps: int, repeats: int) -> Row:
    handle = hd.enable(pipe.transformer, config)
    latents, seconds = generate(pipe, steps, repeats)
    skipped = handle.summary().skipped_fraction
    hd.disable(pipe.transformer)
    return Row(method, setting, seconds, skipped, latents)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="denoising steps per image")
    parser.add_argument("--layers", type=int, default=12, help="transformer blocks")
    parser.add_argument("--latent", type=int, default=16, help="latent side (image side / 8)")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per row (the fastest counts)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    pipe = build_pipeline(args.layers, args.latent)
    generate(pipe, 2, 1)  # warm up kernels and allocator
    reference, before = generate(pipe, args.steps, args.repeats)
    fb_pct, fb_row = probe(pipe, hd.FirstBlockCacheConfig(threshold=0.0), args.steps, args.repeats)
    cg_pct, cg_row = probe(pipe, hd.CGTaylorConfig(threshold=0.0, order=1), args.steps, args.repeats)
    rows = [fb_row, cg_row]
    plan = settings(fb_pct, cg_pct, args.steps)
    for method, setting, config in plan[: len(plan) // 2]:
        rows.append(measure(pipe, method, setting, config, args.steps, args.repeats))
    _, between = generate(pipe, args.steps, args.repeats)
    for method, setting, config in plan[len(plan) // 2 :]:
        rows.append(measure(pipe, method, setting, config, args.steps, args.repeats))
    _, after = generate(pipe, args.steps, args.repeats)
    baseline = min(before, between, after)

    span = (reference.max() - reference.min()).item()
    print(
        f"DiT {args.layers} blocks x width 768 (random weights), {args.latent}x{args.latent} latent "
        f"({(args.latent // 2) ** 2} tokens), batch 2 (CFG), {args.steps} DDIM steps, "
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), fastest of {args.repeats} runs per row"
    )
    print(f"probe residual diffs: first_block {_fmt(fb_pct)}; cg_taylor {_fmt(cg_pct)}")
    print()
    print("| method | setting | s/image | speedup | blocks skipped | latent rel-L1 | latent PSNR (dB) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    print(
        f"| uncached | before / between / after: {before:.2f} / {between:.2f} / {after:.2f} s | "
        f"{baseline:.2f} | 1.00x | 0% | 0 | inf |"
    )
    for r in rows:
        rel = hd.relative_l1(reference, r.latents).item()
        psnr = hd.psnr(reference, r.latents, data_range=span).item()
        print(
            f"| {r.method} | {r.setting} | {r.seconds:.2f} | {baseline / r.seconds:.2f}x | "
            f"{100 * r.skipped:.0f}% | {rel:.4f} | {psnr:.1f} |"
        )


def _fmt(percentiles: dict[int, float]) -> str:
    return " ".join(f"P{p}={v:.3f}" for p, v in percentiles.items())


if __name__ == "__main__":
    main()
