"""Test-only example methods, one source file each, registered like any built-in method.

Each file is what a contributor writes to add a method to a family: a frozen config
dataclass, one class implementing the family protocol, one registration line. The test
session imports this package (``tests/conftest.py``), so the family contract suites, which
enumerate the registries, enrol the examples automatically: ``example_last_token`` runs in
the LLM exactness suite (``tests/test_exactness.py``), ``example_every_other`` in the
diffusion cache contract (``tests/diffusion/test_cache_contract.py``).
"""

from . import example_cache, example_drafter  # noqa: F401  (registration on import)

EXAMPLE_PREFIX = "example_"
