"""Print ``name==lowest`` for the named dependencies of pyproject.toml (their ``>=`` bounds).

    python tools/oldest_requirements.py torch transformers diffusers
    -> torch==2.13 transformers==5.24 diffusers==0.42

Used by ``make test-oldest`` so the oldest allowed versions are read from the range itself.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path


def oldest(pyproject: str, names: list[str]) -> list[str]:
    """``name==lower`` for each of ``names`` found with a ``>=`` bound in ``pyproject``'s text.

    Raises:
        SystemExit: a name without a ``>=`` bound.
    """
    pins = []
    for name in names:
        found = re.search(rf'"{re.escape(name)}\s*>=\s*([0-9][0-9.]*)', pyproject)
        if found is None:
            raise SystemExit(f"{name}: no >= bound in pyproject.toml")
        pins.append(f"{name}=={found.group(1)}")
    return pins


if __name__ == "__main__":
    print(
        " ".join(
            oldest(
                Path(__file__).resolve().parents[1].joinpath("pyproject.toml").read_text(),
                sys.argv[1:],
            )
        )
    )
