"""The ``digits-dit`` suite: every acceleration method on the trained digits DiT.

Sampling: :func:`hasten.diffusion.models.digits.sample` (flow-matching Euler, batched CFG,
one denoiser call per step), ``images`` images per call (classes 0-9 in turn), noise from
the run's seed. Methods, each dispatched through :data:`BACKENDS`:

* ``uncached``: the model as trained.
* hasten caches: ``static`` (FORA, arXiv 2407.01425), ``delta_dit`` (arXiv 2406.01125),
  ``first_block`` (TeaCache arXiv 2411.19108 / First Block Cache), ``taylorseer`` (arXiv
  2503.06923), ``cg_taylor`` (arXiv 2508.02240), through :func:`hasten.diffusion.enable`
  inside ``handle.run()``; skipped fraction from ``handle.summary()``.
* ``tstitch``: T-Stitch (arXiv 2402.14167) with ``digits-dit-small``; skipped fraction =
  share of the large model's block evaluations handed to the small model.
* diffusers' own hooks on a copy of the same DiT: ``diffusers_fbc``
  (``apply_first_block_cache``), ``diffusers_taylorseer`` (``apply_taylorseer_cache``),
  ``diffusers_pab`` (``apply_pyramid_attention_broadcast``, arXiv 2408.12588; TaylorSeer
  on whole blocks, like hasten's, since its default attention patterns miss DiT's
  ``attn1``). DiT has no
  ``cache_context``, so the cache context is set with diffusers' ``_set_cache_context``
  helper (what ``cache_context`` does). Their skipped fraction counts attention and MLP
  sublayer evaluations (not whole blocks), read from forward hooks on ``attn1.to_q`` and
  the MLP's output projection.

Fidelity (against uncached from the same noise): PSNR (dB) of the whole batch (images
mapped to [0, 1]; ``inf`` when identical), mean SSIM and mean relative L1 over images;
plus ``accuracy``, the share of images a digit classifier fit on real data assigns to
the class they were generated for (quality of the output alone).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

import hasten.diffusion as hd
from hasten.diffusion.bench.registry import register_suite
from hasten.diffusion.bench.suite import UNCACHED, Setting, SuiteOutput
from hasten.diffusion.metrics import psnr, relative_l1, ssim
from hasten.diffusion.models.digits import ARCHITECTURES, NUM_CLASSES, DigitClassifier, build_dit, sample
from hasten.diffusion.policy import policy_names
from hasten.diffusion.tstitch import TStitchConfig

__all__ = ["DigitsSuite", "BACKENDS", "digits_settings"]


class DigitsSuite:
    """Sampling the digits DiT under every method (see the module docstring).

    Args:
        model: the large digits DiT (float32, eval).
        small_model: the T-Stitch companion (None: ``tstitch`` settings are not offered).
        steps: denoising steps per sample (one denoiser call each).
        images: images per sampling call (the denoiser sees ``2 * images`` rows with CFG).
        guidance: CFG scale.
        classifier: judge for ``accuracy`` (None: fit one on first use).
        name: suite name in records.
    """

    metric_names = ("psnr", "ssim", "rel_l1", "accuracy")
    pareto_metrics = ("psnr",)
    higher_is_better = {"psnr": True, "ssim": True, "rel_l1": False, "accuracy": True}

    def __init__(
        self,
        model: torch.nn.Module,
        small_model: torch.nn.Module | None,
        steps: int = 50,
        images: int = 64,
        guidance: float = 2.0,
        classifier: DigitClassifier | None = None,
        name: str = "digits-dit",
    ) -> None:
        if steps < 1 or images < 1:
            raise ValueError(f"need steps >= 1 and images >= 1, got {steps} and {images}")
        self.model, self.small_model = model, small_model
        self.steps, self.images, self.guidance = steps, images, guidance
        self.name = name
        self.class_labels = torch.arange(images) % NUM_CLASSES
        self._classifier = classifier

    @classmethod
    def shipped(cls, quick: bool = False) -> DigitsSuite:
        """The suite on the shipped ``digits-dit`` / ``digits-dit-small`` weights
        (``quick``: 25 steps, 20 images)."""
        from hasten.diffusion import models

        large, small = models.load("digits-dit"), models.load("digits-dit-small")
        guidance = float(large.extra.get("guidance", 2.0))
        steps, images = (25, 20) if quick else (50, 64)
        return cls(large.module, small.module, steps=steps, images=images, guidance=guidance)

    @classmethod
    def tiny(
        cls, seed: int = 0, steps: int = 6, images: int = 4, classifier: DigitClassifier | None = None
    ) -> DigitsSuite:
        """Randomly initialised tiny DiTs (tests and smoke runs; a few ms per call)."""
        torch.manual_seed(seed)
        large = build_dit(ARCHITECTURES["tiny"]).eval().requires_grad_(False)
        small = build_dit(dict(ARCHITECTURES["tiny"], num_layers=1)).eval().requires_grad_(False)
        return cls(large, small, steps=steps, images=images, classifier=classifier, name="digits-dit-tiny")

    @property
    def classifier(self) -> DigitClassifier:
        if self._classifier is None:
            self._classifier = DigitClassifier.fit()
        return self._classifier

    def describe(self) -> str:
        blocks = len(self.model.transformer_blocks)
        width = self.model.inner_dim
        params = sum(p.numel() for p in self.model.parameters()) / 1e6
        small = ""
        if self.small_model is not None:
            small = (
                f"; T-Stitch small model {len(self.small_model.transformer_blocks)} blocks x width "
                f"{self.small_model.inner_dim}"
            )
        return (
            f"{self.name}: DiT {blocks} blocks x width {width} ({params:.1f}M params, float32), 16x16x1, "
            f"16 tokens, {self.images} images per call (CFG batch {2 * self.images}), {self.steps} Euler steps, "
            f"guidance {self.guidance}, torch threads {torch.get_num_threads()}{small}"
        )

    def settings(self, quick: bool) -> list[Setting]:
        chosen = digits_settings(self.steps, quick)
        return [s for s in chosen if s.method != "tstitch" or self.small_model is not None]

    def run(self, method: str, config: Any, seed: int) -> SuiteOutput:
        if method not in BACKENDS:
            raise KeyError(f"digits suite has no method {method!r}; known: {', '.join(sorted(BACKENDS))}")
        return BACKENDS[method](self, config, seed)

    def sample(self, seed: int, **kwargs: Any) -> torch.Tensor:
        """Images (B, 1, 16, 16) float32 in [-1, 1] from the large model (kwargs go to ``sample``)."""
        return sample(self.model, self.class_labels, steps=self.steps, guidance=self.guidance, seed=seed, **kwargs)

    def fidelity(self, reference: SuiteOutput, output: SuiteOutput) -> dict[str, float]:
        ref = (torch.from_numpy(reference.output) + 1) / 2  # [0, 1]
        out = (torch.from_numpy(output.output) + 1) / 2
        mse_psnr = psnr(ref.reshape(1, -1), out.reshape(1, -1), data_range=1.0)
        accuracy, _ = self.classifier.accuracy(torch.from_numpy(output.output), self.class_labels)
        return {
            "psnr": float(mse_psnr[0]),
            "ssim": float(ssim(ref, out, data_range=1.0).mean()),
            "rel_l1": float(relative_l1(ref, out).mean()),
            "accuracy": accuracy,
        }

    def render(self, outputs: list[tuple[str, SuiteOutput]], path: Path) -> bool:
        from hasten.benchcore.plots import image_rows

        image_rows([(title, out.output[: min(10, self.images)]) for title, out in outputs], path)
        return True


# ----- settings -----


def digits_settings(steps: int, quick: bool) -> list[Setting]:
    """The settings measured on the digits DiT, in report order.

    Thresholds of the adaptive methods come from threshold-0 probe runs on the trained
    ``digits-dit`` (50 steps, 64 images, seed 0; ``handle.summary().percentiles()``):
    first_block residual diffs P50 0.049 / P75 0.070 / P95 0.117, so 0.06 / 0.10 / 0.15
    (diffusers_fbc gets the same values); cg_taylor forecast errors P50 0.016 / P75 0.018 /
    P95 0.021, so 0.015 / 0.02 / 0.03. delta_dit switches at half the steps. ``quick``
    keeps one setting per method.
    """
    half = steps // 2
    full = [
        Setting("static", "interval=2, warmup=2", hd.StaticCacheConfig(interval=2, warmup_steps=2)),
        Setting("static", "interval=3, warmup=2", hd.StaticCacheConfig(interval=3, warmup_steps=2)),
        Setting("static", "interval=4, warmup=2", hd.StaticCacheConfig(interval=4, warmup_steps=2)),
        Setting("delta_dit", f"interval=2, cached=0.5, switch={half}", hd.DeltaDiTConfig(2, half, 0.5)),
        Setting("delta_dit", f"interval=3, cached=0.67, switch={half}", hd.DeltaDiTConfig(3, half, 0.67)),
        Setting("first_block", "threshold=0.06", hd.FirstBlockCacheConfig(threshold=0.06)),
        Setting("first_block", "threshold=0.10", hd.FirstBlockCacheConfig(threshold=0.10)),
        Setting("first_block", "threshold=0.15", hd.FirstBlockCacheConfig(threshold=0.15)),
        Setting("taylorseer", "interval=2, order=1", hd.TaylorSeerConfig(interval=2, order=1)),
        Setting("taylorseer", "interval=3, order=2", hd.TaylorSeerConfig(interval=3, order=2)),
        Setting("taylorseer", "interval=4, order=2", hd.TaylorSeerConfig(interval=4, order=2)),
        Setting("cg_taylor", "threshold=0.015", hd.CGTaylorConfig(threshold=0.015)),
        Setting("cg_taylor", "threshold=0.02", hd.CGTaylorConfig(threshold=0.02)),
        Setting("cg_taylor", "threshold=0.03", hd.CGTaylorConfig(threshold=0.03)),
        Setting("tstitch", "fraction=0.3", TStitchConfig(0.3)),
        Setting("tstitch", "fraction=0.5", TStitchConfig(0.5)),
        Setting("tstitch", "fraction=0.7", TStitchConfig(0.7)),
        Setting("diffusers_fbc", "threshold=0.06", {"threshold": 0.06}),
        Setting("diffusers_fbc", "threshold=0.10", {"threshold": 0.10}),
        Setting("diffusers_fbc", "threshold=0.15", {"threshold": 0.15}),
        Setting("diffusers_taylorseer", "interval=3, order=2", {"cache_interval": 3, "max_order": 2}),
        Setting("diffusers_taylorseer", "interval=4, order=2", {"cache_interval": 4, "max_order": 2}),
        Setting("diffusers_pab", "skip=2", {"skip": 2}),
        Setting("diffusers_pab", "skip=4", {"skip": 4}),
    ]
    if not quick:
        return full
    keep = {
        ("static", "interval=3, warmup=2"),
        ("delta_dit", f"interval=3, cached=0.67, switch={half}"),
        ("first_block", "threshold=0.10"),
        ("taylorseer", "interval=3, order=2"),
        ("cg_taylor", "threshold=0.02"),
        ("tstitch", "fraction=0.5"),
        ("diffusers_fbc", "threshold=0.10"),
        ("diffusers_taylorseer", "interval=3, order=2"),
        ("diffusers_pab", "skip=2"),
    }
    return [s for s in full if (s.method, s.label) in keep]


# ----- backends: method name -> how to sample -----

Backend = Callable[[DigitsSuite, Any, int], SuiteOutput]
BACKENDS: dict[str, Backend] = {}


def _timed(fn: Callable[[], torch.Tensor]) -> tuple[np.ndarray, float]:
    started = time.perf_counter()
    images = fn()
    return images.numpy(), time.perf_counter() - started


def _uncached(suite: DigitsSuite, config: Any, seed: int) -> SuiteOutput:
    images, seconds = _timed(lambda: suite.sample(seed))
    return SuiteOutput(images, seconds, 0.0)


def _hasten(suite: DigitsSuite, config: Any, seed: int) -> SuiteOutput:
    handle = hd.enable(suite.model, config)
    try:
        with handle.run():
            images, seconds = _timed(lambda: suite.sample(seed))
        summary = handle.summary()
    finally:
        hd.disable(suite.model)
    return SuiteOutput(images, seconds, summary.skipped_fraction, {"calls": float(summary.calls)})


def _tstitch(suite: DigitsSuite, config: TStitchConfig, seed: int) -> SuiteOutput:
    images, seconds = _timed(lambda: suite.sample(seed, small_model=suite.small_model, stitch=config))
    return SuiteOutput(images, seconds, config.small_steps(suite.steps) / suite.steps)


class SublayerCounter:
    """Counts attention and MLP evaluations of a diffusers DiT's blocks with forward hooks
    on their innermost linear layers (which diffusers' cache hooks never wrap)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.count = 0
        self._handles = []
        for block in model.transformer_blocks:
            for layer in (block.attn1.to_q, block.ff.net[-1]):
                self._handles.append(layer.register_forward_hook(self._hook))
        self.per_call = 2 * len(model.transformer_blocks)

    def _hook(self, *_: Any) -> None:
        self.count += 1

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def _diffusers_peer(apply: Callable[[torch.nn.Module, dict[str, Any], dict[str, float]], None]) -> Backend:
    """A backend applying a diffusers cache hook to a fresh copy of the suite's DiT."""

    def run(suite: DigitsSuite, config: dict[str, Any], seed: int) -> SuiteOutput:
        from diffusers.hooks.hooks import CacheContext, _set_cache_context

        peer = copy.deepcopy(suite.model)  # diffusers' hooks never touch the suite's own model
        clock = {"timestep": 1000.0}
        apply(peer, config, clock)
        counter = SublayerCounter(peer)
        _set_cache_context(peer, CacheContext("cfg"))  # what CacheMixin.cache_context does
        try:
            images, seconds = _timed(
                lambda: sample(
                    peer,
                    suite.class_labels,
                    steps=suite.steps,
                    guidance=suite.guidance,
                    seed=seed,
                    on_step=lambda step, timestep: clock.update(timestep=timestep),
                )
            )
        finally:
            counter.remove()
        skipped = 1.0 - counter.count / (counter.per_call * suite.steps)
        return SuiteOutput(images, seconds, min(1.0, max(0.0, skipped)))

    return run


def _apply_fbc(model: torch.nn.Module, config: dict[str, Any], clock: dict[str, float]) -> None:
    from diffusers.hooks import FirstBlockCacheConfig, apply_first_block_cache

    apply_first_block_cache(model, FirstBlockCacheConfig(threshold=config["threshold"]))


def _apply_taylorseer(model: torch.nn.Module, config: dict[str, Any], clock: dict[str, float]) -> None:
    from diffusers.hooks import TaylorSeerCacheConfig, apply_taylorseer_cache

    # Whole blocks, as hasten's taylorseer: diffusers' default identifiers ("^transformer_blocks.*attn",
    # matched with re.fullmatch) do not match DiT's "transformer_blocks.N.attn1" and would hook nothing.
    apply_taylorseer_cache(
        model,
        TaylorSeerCacheConfig(
            cache_interval=config["cache_interval"],
            max_order=config["max_order"],
            disable_cache_before_step=3,
            taylor_factors_dtype=torch.float32,
            cache_identifiers=[r"transformer_blocks\.\d+"],
        ),
    )


def _apply_pab(model: torch.nn.Module, config: dict[str, Any], clock: dict[str, float]) -> None:
    from diffusers.hooks import PyramidAttentionBroadcastConfig, apply_pyramid_attention_broadcast

    apply_pyramid_attention_broadcast(
        model,
        PyramidAttentionBroadcastConfig(
            spatial_attention_block_skip_range=config["skip"],
            spatial_attention_timestep_skip_range=(100, 800),
            current_timestep_callback=lambda: clock["timestep"],
        ),
    )


BACKENDS[UNCACHED] = _uncached
for _method in policy_names():  # every registered cache method runs through hasten.diffusion.enable
    BACKENDS[_method] = _hasten
BACKENDS["tstitch"] = _tstitch
BACKENDS["diffusers_fbc"] = _diffusers_peer(_apply_fbc)
BACKENDS["diffusers_taylorseer"] = _diffusers_peer(_apply_taylorseer)
BACKENDS["diffusers_pab"] = _diffusers_peer(_apply_pab)

register_suite("digits-dit", lambda quick: DigitsSuite.shipped(quick))
register_suite("digits-dit-tiny", lambda quick: DigitsSuite.tiny())
