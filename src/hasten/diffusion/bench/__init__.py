"""``hasten bench-diffusion``: acceleration methods measured on trained diffusion models.

A suite (:class:`DiffusionSuite`) wraps one trained model; the harness times every
setting against uncached sampling in the same run, interleaved, and records speedup,
skipped block evaluations and fidelity (see :mod:`.suite` for the protocol, :mod:`.runner`
for the measurement protocol).
"""

from hasten.diffusion.bench.registry import available_suites, get_suite, register_suite
from hasten.diffusion.bench.suite import UNCACHED, DiffusionSuite, Setting, SuiteOutput

__all__ = ["UNCACHED", "DiffusionSuite", "Setting", "SuiteOutput", "available_suites", "get_suite", "register_suite"]
