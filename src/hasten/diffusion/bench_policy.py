"""Old import path of the reach-policy suite: see :mod:`hasten.diffusion.bench.reach_policy`."""

import sys

from .bench import reach_policy

sys.modules[__name__] = reach_policy
