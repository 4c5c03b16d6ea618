"""The suite protocol of ``hasten bench-diffusion``: one trained model and how to measure it.

A *suite* wraps one trained generative model (an image DiT, a diffusion policy) and knows
how to sample from it under each acceleration setting, and how close an accelerated
output is to the uncached one. The harness (:mod:`hasten.diffusion.bench.runner`) owns
timing order, records, resume, the report and the plots; a suite owns nothing but its
model.

Words:

* **method**: a name such as ``"uncached"``, ``"static"``, ``"first_block"``,
  ``"tstitch"``, ``"diffusers_fbc"``, ``"bac"``. :data:`UNCACHED` is the reference.
* **setting**: one configuration of a method, with a short human label
  (``"interval=3, warmup=2"``) and an opaque ``config`` that only the suite interprets (a
  hasten config dataclass, a diffusers hook config, a T-Stitch config, a callable...).
* **output**: what one sampling call produced, as a float32 numpy array whose layout the
  suite defines (images: ``(B, C, H, W)`` in ``[-1, 1]``; policy: e.g. ``(E, T, A)``
  actions), plus its wall time and the fraction of block evaluations it skipped.

Contract a suite must keep (the harness relies on it):

1. ``run(UNCACHED, None, seed)`` is the reference: the model with no acceleration.
2. ``run(method, config, seed)`` is deterministic given ``seed`` apart from
   ``seconds``: the initial noise (and any environment randomness) comes from the seed
   alone, so an accelerated output and the uncached one start from the same noise.
3. ``run`` leaves the model exactly as it found it (every hook removed, even on error),
   so settings can run in any order, interleaved with uncached runs.
4. ``seconds`` times only the sampling call (not hook installation or metrics), in
   seconds of wall time.
5. ``fidelity(reference, output)`` returns finite or ``inf`` floats (``inf`` PSNR for
   identical images is allowed; ``nan`` is not), keyed by names listed in
   ``metric_names``; it is called with the uncached output of the same seed as
   ``reference``. Metrics of the output alone (e.g. a policy's ``success_rate``) may be
   included; then ``fidelity(reference, reference)`` gives the uncached value.

Register a suite with :func:`hasten.diffusion.bench.register_suite` (name, factory); the
factory takes ``quick: bool`` and returns the suite (quick = a smaller batch / fewer
episodes for ``--quick``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np

__all__ = ["UNCACHED", "Setting", "SuiteOutput", "DiffusionSuite"]

UNCACHED = "uncached"


class Setting(NamedTuple):
    """One method configuration to measure.

    Attributes:
        method: method name (``"static"``, ``"tstitch"``, ``"diffusers_fbc"``, ...).
        label: short description of the knobs, unique within the method
            (``"interval=3, warmup=2"``); it identifies the record on ``--resume``.
        config: whatever the suite's :meth:`DiffusionSuite.run` needs for this setting.
    """

    method: str
    label: str
    config: Any


@dataclass(frozen=True)
class SuiteOutput:
    """What one sampling call produced.

    Attributes:
        output: float32 array, layout defined by the suite (images ``(B, C, H, W)`` in
            ``[-1, 1]``).
        seconds: wall time of the sampling call, seconds.
        skipped_fraction: fraction (0-1) of block evaluations not computed (from
            ``CacheHandle.summary().skipped_fraction``; the suite's own estimate for methods
            that are not hasten caches, e.g. a peer's or T-Stitch's; 0 for uncached).
        extra: other per-run numbers the suite wants recorded (e.g. ``{"calls": 50}``).

    Raises:
        ValueError: ``seconds < 0`` or ``skipped_fraction`` outside ``[0, 1]``.
    """

    output: np.ndarray
    seconds: float
    skipped_fraction: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.seconds < 0:
            raise ValueError(f"seconds must be >= 0, got {self.seconds}")
        if not 0.0 <= self.skipped_fraction <= 1.0:
            raise ValueError(f"skipped_fraction must be in [0, 1], got {self.skipped_fraction}")


@runtime_checkable
class DiffusionSuite(Protocol):
    """One trained model under test (see the module docstring for the contract).

    Attributes:
        name: the model name used in ``--models`` and in records (``"digits-dit"``).
        metric_names: the keys :meth:`fidelity` returns, in report column order, e.g.
            ``("psnr", "ssim", "rel_l1")`` or ``("action_mse", "success_rate")``.
        pareto_metrics: the metrics to plot against speedup, one Pareto plot each
            (``("psnr",)``; ``("success_rate",)``).
        higher_is_better: for each pareto metric, whether larger is better (psnr: True,
            action_mse: False); decides which points are on the Pareto front.
    """

    name: str
    metric_names: tuple[str, ...]
    pareto_metrics: tuple[str, ...]
    higher_is_better: dict[str, bool]

    def describe(self) -> str:
        """One line for the report: model size, steps, batch, dtype, threads."""
        ...

    def settings(self, quick: bool) -> list[Setting]:
        """The settings to measure, uncached excluded (the harness adds it); ``quick``
        asks for a reduced list (a few minutes in all)."""
        ...

    def run(self, method: str, config: Any, seed: int) -> SuiteOutput:
        """Sample once with ``method`` / ``config`` from the noise of ``seed``.

        Raises:
            KeyError: ``method`` is not one this suite offers.
        """
        ...

    def fidelity(self, reference: SuiteOutput, output: SuiteOutput) -> dict[str, float]:
        """Metrics of ``output`` against ``reference`` (the uncached output of the same seed)."""
        ...

    def render(self, outputs: list[tuple[str, SuiteOutput]], path: Path) -> bool:
        """Draw a comparison figure (PNG) of ``(title, output)`` pairs, uncached first, to
        ``path``; return False (and write nothing) if the suite has no picture to draw."""
        ...
