"""hasten.diffusion inside real diffusers pipelines, on tiny random-weight configs built locally.

Every pipeline gets ``prompt_embeds`` (no tokenizer or text encoder is ever loaded) and
``output_type="latent"`` (the VAE is only there because the pipelines require one).
CFG is on everywhere, covering: batched uncond-first (SD3, PixArt, SD), batched
cond-first (DiT), separate calls under ``cache_context`` (Flux true-CFG), and separate
calls with a ``step_index`` in ``cache_context`` (Wan).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch

import hasten.diffusion as hd

from .toys import EvaluationCounter

diffusers = pytest.importorskip("diffusers")

STEPS = 5


def _vae() -> torch.nn.Module:
    return diffusers.AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(8, 8),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=32,
    )


def _embeds(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@dataclass
class Case:
    """A tiny pipeline, its denoiser, the call arguments, and the number of lanes per run."""

    pipe: Any
    denoiser: torch.nn.Module
    kwargs: dict[str, Any]
    lanes_per_run: int

    def __call__(self) -> torch.Tensor:
        out = self.pipe(**self.kwargs, num_inference_steps=STEPS, generator=torch.Generator().manual_seed(0))
        return out.frames if hasattr(out, "frames") else out.images


def flux() -> Case:
    transformer = diffusers.FluxTransformer2DModel(
        patch_size=1,
        in_channels=16,
        num_layers=2,
        num_single_layers=2,
        attention_head_dim=8,
        num_attention_heads=2,
        joint_attention_dim=16,
        pooled_projection_dim=8,
        axes_dims_rope=(2, 2, 4),
    )
    pipe = diffusers.FluxPipeline(
        scheduler=diffusers.FlowMatchEulerDiscreteScheduler(),
        vae=_vae(),
        text_encoder=None,
        tokenizer=None,
        text_encoder_2=None,
        tokenizer_2=None,
        transformer=transformer,
    )
    kwargs = dict(
        prompt_embeds=_embeds(1, 6, 16, seed=1),
        pooled_prompt_embeds=_embeds(1, 8, seed=2),
        negative_prompt_embeds=_embeds(1, 6, 16, seed=3),
        negative_pooled_prompt_embeds=_embeds(1, 8, seed=4),
        true_cfg_scale=2.0,
        height=32,
        width=32,
        output_type="latent",
    )
    return Case(pipe, transformer, kwargs, lanes_per_run=2)


def sd3() -> Case:
    transformer = diffusers.SD3Transformer2DModel(
        sample_size=16,
        patch_size=2,
        in_channels=4,
        num_layers=3,
        attention_head_dim=8,
        num_attention_heads=2,
        joint_attention_dim=16,
        caption_projection_dim=16,
        pooled_projection_dim=8,
        out_channels=4,
    )
    pipe = diffusers.StableDiffusion3Pipeline(
        scheduler=diffusers.FlowMatchEulerDiscreteScheduler(),
        vae=_vae(),
        text_encoder=None,
        tokenizer=None,
        text_encoder_2=None,
        tokenizer_2=None,
        text_encoder_3=None,
        tokenizer_3=None,
        transformer=transformer,
    )
    kwargs = dict(
        prompt_embeds=_embeds(1, 6, 16, seed=1),
        pooled_prompt_embeds=_embeds(1, 8, seed=2),
        negative_prompt_embeds=_embeds(1, 6, 16, seed=3),
        negative_pooled_prompt_embeds=_embeds(1, 8, seed=4),
        height=32,
        width=32,
        output_type="latent",
    )
    return Case(pipe, transformer, kwargs, lanes_per_run=1)


def pixart() -> Case:
    transformer = diffusers.PixArtTransformer2DModel(
        sample_size=16,
        num_layers=2,
        patch_size=2,
        attention_head_dim=8,
        num_attention_heads=2,
        caption_channels=16,
        in_channels=4,
        out_channels=8,
        cross_attention_dim=16,
        norm_type="ada_norm_single",
        norm_elementwise_affine=False,
        norm_eps=1e-6,
    )
    pipe = diffusers.PixArtAlphaPipeline(
        tokenizer=None,
        text_encoder=None,
        vae=_vae(),
        transformer=transformer,
        scheduler=diffusers.DDIMScheduler(steps_offset=1, clip_sample=False),
    )
    kwargs = dict(
        prompt_embeds=_embeds(1, 6, 16, seed=1),
        prompt_attention_mask=torch.ones(1, 6),
        negative_prompt=None,
        negative_prompt_embeds=_embeds(1, 6, 16, seed=3),
        negative_prompt_attention_mask=torch.ones(1, 6),
        height=32,
        width=32,
        output_type="latent",
        use_resolution_binning=False,
    )
    return Case(pipe, transformer, kwargs, lanes_per_run=1)


def dit() -> Case:
    transformer = diffusers.DiTTransformer2DModel(
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=4,
        out_channels=8,
        num_layers=2,
        sample_size=8,
        patch_size=2,
        num_embeds_ada_norm=1000,
    )
    pipe = diffusers.DiTPipeline(
        transformer=transformer, vae=_vae(), scheduler=diffusers.DDIMScheduler(steps_offset=1, clip_sample=False)
    )
    return Case(pipe, transformer, dict(class_labels=[1], output_type="pt"), lanes_per_run=1)


def wan() -> Case:
    transformer = diffusers.WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=4,
        out_channels=4,
        text_dim=16,
        freq_dim=16,
        ffn_dim=32,
        num_layers=2,
        rope_max_seq_len=32,
    )
    vae = diffusers.AutoencoderKLWan(
        base_dim=3, z_dim=4, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
    )
    scheduler = diffusers.UniPCMultistepScheduler(
        flow_shift=3.0, prediction_type="flow_prediction", use_flow_sigmas=True
    )
    pipe = diffusers.WanPipeline(
        tokenizer=None, text_encoder=None, transformer=transformer, vae=vae, scheduler=scheduler
    )
    kwargs = dict(
        prompt_embeds=_embeds(1, 6, 16, seed=1),
        negative_prompt_embeds=_embeds(1, 6, 16, seed=3),
        height=32,
        width=32,
        num_frames=5,
        output_type="latent",
    )
    return Case(pipe, transformer, kwargs, lanes_per_run=2)


def unet() -> Case:
    denoiser = diffusers.UNet2DConditionModel(
        block_out_channels=(8, 16),
        layers_per_block=1,
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16,
        norm_num_groups=4,
        attention_head_dim=2,
    )
    pipe = diffusers.StableDiffusionPipeline(
        vae=_vae(),
        text_encoder=None,
        tokenizer=None,
        unet=denoiser,
        scheduler=diffusers.DDIMScheduler(steps_offset=1, clip_sample=False),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    kwargs = dict(
        prompt_embeds=_embeds(1, 6, 16, seed=1),
        negative_prompt_embeds=_embeds(1, 6, 16, seed=3),
        height=32,
        width=32,
        output_type="latent",
    )
    return Case(pipe, denoiser, kwargs, lanes_per_run=1)


FACTORIES: dict[str, Callable[[], Case]] = {
    "flux": flux,
    "sd3": sd3,
    "pixart": pixart,
    "dit": dit,
    "wan": wan,
    "unet": unet,
}

EXACT = {
    "static": hd.StaticCacheConfig(interval=1),
    "delta_dit": hd.DeltaDiTConfig(interval=1),
    "first_block": hd.FirstBlockCacheConfig(threshold=0.0),
    "taylorseer": hd.TaylorSeerConfig(interval=1),
    "cg_taylor": hd.CGTaylorConfig(threshold=0.0),
}
ACTIVE = {
    "static": hd.StaticCacheConfig(interval=2, warmup_steps=1),
    "delta_dit": hd.DeltaDiTConfig(interval=2, switch_step=3, cached_fraction=0.5),
    "first_block": hd.FirstBlockCacheConfig(threshold=math.inf, warmup_steps=1),
    "taylorseer": hd.TaylorSeerConfig(interval=2, order=1, warmup_steps=1),
    "cg_taylor": hd.CGTaylorConfig(threshold=math.inf, order=1, warmup_steps=1),
}


def build(name: str) -> Case:
    torch.manual_seed(0)
    case = FACTORIES[name]()
    for component in case.pipe.components.values():
        if isinstance(component, torch.nn.Module):
            component.eval()  # as from_pretrained leaves them; DiT's label embedding drops labels in train mode
    case.pipe.set_progress_bar_config(disable=True)
    return case


@pytest.mark.parametrize("model", FACTORIES)
def test_reuse_nothing_configs_give_the_uncached_output(model):
    case = build(model)
    reference = case()
    for method, config in EXACT.items():
        handle = hd.enable(case.denoiser, config)
        assert torch.equal(case(), reference), method
        assert handle.summary().totals.skipped == 0, method
        hd.disable(case.denoiser)


@pytest.mark.parametrize("model", FACTORIES)
def test_every_method_skips_blocks_resets_between_runs_and_disables_cleanly(model):
    case = build(model)
    reference = case()
    handle0 = hd.enable(case.denoiser, hd.StaticCacheConfig())
    blocks = [b.module for b in handle0.blocks]
    hd.disable(case.denoiser)
    modules = [case.denoiser, *blocks]
    attributes = [set(vars(m)) for m in modules]
    for method, config in ACTIVE.items():
        counter = EvaluationCounter(blocks)
        handle = hd.enable(case.denoiser, config)
        first = case()
        second = case()
        counter.close()
        summary = handle.summary()
        assert torch.equal(first, second), method  # state reset between runs
        assert first.shape == reference.shape and torch.isfinite(first).all(), method
        assert summary.runs == 2 * case.lanes_per_run, method
        assert summary.totals.skipped > 0, method
        assert [c.computed for c in summary.per_block] == counter.counts, method
        hd.disable(case.denoiser)
        for module, names in zip(modules, attributes):
            assert set(vars(module)) - {"_diffusers_hook"} == names - {"_diffusers_hook"}, method
            assert module.forward.__func__ is type(module).forward, method
    assert torch.equal(case(), reference)


def test_builtin_specs_find_every_block():
    expected = {"flux": 4, "sd3": 3, "pixart": 2, "dit": 2, "wan": 2, "unet": 5}
    for name, count in expected.items():
        case = build(name)
        handle = hd.enable(case.denoiser, hd.StaticCacheConfig())
        assert len(handle.blocks) == count, name
        hd.disable(case.denoiser)


def test_unknown_denoiser_needs_a_spec():
    with pytest.raises(ValueError, match="no built-in block metadata"):
        hd.enable(torch.nn.Linear(2, 2), hd.StaticCacheConfig())
    with pytest.raises(TypeError, match="no cache method"):
        hd.enable(build("dit").denoiser, object())
