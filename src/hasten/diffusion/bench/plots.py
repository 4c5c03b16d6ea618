"""PNG figures of ``hasten bench-diffusion``: the shared bench core's (:mod:`hasten.benchcore.plots`)."""

from ...benchcore.plots import image_rows, pareto_front, pareto_plot

__all__ = ["image_rows", "pareto_front", "pareto_plot"]
